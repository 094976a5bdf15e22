package revocation

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest/state"
)

// crlServer serves one CRL at /ca.crl on loopback, as a CA's web server
// does; hits counts the requests.
type crlServer struct {
	*httptest.Server
	mu    sync.Mutex
	body  []byte
	delay time.Duration
	hits  atomic.Int32
}

func newCRLServer(t *testing.T) *crlServer {
	s := &crlServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		body, delay := s.body, s.delay
		s.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		if r.URL.Path != "/ca.crl" || body == nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *crlServer) serve(body []byte, delay time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body, s.delay = body, delay
}

func openDB(t *testing.T, path string) *state.DB {
	t.Helper()
	db, err := state.Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// openSSLRevoked asks `openssl verify -crl_check` whether cert is revoked
// by the CRL (DER): the independent answer for "now".
func openSSLRevoked(t *testing.T, ca *testenv.CA, cert string, crlDER []byte) bool {
	t.Helper()
	crlPEM := filepath.Join(t.TempDir(), "crl.pem")
	if err := os.WriteFile(crlPEM, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crlDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := testenv.OpenSSLTry(t, ca.Dir, nil, "verify", "-CAfile", ca.Cert, "-CRLfile", crlPEM, "-crl_check", "-purpose", "smimesign", cert)
	switch {
	case err == nil && strings.Contains(string(out), ": OK"):
		return false
	case strings.Contains(string(out), "certificate revoked"):
		return true
	}
	t.Fatalf("openssl verify: %v\n%s", err, out)
	return false
}

// TestCRLFromCA: a CA run by `openssl ca` revokes two of three
// certificates; the CRL it publishes, fetched over HTTP, gives the answers
// openssl verify -crl_check gives for now, and RFC 5280's for the time of
// older mail: a key revoked as superseded signed validly before its
// revocation; a compromised key is revoked from its invalidity date. The
// CRL is fetched once, kept in the state file, and read from there by a
// checker that may not fetch.
func TestCRLFromCA(t *testing.T) {
	srv := newCRLServer(t)
	ca := testenv.NewCA(t, "Revocation Test CA", srv.URL+"/ca.crl")
	issued := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC) // valid two years
	compromised := time.Date(2025, 9, 1, 0, 0, 0, 0, time.UTC)
	alice, _ := ca.Issue(t, "alice", "alice@partner.example", issued)
	bob, _ := ca.Issue(t, "bob", "bob@partner.example", issued)
	carol, _ := ca.Issue(t, "carol", "carol@partner.example", issued)
	revokedAt := time.Now()
	ca.Revoke(t, alice, "keyCompromise", compromised)
	ca.Revoke(t, carol, "superseded", time.Time{})
	crlDER := ca.CRL(t, 7)
	srv.serve(crlDER, 0)
	caCert := testenv.ReadCert(t, ca.Cert)

	dbPath := filepath.Join(t.TempDir(), "smimed.db")
	c := New(openDB(t, dbPath), Config{Fetch: true})
	ctx := context.Background()
	now := time.Now()
	for _, tc := range []struct {
		name string
		cert string
		at   time.Time
		want Status
		why  string
	}{
		{"bob now", bob, now, Good, ""},
		{"alice now", alice, now, Revoked, "keyCompromise"},
		{"carol now", carol, now.Add(time.Minute), Revoked, "superseded"},
		{"alice before the compromise", alice, compromised.Add(-24 * time.Hour), Good, ""},
		{"alice after the compromise, before the revocation", alice, compromised.Add(24 * time.Hour), Revoked, "2025-09-01T00:00:00Z"},
		{"carol before her revocation", carol, revokedAt.Add(-24 * time.Hour), Good, ""},
	} {
		got := c.Check(ctx, testenv.ReadCert(t, tc.cert), caCert, tc.at)
		if got.Status != tc.want || !strings.Contains(got.Reason, tc.why) {
			t.Errorf("%s: %+v, want status %d with %q", tc.name, got, tc.want, tc.why)
		}
	}
	for _, cert := range []string{alice, bob, carol} {
		want := Good
		if openSSLRevoked(t, ca, cert, crlDER) {
			want = Revoked
		}
		if got := c.Check(ctx, testenv.ReadCert(t, cert), caCert, time.Now().Add(time.Minute)); got.Status != want {
			t.Errorf("%s now: %+v; openssl verify -crl_check says %d", filepath.Base(cert), got, want)
		}
	}
	if n := srv.hits.Load(); n != 1 {
		t.Errorf("the CRL was fetched %d times, want once", n)
	}

	// Kept in the state file: a checker that may not fetch answers.
	c2 := New(openDB(t, filepath.Join(t.TempDir(), "other.db")), Config{})
	if got := c2.Check(ctx, testenv.ReadCert(t, bob), caCert, now); got.Status != Unknown || !strings.Contains(got.Reason, "does not fetch") {
		t.Errorf("a checker without CRLs that may not fetch: %+v, want unknown", got)
	}
	list, err := c.List()
	if err != nil || len(list) != 1 || list[0].Entries != 2 || list[0].Source != srv.URL+"/ca.crl" || list[0].Scope != srv.URL+"/ca.crl" {
		t.Errorf("List() = %+v, %v; want one CRL with 2 entries from the URL, its issuing distribution point that URL", list, err)
	}
}

// TestCRLKeptAcrossRestarts: the CRL is read back from the state file by a
// new checker (a restart), without a fetch.
func TestCRLKeptAcrossRestarts(t *testing.T) {
	srv := newCRLServer(t)
	ca := testenv.NewCA(t, "Restart Test CA", srv.URL+"/ca.crl")
	alice, _ := ca.Issue(t, "alice", "alice@partner.example", time.Now().Add(-time.Hour))
	ca.Revoke(t, alice, "keyCompromise", time.Time{})
	srv.serve(ca.CRL(t, 7), 0)
	dbPath := filepath.Join(t.TempDir(), "smimed.db")
	db, err := state.Open(dbPath, false)
	if err != nil {
		t.Fatal(err)
	}
	cert, caCert := testenv.ReadCert(t, alice), testenv.ReadCert(t, ca.Cert)
	if got := New(db, Config{Fetch: true}).Check(context.Background(), cert, caCert, time.Now().Add(time.Minute)); got.Status != Revoked {
		t.Fatalf("first check: %+v", got)
	}
	db.Close()
	srv.serve(nil, 0)
	got := New(openDB(t, dbPath), Config{}).Check(context.Background(), cert, caCert, time.Now().Add(time.Minute))
	if got.Status != Revoked || srv.hits.Load() != 1 {
		t.Fatalf("after a restart: %+v after %d fetches; want revoked from the state file, one fetch", got, srv.hits.Load())
	}
}

// TestCRLUnavailable: a distribution point that is down, too slow, too
// large, serves a CRL signed by another key, or is LDAP gives no answer
// (with the reason), within the timeout; one that failed is not asked
// again at once.
func TestCRLUnavailable(t *testing.T) {
	ctx := context.Background()
	t.Run("down", func(t *testing.T) {
		srv := newCRLServer(t)
		ca := testenv.NewCA(t, "Down CA", srv.URL+"/ca.crl")
		bob, _ := ca.Issue(t, "bob", "bob@partner.example", time.Now().Add(-time.Hour))
		srv.Close()
		c := New(nil, Config{Fetch: true})
		for range 3 {
			got := c.Check(ctx, testenv.ReadCert(t, bob), testenv.ReadCert(t, ca.Cert), time.Now())
			if got.Status != Unknown || !strings.Contains(got.Reason, "ca.crl") {
				t.Fatalf("server down: %+v, want unknown naming the URL", got)
			}
		}
	})
	t.Run("not found, asked once", func(t *testing.T) {
		srv := newCRLServer(t)
		ca := testenv.NewCA(t, "Missing CA", srv.URL+"/ca.crl")
		bob, _ := ca.Issue(t, "bob", "bob@partner.example", time.Now().Add(-time.Hour))
		c := New(nil, Config{Fetch: true})
		for range 3 {
			if got := c.Check(ctx, testenv.ReadCert(t, bob), testenv.ReadCert(t, ca.Cert), time.Now()); got.Status != Unknown || !strings.Contains(got.Reason, "404") {
				t.Fatalf("404: %+v", got)
			}
		}
		if n := srv.hits.Load(); n != 1 {
			t.Errorf("a failed distribution point was asked %d times in a row, want once", n)
		}
	})
	t.Run("slow", func(t *testing.T) {
		srv := newCRLServer(t)
		ca := testenv.NewCA(t, "Slow CA", srv.URL+"/ca.crl")
		bob, _ := ca.Issue(t, "bob", "bob@partner.example", time.Now().Add(-time.Hour))
		srv.serve(ca.CRL(t, 7), 10*time.Second)
		c := New(nil, Config{Fetch: true, Timeout: 300 * time.Millisecond})
		start := time.Now()
		got := c.Check(ctx, testenv.ReadCert(t, bob), testenv.ReadCert(t, ca.Cert), time.Now())
		if got.Status != Unknown {
			t.Fatalf("slow server: %+v", got)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("the check waited %v for a server that does not answer (timeout 300ms)", took)
		}
	})
	t.Run("a caller in a hurry", func(t *testing.T) {
		// A message whose deadline ends before the CA answers gets no
		// answer; the fetch goes on, so the next message is not failed
		// for it.
		srv := newCRLServer(t)
		ca := testenv.NewCA(t, "Busy CA", srv.URL+"/ca.crl")
		bob, _ := ca.Issue(t, "bob", "bob@partner.example", time.Now().Add(-time.Hour))
		srv.serve(ca.CRL(t, 7), 300*time.Millisecond)
		c := New(nil, Config{Fetch: true})
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if got := c.Check(short, testenv.ReadCert(t, bob), testenv.ReadCert(t, ca.Cert), time.Now()); got.Status != Unknown {
			t.Fatalf("with 50 ms for a 300 ms server: %+v, want unknown", got)
		}
		if got := c.Check(ctx, testenv.ReadCert(t, bob), testenv.ReadCert(t, ca.Cert), time.Now()); got.Status != Good {
			t.Fatalf("the next check, with time: %+v, want good (the first caller's deadline is not the point's failure)", got)
		}
	})
	t.Run("too large", func(t *testing.T) {
		srv := newCRLServer(t)
		ca := testenv.NewCA(t, "Large CA", srv.URL+"/ca.crl")
		bob, _ := ca.Issue(t, "bob", "bob@partner.example", time.Now().Add(-time.Hour))
		crl := ca.CRL(t, 7)
		srv.serve(crl, 0)
		c := New(nil, Config{Fetch: true, MaxSize: int64(len(crl) - 1)})
		if got := c.Check(ctx, testenv.ReadCert(t, bob), testenv.ReadCert(t, ca.Cert), time.Now()); got.Status != Unknown || !strings.Contains(got.Reason, "larger than") {
			t.Fatalf("too large: %+v", got)
		}
	})
	t.Run("signed by another key", func(t *testing.T) {
		srv := newCRLServer(t)
		ca := testenv.NewCA(t, "Same Name CA", srv.URL+"/ca.crl")
		impostor := testenv.NewCA(t, "Same Name CA", srv.URL+"/ca.crl")
		bob, _ := ca.Issue(t, "bob", "bob@partner.example", time.Now().Add(-time.Hour))
		srv.serve(impostor.CRL(t, 7), 0)
		c := New(nil, Config{Fetch: true})
		if got := c.Check(ctx, testenv.ReadCert(t, bob), testenv.ReadCert(t, ca.Cert), time.Now()); got.Status != Unknown || !strings.Contains(got.Reason, "signature") {
			t.Fatalf("CRL of another key: %+v", got)
		}
	})
	t.Run("ldap", func(t *testing.T) {
		ca := testenv.NewCA(t, "LDAP CA", "ldap://ldap.example/cn=Test%20CA?certificateRevocationList")
		bob, _ := ca.Issue(t, "bob", "bob@partner.example", time.Now().Add(-time.Hour))
		c := New(nil, Config{Fetch: true})
		if got := c.Check(ctx, testenv.ReadCert(t, bob), testenv.ReadCert(t, ca.Cert), time.Now()); got.Status != Unknown || !strings.Contains(got.Reason, "unsupported") {
			t.Fatalf("LDAP only: %+v", got)
		}
	})
	t.Run("none", func(t *testing.T) {
		ca := testenv.NewCA(t, "No CRL CA", "")
		bob, _ := ca.Issue(t, "bob", "bob@partner.example", time.Now().Add(-time.Hour))
		c := New(nil, Config{Fetch: true})
		if got := c.Check(ctx, testenv.ReadCert(t, bob), testenv.ReadCert(t, ca.Cert), time.Now()); got.Status != Unknown || !strings.Contains(got.Reason, "no CRL distribution point") {
			t.Fatalf("no distribution point: %+v", got)
		}
	})
}

// TestCRLImport: an air-gapped site imports the CA's CRL (PEM, as openssl
// writes it); it is checked against the CA certificates given and used
// without a fetch. A CRL of a CA that is not given is refused.
func TestCRLImport(t *testing.T) {
	ca := testenv.NewCA(t, "Import CA", "http://127.0.0.1:9/unreachable.crl")
	alice, _ := ca.Issue(t, "alice", "alice@partner.example", time.Now().Add(-time.Hour))
	ca.Revoke(t, alice, "keyCompromise", time.Time{})
	ca.CRL(t, 7)
	pemCRL, err := os.ReadFile(filepath.Join(ca.Dir, "ca.crl.pem"))
	if err != nil {
		t.Fatal(err)
	}
	other := testenv.NewCA(t, "Other CA", "")
	c := New(openDB(t, filepath.Join(t.TempDir(), "smimed.db")), Config{})
	if _, err := c.Import(pemCRL, []*x509.Certificate{testenv.ReadCert(t, other.Cert)}); err == nil {
		t.Fatal("Import() of a CRL whose CA was not given succeeded")
	}
	in, err := c.Import(pemCRL, []*x509.Certificate{testenv.ReadCert(t, other.Cert), testenv.ReadCert(t, ca.Cert)})
	if err != nil || in.Entries != 1 || in.Source != "import" {
		t.Fatalf("Import() = %+v, %v", in, err)
	}
	if _, err := c.Import(pemCRL, []*x509.Certificate{testenv.ReadCert(t, ca.Cert)}); !errors.Is(err, ErrNotNewer) {
		t.Errorf("Import() of the same CRL again = %v, want ErrNotNewer", err)
	}
	if got := c.Check(context.Background(), testenv.ReadCert(t, alice), testenv.ReadCert(t, ca.Cert), time.Now().Add(time.Minute)); got.Status != Revoked {
		t.Fatalf("after import: %+v, want revoked", got)
	}
	// Another CA of the same name (its own key) numbers its certificates
	// the same way: the first one has alice's serial, and is not judged
	// by the other CA's CRL.
	twin := testenv.NewCA(t, "Import CA", "http://127.0.0.1:9/unreachable.crl")
	mallory, _ := twin.Issue(t, "mallory", "mallory@partner.example", time.Now().Add(-time.Hour))
	m, a := testenv.ReadCert(t, mallory), testenv.ReadCert(t, alice)
	if m.SerialNumber.Cmp(a.SerialNumber) != 0 || string(m.RawIssuer) != string(a.RawIssuer) {
		t.Fatalf("the twin CA's first certificate has serial %v issuer %v, alice's %v %v", m.SerialNumber, m.Issuer, a.SerialNumber, a.Issuer)
	}
	if got := c.Check(context.Background(), m, testenv.ReadCert(t, twin.Cert), time.Now().Add(time.Minute)); got.Status != Unknown {
		t.Fatalf("a certificate of the twin CA judged by the other's CRL: %+v, want unknown", got)
	}
	// The store's sweep has no chain: the kept CRL counts for the
	// certificates its CA signed, and only for those.
	got := c.RevokedAmong([]*x509.Certificate{m, a})
	if ans, revoked := got[1]; !revoked || ans.At.IsZero() || !strings.Contains(ans.Reason, "keyCompromise") {
		t.Errorf("RevokedAmong: alice %+v, %v; want revoked", ans, revoked)
	}
	if ans, revoked := got[0]; revoked {
		t.Errorf("RevokedAmong: the twin CA's certificate with alice's serial %+v, want not revoked", ans)
	}
}

// TestCRLOnlyUsers: a CRL whose issuing distribution point covers
// end-entity certificates only says nothing of a CA certificate (RFC 5280
// 6.3.3): it does not cover one.
func TestCRLOnlyUsers(t *testing.T) {
	ca, _ := fuzzCA(t)
	leaf := &x509.Certificate{}
	c := &crl{onlyUsers: true}
	if !c.covers(leaf, nil) || c.covers(ca, nil) {
		t.Errorf("a users-only CRL covers the leaf %v, the CA %v; want true, false", c.covers(leaf, nil), c.covers(ca, nil))
	}
	if full := (&crl{}); !full.covers(ca, nil) {
		t.Error("a full CRL does not cover a CA certificate")
	}
}
