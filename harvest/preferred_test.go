package harvest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"path/filepath"
	"testing"
	"time"
)

func goCert(t *testing.T, serial int64, notBefore, notAfter time.Time, ku x509.KeyUsage) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "p"},
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: ku,
		EmailAddresses: []string{"p@partner.example"},
	}
	return mustCertificate(t, tmpl, tmpl, &key.PublicKey, key)
}

// The certificate to encrypt to must be valid now and able to encrypt,
// whatever the sender named and however late it expires.
func TestPreferredNeverExpiredOrSigningOnly(t *testing.T) {
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	expired := goCert(t, 1, now.Add(-400*day), now.Add(-day), x509.KeyUsageKeyAgreement)
	future := goCert(t, 2, now.Add(day), now.Add(900*day), x509.KeyUsageKeyAgreement)
	signOnly := goCert(t, 3, now.Add(-day), now.Add(800*day), x509.KeyUsageDigitalSignature)
	current := goCert(t, 4, now.Add(-day), now.Add(300*day), x509.KeyUsageKeyAgreement)
	certs := map[string]*x509.Certificate{}
	rec := &addressRecord{Certs: map[string]*certRecord{}}
	for _, c := range []*x509.Certificate{expired, future, signOnly, current} {
		fp := Fingerprint(c)
		certs[fp] = c
		rec.Certs[fp] = &certRecord{}
	}
	if got := preferred(rec, certs, now); got != Fingerprint(current) {
		t.Errorf("preferred = %s, want the current encryption certificate %s", got, Fingerprint(current))
	}
	rec.PreferredEncryption = Fingerprint(signOnly)
	if got := preferred(rec, certs, now); got != Fingerprint(current) {
		t.Errorf("named signing-only certificate preferred: %s", got)
	}
	delete(rec.Certs, Fingerprint(current))
	if got := preferred(rec, certs, now); got != "" {
		t.Errorf("preferred = %s with no usable certificate, want none", got)
	}
}

func TestQuarantineIsBounded(t *testing.T) {
	st, err := OpenStore(filepath.Join(t.TempDir(), "smimed.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	var last *x509.Certificate
	for i := 0; i < MaxQuarantined+5; i++ {
		last = goCert(t, int64(100+i), now.Add(-time.Hour), now.Add(time.Hour), 0)
		if err := st.Quarantine("p@partner.example", last, nil, "test", Sighting{Seen: now.Add(time.Duration(i) * time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	es, err := st.ByEmail("p@partner.example")
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != MaxQuarantined {
		t.Errorf("%d quarantined entries kept, want %d", len(es), MaxQuarantined)
	}
	found := false
	for _, e := range es {
		found = found || e.Fingerprint == Fingerprint(last)
	}
	if !found {
		t.Errorf("the newest quarantined certificate was dropped")
	}
}
