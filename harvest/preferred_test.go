package harvest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
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

// Issue 9 item 6: the latest valid signature decides which certificate is
// preferred, never the expiry date, and never a sighting that did not
// choose (a signature for another From address, a quarantine).
func TestPreferredLatestSignatureWins(t *testing.T) {
	st, err := OpenStore(filepath.Join(t.TempDir(), "smimed.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const email = "p@partner.example"
	nb := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	ka := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement
	a := goCert(t, 1, nb, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), ka)
	b := goCert(t, 2, nb, time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC), ka)
	c := goCert(t, 3, nb, time.Date(2035, 1, 1, 0, 0, 0, 0, time.UTC), ka)
	d := goCert(t, 4, nb, time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC), ka)
	day := func(m, d int) Sighting {
		return Sighting{Seen: time.Date(2026, time.Month(m), d, 0, 0, 0, 0, time.UTC)}
	}
	signed := func(leaf, chosen *x509.Certificate, seen Sighting) {
		t.Helper()
		if err := st.Harvest(email, leaf, nil, chosen, nil, seen); err != nil {
			t.Fatalf("Harvest() = %v", err)
		}
	}
	want := func(fp, why string) {
		t.Helper()
		es, err := st.ByEmail(email)
		if err != nil {
			t.Fatal(err)
		}
		if got := preferredOf(es); got != fp {
			t.Errorf("%s: preferred = %s, want %s", why, got, fp)
		}
	}
	signed(c, c, day(1, 10)) // C, usable via an older signature
	signed(a, a, day(3, 1))
	want(Fingerprint(a), "alice signed with A")
	signed(b, b, day(6, 1))
	want(Fingerprint(b), "alice signed with B after A (B expires earlier)")
	// An older signature with C, processed late, chooses nothing new.
	signed(c, c, day(2, 1))
	want(Fingerprint(b), "an older signature with C processed late")
	// C seen later in a signature that does not speak for this address
	// (another From address the certificate also names): usable, not chosen.
	signed(c, nil, day(9, 1))
	want(Fingerprint(b), "C seen for another From address")
	// A quarantine sighting never chooses, not even of a later certificate.
	if err := st.Quarantine(email, d, nil, reasonNoChain, day(10, 1)); err != nil {
		t.Fatal(err)
	}
	want(Fingerprint(b), "a quarantined D that expires in 2040")
	// A signature by A that names C as its encryption certificate.
	signed(a, c, day(11, 1))
	want(Fingerprint(c), "A names C (SMIMEEncryptionKeyPreference)")
}

// Records written before the "chosen" field existed: the sender's named
// preference counts as chosen when it was named; otherwise the usable
// certificate first seen last, whatever its expiry.
func TestPreferredLegacyRecords(t *testing.T) {
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	nb := now.Add(-365 * 24 * time.Hour)
	early := goCert(t, 1, nb, time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC), 0)
	late := goCert(t, 2, nb, time.Date(2035, 1, 1, 0, 0, 0, 0, time.UTC), 0)
	certs := map[string]*x509.Certificate{Fingerprint(early): early, Fingerprint(late): late}
	// Newest first seen: early (which expires first).
	var rec addressRecord
	legacy := `{"certs":{"` + Fingerprint(early) + `":{"first_seen":"2026-05-01T00:00:00Z","last_seen":"2026-05-01T00:00:00Z"},` +
		`"` + Fingerprint(late) + `":{"first_seen":"2026-01-01T00:00:00Z","last_seen":"2026-06-01T00:00:00Z"}}}`
	if err := json.Unmarshal([]byte(legacy), &rec); err != nil {
		t.Fatal(err)
	}
	if got := preferred(&rec, certs, now); got != Fingerprint(early) {
		t.Errorf("legacy record: preferred = %s, want the one first seen last %s", got, Fingerprint(early))
	}
	rec.PreferredEncryption, rec.PreferredSeen = Fingerprint(late), time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	if got := preferred(&rec, certs, now); got != Fingerprint(late) {
		t.Errorf("legacy record naming a preference: preferred = %s, want it %s", got, Fingerprint(late))
	}
	// A later choice recorded by this version replaces the legacy preference.
	rec.Certs[Fingerprint(early)].Chosen = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	if got := preferred(&rec, certs, now); got != Fingerprint(early) {
		t.Errorf("after a new choice: preferred = %s, want %s", got, Fingerprint(early))
	}
}

// The same through the engine, with certificates and signatures made by
// OpenSSL (no SMIMEEncryptionKeyPreference attribute: the signer's own
// certificate is chosen): alice signs with A (expires about 2030), then
// with B (about 2028); C (about 2035) signed an older message. B is
// preferred, whatever the expiry dates.
func TestPreferredThroughEngine(t *testing.T) {
	testenv.NeedOpenSSL(t)
	dir := t.TempDir()
	root := genCA(t, dir, "root")
	const email = "alice@partner.example"
	leaf := func(name string, until time.Time) testCert {
		return genLeaf(t, dir, name, "rsa-pkcs8", email, &root, int(time.Until(until).Hours()/24), "digitalSignature,keyEncipherment")
	}
	a := leaf("a", time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC))
	b := leaf("b", time.Date(2028, 6, 1, 0, 0, 0, 0, time.UTC))
	c := leaf("c", time.Date(2035, 6, 1, 0, 0, 0, 0, time.UTC))
	if !(c.NotAfter.After(a.NotAfter) && a.NotAfter.After(b.NotAfter)) {
		t.Fatalf("openssl dates not in the expected order: a %v b %v c %v", a.NotAfter, b.NotAfter, c.NotAfter)
	}
	roots := x509.NewCertPool()
	roots.AddCert(loadCert(t, root.CertPath))
	st := openTestStore(t, filepath.Join(dir, "smimed.db"), false)
	defer st.Close()
	eng := New(Options{Roots: roots, Store: st, Harvest: true})
	start := time.Now().Add(time.Minute)
	for i, signer := range []testCert{c, a, b} {
		raw := append([]byte("From: "+email+"\r\n"), testenv.OpenSSLInput(t, dir, []byte("Content-Type: text/plain\r\n\r\nhi\r\n"),
			"cms", "-sign", "-signer", signer.CertPath, "-inkey", signer.KeyPath)...)
		res, err := eng.Process(raw, start.Add(time.Duration(i)*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if s := res.Report.Signatures; len(s) != 1 || s[0].Status != StatusValid {
			t.Fatalf("signature by %s: %+v, want valid", signer.CertPath, s)
		}
	}
	es, err := st.ByEmail(email)
	if err != nil {
		t.Fatal(err)
	}
	if got := preferredOf(es); got != b.FP {
		t.Errorf("preferred = %s, want B %s (signed last), not C %s (expires last)", got, b.FP, c.FP)
	}
}
