package harvest

import (
	"crypto/x509"
	"fmt"
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
	var crl atomic.Pointer[[]byte]
	var up atomic.Bool
	up.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write(*crl.Load())
	}))
	defer srv.Close()
	ca := testenv.NewCA(t, "Partner CA", srv.URL+"/partner.crl")
	issued := time.Now().AddDate(0, -6, 0)
	alice, aliceKey := ca.Issue(t, "alice", "alice@partner.example", issued)
	bob, bobKey := ca.Issue(t, "bob", "bob@partner.example", issued)
	compromised := time.Now().AddDate(0, -1, 0).UTC()
	ca.Revoke(t, alice, "keyCompromise", compromised)
	der := ca.CRL(t, 7)
	crl.Store(&der)
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
	// Mail from before the key was compromised harvests alice's
	// certificate; her mail of today is revoked, harvests nothing, and
	// the store stops offering her certificate to encrypt to.
	res, err := eng.Process(fromAlice, compromised.AddDate(0, 0, -14))
	if err != nil || res.Report.Signatures[0].Status != StatusValid {
		t.Fatalf("alice before the compromise: %+v, %v", res.Report.Signatures, err)
	}
	if es, _ := st.ByEmail("alice@partner.example"); len(es) != 1 || !es[0].EncryptionPreferred {
		t.Fatalf("alice's certificate after a valid signature: %+v", es)
	}
	if v := verdict(eng, fromAlice); v.Status != StatusRevoked || !strings.Contains(v.Reason, "keyCompromise") {
		t.Errorf("alice (revoked): %s %q, want revoked for keyCompromise", v.Status, v.Reason)
	}
	es, _ := st.ByEmail("alice@partner.example")
	if len(es) != 1 || es[0].EncryptionPreferred || !es[0].RevokedAt.Equal(compromised.Truncate(time.Second)) || !strings.Contains(es[0].RevokedReason, "keyCompromise") {
		t.Errorf("alice's certificate after her revoked mail: %+v; want revoked since %v, not preferred", es, compromised)
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

// BenchmarkRevocationCost (issue 15: aim ≤ 1.1×): a small signed message
// from a partner whose CA publishes a CRL and runs an OCSP responder
// (openssl ocsp), judged with the CRL kept (after the first fetch), with
// the OCSP answer kept, and with an OCSP answer enclosed in the signature,
// each against the same message with revocation off, taking turns in the
// same run; x-off is the ratio.
func BenchmarkRevocationCost(b *testing.B) {
	var crl atomic.Pointer[[]byte]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(*crl.Load()) }))
	defer srv.Close()
	ca := testenv.NewCA(b, "Bench CA", srv.URL+"/bench.crl")
	ocspAddr := testenv.FreeAddr(b)
	ca.OCSPURL(b, "http://"+ocspAddr)
	bob, bobKey := ca.Issue(b, "bob", "bob@partner.example", time.Now().AddDate(0, -1, 0))
	for i := range 20 {
		other, _ := ca.Issue(b, fmt.Sprintf("old%d", i), "old@partner.example", time.Now().AddDate(0, -1, 0))
		ca.Revoke(b, other, "superseded", time.Time{})
	}
	der := ca.CRL(b, 7)
	crl.Store(&der)
	ca.StartOCSP(b, ocspAddr)
	msg := ca.Sign(b, bob, bobKey, "bob@partner.example", "order", "please ship")
	enclosing := ca.SignEnclosing(b, bob, bobKey, "bob@partner.example", "order", "please ship", nil, [][]byte{ca.OCSPResponse(b, bob)})
	roots := x509.NewCertPool()
	roots.AddCert(testenv.ReadCert(b, ca.Cert))
	off := New(Options{Roots: roots})
	for _, bc := range []struct {
		name string
		cfg  revocation.Config
		msg  []byte
	}{
		{"crl", revocation.Config{Fetch: true}, msg},
		{"ocsp", revocation.Config{Fetch: true, OCSP: true}, msg},
		{"enclosed-ocsp", revocation.Config{}, enclosing},
	} {
		b.Run(bc.name, func(b *testing.B) {
			on := New(Options{Roots: roots, Revocation: revocation.New(nil, bc.cfg), RevocationMode: revocation.Hard})
			judge := func(eng *Engine, msg []byte) time.Duration {
				start := time.Now()
				res, err := eng.Process(msg, time.Now())
				if err != nil || len(res.Report.Signatures) != 1 || res.Report.Signatures[0].Status != StatusValid || res.Report.Signatures[0].Reason != "" {
					b.Fatalf("Process() = %+v, %v", res.Report.Signatures, err)
				}
				return time.Since(start)
			}
			judge(on, bc.msg) // the first fetch
			var tOff, tOn time.Duration
			b.ResetTimer()
			for range b.N {
				tOff += judge(off, bc.msg)
				tOn += judge(on, bc.msg)
			}
			b.ReportMetric(float64(tOn)/float64(tOff), "x-off")
			b.ReportMetric(float64(tOn.Nanoseconds())/float64(b.N), "ns/checked")
			b.ReportMetric(float64(tOff.Nanoseconds())/float64(b.N), "ns/off")
		})
	}
}
