package harvest

import (
	"crypto/x509"
	"encoding/pem"
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

// TestIncompleteChain (issue 15): a partner's CA (root → intermediate,
// made by openssl ca) names the intermediate's URL in its certificates,
// and the partner's client sends only its own certificate. Without
// fetching the signature is untrusted; with fetch_intermediates the
// intermediate is fetched from the URL (a loopback server here) and the
// verdict says so; it is kept with the harvested certificate, so a later
// message that lacks it is completed from the store, which the verdict
// says too. A fetcher that keeps to public addresses does not reach the
// loopback server.
func TestIncompleteChain(t *testing.T) {
	var hits atomic.Int32
	var interDER atomic.Pointer[[]byte]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/pkix-cert")
		w.Write(*interDER.Load())
	}))
	defer srv.Close()
	root := testenv.NewCA(t, "Partner Root CA", "")
	inter := testenv.NewSubCA(t, root, "Partner Issuing CA", "", srv.URL+"/issuing.cer")
	der := testenv.ReadCert(t, inter.Cert).Raw
	interDER.Store(&der)
	alice, aliceKey := inter.Issue(t, "alice", "alice@partner.example", time.Now().AddDate(0, -1, 0))
	// Signed with alice's certificate alone, as some clients send it.
	msg := testenv.OpenSSLInput(t, inter.Dir, []byte("Content-Type: text/plain\r\n\r\nplease ship\r\n"), "cms", "-sign", "-signer", alice, "-inkey", aliceKey,
		"-md", "sha256", "-from", "alice@partner.example", "-to", "ceo@org.example", "-subject", "order", "-crlfeol")
	roots := x509.NewCertPool()
	roots.AddCert(testenv.ReadCert(t, root.Cert))
	verdict := func(eng *Engine) Signature {
		t.Helper()
		res, err := eng.Process(msg, time.Now())
		if err != nil || len(res.Report.Signatures) != 1 {
			t.Fatalf("Process() = %+v, %v", res, err)
		}
		return res.Report.Signatures[0]
	}
	if v := verdict(New(Options{Roots: roots})); v.Status != StatusUntrusted {
		t.Fatalf("without fetching: %s %q, want untrusted", v.Status, v.Reason)
	}
	if v := verdict(New(Options{Roots: roots, Issuers: revocation.NewIssuerFetcher(0, false)})); v.Status != StatusUntrusted || hits.Load() != 0 {
		t.Fatalf("fetching from public addresses only: %s %q after %d requests to the loopback server; want untrusted, none", v.Status, v.Reason, hits.Load())
	}

	st := openTestStore(t, filepath.Join(t.TempDir(), "smimed.db"), false)
	defer st.Close()
	eng := New(Options{Roots: roots, Store: st, Harvest: true, Issuers: revocation.NewIssuerFetcher(0, true)})
	v := verdict(eng)
	if v.Status != StatusValid || !strings.Contains(v.Reason, "fetched from "+srv.URL+"/issuing.cer") {
		t.Fatalf("with fetch_intermediates: %s %q, want valid naming the URL", v.Status, v.Reason)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("the issuer was fetched %d times, want once", n)
	}
	// The next message is completed from the store, without a fetch.
	v = verdict(New(Options{Roots: roots, Store: st}))
	if v.Status != StatusValid || !strings.Contains(v.Reason, "kept from earlier mail") || !strings.Contains(v.Reason, "Partner Issuing CA") {
		t.Errorf("from the store: %s %q, want valid, completed from earlier mail", v.Status, v.Reason)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("the issuer was fetched %d times in all, want once", n)
	}

	// What the URL serves must be the issuer: a CA certificate of another
	// name does not complete the chain.
	other := testenv.NewCA(t, "Unrelated CA", "")
	wrong := testenv.ReadCert(t, other.Cert).Raw
	interDER.Store(&wrong)
	if v := verdict(New(Options{Roots: roots, Issuers: revocation.NewIssuerFetcher(0, true)})); v.Status != StatusUntrusted {
		t.Errorf("the URL serves an unrelated CA: %s %q, want untrusted", v.Status, v.Reason)
	}
	// PEM works too (some CAs serve it so).
	block := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	interDER.Store(&block)
	if v := verdict(New(Options{Roots: roots, Issuers: revocation.NewIssuerFetcher(0, true)})); v.Status != StatusValid {
		t.Errorf("issuer served as PEM: %s %q, want valid", v.Status, v.Reason)
	}
}
