package harvest

import (
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest/revocation"
)

// TestRevokedSigner (issue 15): mail signed by partners whose CA, run by
// openssl ca, revoked one of them and publishes its CRL over HTTP on
// loopback. The revoked signer's mail is revoked (and nothing of it is
// harvested), the other's valid; with the CA's server down the verdict is
// valid with "revocation unknown" (soft) or untrusted (hard).
func TestRevokedSigner(t *testing.T) {
	var crl []byte
	var up atomic.Bool
	up.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write(crl)
	}))
	defer srv.Close()
	ca := testenv.NewCA(t, "Partner CA", srv.URL+"/partner.crl")
	issued := time.Now().AddDate(0, -6, 0)
	alice, aliceKey := ca.Issue(t, "alice", "alice@partner.example", issued)
	bob, bobKey := ca.Issue(t, "bob", "bob@partner.example", issued)
	ca.Revoke(t, alice, "keyCompromise", time.Now().AddDate(0, -1, 0))
	crl = ca.CRL(t, 7)
	fromAlice := ca.Sign(t, alice, aliceKey, "alice@partner.example", "order", "please ship")
	fromBob := ca.Sign(t, bob, bobKey, "bob@partner.example", "order", "please ship")

	roots := x509.NewCertPool()
	caCert := testenv.ReadCert(t, ca.Cert)
	roots.AddCert(caCert)
	st := openTestStore(t, filepath.Join(t.TempDir(), "smimed.db"), false)
	defer st.Close()
	eng := New(Options{Roots: roots, Store: st, Harvest: true,
		Revocation: revocation.New(nil, revocation.Config{Fetch: true}), RevocationMode: revocation.Soft})

	verdict := func(eng *Engine, raw []byte) Signature {
		t.Helper()
		res, err := eng.Process(raw, time.Now())
		if err != nil || len(res.Report.Signatures) != 1 {
			t.Fatalf("Process() = %+v, %v", res, err)
		}
		return res.Report.Signatures[0]
	}
	if v := verdict(eng, fromAlice); v.Status != StatusRevoked || !strings.Contains(v.Reason, "keyCompromise") {
		t.Errorf("alice (revoked): %s %q, want revoked for keyCompromise", v.Status, v.Reason)
	}
	if es, _ := st.ByEmail("alice@partner.example"); len(es) != 0 {
		t.Errorf("the revoked signer's certificate was harvested: %+v", es)
	}
	if v := verdict(eng, fromBob); v.Status != StatusValid || v.Reason != "" {
		t.Errorf("bob: %s %q, want valid", v.Status, v.Reason)
	}

	up.Store(false)
	for _, tc := range []struct {
		mode, want, reason string
	}{
		{revocation.Soft, StatusValid, "revocation unknown"},
		{revocation.Hard, StatusUntrusted, "revocation unknown (trust.revocation = hard)"},
	} {
		eng := New(Options{Roots: roots, Revocation: revocation.New(nil, revocation.Config{Fetch: true}), RevocationMode: tc.mode})
		if v := verdict(eng, fromBob); v.Status != tc.want || !strings.Contains(v.Reason, tc.reason) || !strings.Contains(v.Reason, "503") {
			t.Errorf("CRL server down, %s: %s %q; want %s with %q and the server's answer", tc.mode, v.Status, v.Reason, tc.want, tc.reason)
		}
	}
}
