package revocation

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
)

// TestOCSP (issue 15): a CA with an OCSP responder run by `openssl ocsp
// -index` on loopback (its certificates name it, and no CRL), which
// revoked alice. With ocsp on, the answers are what `openssl ocsp` as a
// client gets from the same responder; mail from before the revocation
// stays good. With ocsp off such a certificate offers nothing to check; a
// responder that is down gives no answer, with the reason.
func TestOCSP(t *testing.T) {
	addr := testenv.FreeAddr(t)
	url := "http://" + addr
	ca := testenv.NewCA(t, "OCSP CA", "")
	ca.OCSPURL(t, url)
	alice, _ := ca.Issue(t, "alice", "alice@partner.example", time.Now().AddDate(0, -1, 0))
	bob, _ := ca.Issue(t, "bob", "bob@partner.example", time.Now().AddDate(0, -1, 0))
	revokedAt := time.Now()
	ca.Revoke(t, alice, "keyCompromise", time.Time{})
	ca.StartOCSP(t, addr)

	ctx := context.Background()
	caCert := testenv.ReadCert(t, ca.Cert)
	c := New(nil, Config{Fetch: true, OCSP: true})
	for _, tc := range []struct {
		name, cert string
		at         time.Time
	}{
		{"alice", alice, time.Now().Add(time.Minute)},
		{"bob", bob, time.Now().Add(time.Minute)},
	} {
		// openssl's own client against the same responder.
		out := string(testenv.OpenSSLCombined(t, ca.Dir, "ocsp", "-issuer", ca.Cert, "-cert", tc.cert, "-url", url, "-CAfile", ca.Cert, "-timeout", "10"))
		want := Good
		if strings.Contains(out, ": revoked") {
			want = Revoked
		} else if !strings.Contains(out, ": good") {
			t.Fatalf("openssl ocsp for %s: %s", tc.name, out)
		}
		got := c.Check(ctx, testenv.ReadCert(t, tc.cert), caCert, tc.at)
		if got.Status != want || want == Revoked && !strings.Contains(got.Reason, "OCSP responder") {
			t.Errorf("%s: %+v; openssl ocsp says %d", tc.name, got, want)
		}
	}
	if got := c.Check(ctx, testenv.ReadCert(t, alice), caCert, revokedAt.Add(-24*time.Hour)); got.Status != Good {
		t.Errorf("alice's mail from before her revocation: %+v, want good", got)
	}
	if got := New(nil, Config{Fetch: true}).Check(ctx, testenv.ReadCert(t, alice), caCert, time.Now()); got.Status != Unknown || !got.NotOffered {
		t.Errorf("ocsp off, no CRL: %+v, want unknown, nothing offered", got)
	}

	// A responder that is not there.
	down := testenv.NewCA(t, "Down OCSP CA", "")
	down.OCSPURL(t, "http://"+testenv.FreeAddr(t))
	carol, _ := down.Issue(t, "carol", "carol@partner.example", time.Now().AddDate(0, -1, 0))
	if got := c.Check(ctx, testenv.ReadCert(t, carol), testenv.ReadCert(t, down.Cert), time.Now()); got.Status != Unknown || !strings.Contains(got.Reason, "OCSP: ") || got.NotOffered {
		t.Errorf("responder down: %+v, want unknown naming OCSP", got)
	}
}
