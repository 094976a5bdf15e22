package daemon

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/testenv"
)

// TestScenarioRevokedSigner (issue 15): partners' mail signed with
// certificates of a CA run by openssl ca, which revoked alice's (key
// compromise) and publishes its CRL over HTTP on loopback. Through the
// service against Dovecot: alice's message is archived as revoked and its
// copy says smime=fail; bob's is valid, smime=pass. With the CA's server
// down, bob's next message is valid with "revocation unknown" under
// revocation = "soft", and untrusted under "hard"; a message that encloses
// the CA's OCSP answer is judged by it.
func TestScenarioRevokedSigner(t *testing.T) {
	t.Parallel()
	var crl atomic.Pointer[[]byte]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := crl.Load()
		if body == nil {
			http.Error(w, "CRL server down", http.StatusServiceUnavailable)
			return
		}
		w.Write(*body)
	}))
	defer srv.Close()
	ca := testenv.NewCA(t, "Partner CA", srv.URL+"/partner.crl")
	issued := time.Now().AddDate(0, -6, 0)
	alice, aliceKey := ca.Issue(t, "alice", "alice@partner.example", issued)
	bob, bobKey := ca.Issue(t, "bob", "bob@partner.example", issued)
	ca.Revoke(t, alice, "keyCompromise", time.Now().AddDate(0, -1, 0))
	der := ca.CRL(t, 7)
	crl.Store(&der)

	e := newSvcEnv(t, "ceo")
	ca.AddTo(t, filepath.Join(e.dir, "ca-bundle.pem"))
	acct := e.account("ceo") + "archive_folder = \"Decrypted\"\narchive_folder_messages = \"smime\"\n"
	// run starts a service with a state of its own on the INBOX, with
	// msgs delivered first, and returns every record once all are in.
	run := func(state, mode string, msgs ...[]byte) []*archive.Record {
		t.Helper()
		cfg := testenv.Config(state, "", []string{"org-new"}, acct)
		cfg = strings.Replace(cfg, "[trust]\n", "[trust]\nrevocation = \""+mode+"\"\n", 1)
		if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			e.d.Deliver(t, "ceo", "INBOX", m)
		}
		// A new state: the whole INBOX is archived again.
		logs := &testenv.LockedBuffer{}
		svc, stop := runService(t, e.cfgPath, logs)
		defer stop()
		waitArchived(t, svc, logs, len(e.d.UIDs(t, "ceo", "INBOX")))
		var recs []*archive.Record
		if err := svc.arch.List(archive.Query{}, func(r *archive.Record) error { recs = append(recs, r); return nil }); err != nil {
			t.Fatal(err)
		}
		return recs
	}
	bySubject := func(recs []*archive.Record) map[string]*archive.Record {
		m := map[string]*archive.Record{}
		for _, r := range recs {
			m[r.Subject] = r
		}
		return m
	}
	recs := bySubject(run("state-soft", "soft",
		ca.Sign(t, alice, aliceKey, "alice@partner.example", "order from alice", "please ship"),
		ca.Sign(t, bob, bobKey, "bob@partner.example", "order from bob", "please ship")))
	a, b := recs["order from alice"], recs["order from bob"]
	if a == nil || b == nil {
		t.Fatalf("records by subject: %v", recs)
	}
	if !slices.Contains(a.Status, "signed-revoked") || !strings.Contains(a.Signatures[0].Reason, "keyCompromise") {
		t.Errorf("alice's record: %v %q, want signed-revoked for keyCompromise", a.Status, a.Signatures[0].Reason)
	}
	if !slices.Contains(b.Status, "signed-valid") {
		t.Errorf("bob's record: %v %q, want signed-valid", b.Status, b.Signatures[0].Reason)
	}
	waitUntil(t, "two copies in Decrypted", func() bool { return len(copies(t, e.d, "ceo", "Decrypted")) == 2 }, func() string { return "" })
	hdrs := e.d.Doveadm(t, "fetch", "-u", "ceo", "hdr", "mailbox", "Decrypted", "all")
	for _, h := range strings.Split(hdrs, "hdr:")[1:] {
		switch {
		case strings.Contains(h, "order from alice"):
			if !strings.Contains(h, "smime=fail") {
				t.Errorf("copy of alice's message: want smime=fail:\n%s", h)
			}
		case strings.Contains(h, "order from bob"):
			if !strings.Contains(h, "smime=pass") {
				t.Errorf("copy of bob's message: want smime=pass:\n%s", h)
			}
		}
	}

	// Bob's key is revoked later; the service's sweep marks his
	// certificate in the store, harvested from his valid mail, without
	// mail from him.
	ca.Revoke(t, bob, "affiliationChanged", time.Time{})
	// CRL times have whole seconds: the next CRL must be newer than the
	// first to be taken.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	der = ca.CRL(t, 7)
	crl.Store(&der)
	cfg := strings.Replace(testenv.Config("state-soft", "", []string{"org-new"}, acct), "[trust]\n", "[trust]\nrevocation = \"soft\"\n", 1)
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	svc := newService(t, e.cfgPath, slog.New(slog.DiscardHandler))
	svc.network.CRLs.Refresh(context.Background()) // not due yet: the kept CRL stays
	if _, err := svc.network.CRLs.Import(der, []*x509.Certificate{testenv.ReadCert(t, ca.Cert)}); err != nil {
		t.Fatal(err)
	}
	if es, err := svc.store.ByEmail("bob@partner.example"); err != nil || len(es) != 1 || !es[0].EncryptionPreferred {
		t.Fatalf("bob's certificate before the sweep: %+v, %v", es, err)
	}
	svc.sweepRevoked()
	if es, err := svc.store.ByEmail("bob@partner.example"); err != nil || len(es) != 1 || es[0].EncryptionPreferred || es[0].RevokedAt.IsZero() || !strings.Contains(es[0].RevokedReason, "affiliationChanged") {
		t.Errorf("bob's certificate after the sweep: %+v, %v; want revoked, not preferred", es, err)
	}
	svc.Close()

	crl.Store(nil) // the CA's server is down
	for i, tc := range []struct{ mode, status, reason string }{
		{"soft", "signed-valid", "revocation unknown"},
		{"hard", "signed-untrusted", "revocation unknown (trust.revocation = hard)"},
	} {
		subject := fmt.Sprintf("order %d from bob", i)
		recs := bySubject(run("state-"+tc.mode+"-down", tc.mode, ca.Sign(t, bob, bobKey, "bob@partner.example", subject, "please ship")))
		r := recs[subject]
		if r == nil || !slices.Contains(r.Status, tc.status) || !strings.Contains(r.Signatures[0].Reason, tc.reason) || !strings.Contains(r.Signatures[0].Reason, "503") {
			t.Errorf("CRL server down, revocation = %s: %+v; want %s with %q and the server's answer", tc.mode, r, tc.status, tc.reason)
		}
	}

	// Still down; bob's client encloses the OCSP answer it got from the
	// CA (openssl ocsp), which says revoked: the verdict needs no fetch.
	carol, carolKey := ca.Issue(t, "carol", "carol@partner.example", issued)
	recs = bySubject(run("state-enclosed", "hard",
		ca.SignEnclosing(t, bob, bobKey, "bob@partner.example", "order from bob, enclosing", "please ship", nil, [][]byte{ca.OCSPResponse(t, bob)}),
		ca.SignEnclosing(t, carol, carolKey, "carol@partner.example", "order from carol, enclosing", "please ship", nil, [][]byte{ca.OCSPResponse(t, carol)})))
	if r := recs["order from bob, enclosing"]; r == nil || !slices.Contains(r.Status, "signed-revoked") || !strings.Contains(r.Signatures[0].Reason, "affiliationChanged") || !strings.Contains(r.Signatures[0].Reason, "enclosed") {
		t.Errorf("bob's message enclosing the OCSP answer, CRL server down: %+v; want signed-revoked (affiliationChanged) from the enclosed answer", r)
	}
	if r := recs["order from carol, enclosing"]; r == nil || !slices.Contains(r.Status, "signed-valid") || r.Signatures[0].Reason != "" {
		t.Errorf("carol's message enclosing a good OCSP answer, CRL server down, hard: %+v; want signed-valid", r)
	}
}
