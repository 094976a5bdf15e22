package harvest

import (
	"crypto/x509"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
)

// recipientFP is the fingerprint RecipientCert returns ("" for none).
func recipientFP(t *testing.T, st *Store, email string, now time.Time) (string, []string) {
	t.Helper()
	e, err := st.RecipientCert(email, now)
	if err != nil {
		t.Fatalf("RecipientCert(%s) = %v", email, err)
	}
	if e == nil {
		return "", nil
	}
	return e.Fingerprint, e.Capabilities
}

// The gateway's choice of certificate: only a usable, current,
// unrevoked certificate whose key and key usage allow encryption; the
// latest valid signature's choice; an administrator's import counts as
// a choice. Certificates and key usages are made by OpenSSL; the
// fingerprints compared are OpenSSL's.
func TestRecipientCert(t *testing.T) {
	testenv.NeedOpenSSL(t)
	dir := t.TempDir()
	root := genCA(t, dir, "root")
	const email = "bob@partner.example"
	leaf := func(name, kind, ku string) (testCert, *x509.Certificate) {
		c := genLeaf(t, dir, name, kind, email, &root, 365, ku)
		return c, loadCert(t, c.CertPath)
	}
	rsaEnc, rsaEncC := leaf("rsa-enc", "rsa-pkcs8", "digitalSignature,keyEncipherment")
	rsaSign, rsaSignC := leaf("rsa-sign", "rsa-pkcs8", "digitalSignature")
	ecWrongBit, ecWrongBitC := leaf("ec-ke", "ec-pkcs8", "digitalSignature,keyEncipherment")
	ecAgree, ecAgreeC := leaf("ec-ka", "ec-pkcs8", "digitalSignature,keyAgreement")
	st := openTestStore(t, filepath.Join(dir, "smimed.db"), false)
	defer st.Close()
	now := time.Now()
	at := func(d time.Duration) Sighting { return Sighting{Seen: now.Add(d)} }
	capsA, capsB := []string{"aes256-GCM", "aes256-CBC"}, []string{"aes256-CBC"}

	if fp, _ := recipientFP(t, st, email, now); fp != "" {
		t.Fatalf("RecipientCert of an unknown address = %s, want none", fp)
	}
	// A quarantined certificate is never offered.
	if err := st.Quarantine(email, rsaEncC, nil, "test", at(-5*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if fp, _ := recipientFP(t, st, email, now); fp != "" {
		t.Errorf("RecipientCert with only a quarantined certificate = %s, want none", fp)
	}
	// Signing-only certificates chosen by later signatures are passed
	// over for the one that can encrypt, whatever was chosen last.
	for i, c := range []*x509.Certificate{rsaEncC, rsaSignC, ecWrongBitC} {
		caps := capsB
		if i == 0 {
			caps = capsA
		}
		if err := st.Harvest(email, c, nil, c, caps, at(time.Duration(i-4)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	fp, caps := recipientFP(t, st, email, now)
	if fp != rsaEnc.FP {
		t.Errorf("RecipientCert = %s, want the RSA keyEncipherment one %s (not signing-only %s, nor EC with keyEncipherment %s)", fp, rsaEnc.FP, rsaSign.FP, ecWrongBit.FP)
	}
	if !slices.Equal(caps, capsA) {
		t.Errorf("capabilities = %v, want its own sighting's %v", caps, capsA)
	}
	// The latest valid signature's choice wins.
	if err := st.Harvest(email, ecAgreeC, nil, ecAgreeC, nil, at(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	fp, caps = recipientFP(t, st, email, now)
	if fp != ecAgree.FP {
		t.Errorf("RecipientCert = %s, want the one chosen last %s", fp, ecAgree.FP)
	}
	if !slices.Equal(caps, capsB) {
		t.Errorf("capabilities of a certificate announced without any = %v, want the address's latest %v", caps, capsB)
	}
	// Not valid any more (or not yet): none of the encryption-capable
	// certificates is offered.
	if fp, _ := recipientFP(t, st, email, now.AddDate(2, 0, 0)); fp != "" {
		t.Errorf("RecipientCert two years on (every certificate expired) = %s, want none", fp)
	}
	if fp, _ := recipientFP(t, st, email, now.AddDate(0, 0, -2)); fp != "" {
		t.Errorf("RecipientCert before the certificates were valid = %s, want none", fp)
	}
	// Revoked: the next choice.
	if _, err := st.MarkRevoked(ecAgree.FP, now.Add(-time.Minute), "keyCompromise"); err != nil {
		t.Fatal(err)
	}
	if fp, _ := recipientFP(t, st, email, now); fp != rsaEnc.FP {
		t.Errorf("RecipientCert after the chosen one was revoked = %s, want %s", fp, rsaEnc.FP)
	}
	// Addresses are compared as the store keeps them.
	if fp, _ := recipientFP(t, st, "Bob@PARTNER.example", now); fp != rsaEnc.FP {
		t.Errorf("RecipientCert(Bob@PARTNER.example) = %s, want %s", fp, rsaEnc.FP)
	}
	if _, err := st.RecipientCert("not an address", now); !errors.Is(err, ErrBadAddress) {
		t.Errorf("RecipientCert(not an address) = %v, want ErrBadAddress", err)
	}
}

// An imported certificate is usable, chosen from its import on, marked
// as imported; a later valid signature's choice replaces it; an address
// the certificate does not name is refused.
func TestImport(t *testing.T) {
	testenv.NeedOpenSSL(t)
	dir := t.TempDir()
	root := genCA(t, dir, "root")
	const email = "carol@partner.example"
	old := genLeaf(t, dir, "old", "rsa-pkcs8", email, &root, 365, "digitalSignature,keyEncipherment")
	imp := genLeaf(t, dir, "imp", "ec-pkcs8", email, &root, 365, "keyAgreement")
	later := genLeaf(t, dir, "later", "rsa-pkcs8", email, &root, 365, "digitalSignature,keyEncipherment")
	st := openTestStore(t, filepath.Join(dir, "smimed.db"), false)
	defer st.Close()
	now := time.Now()
	if err := st.Harvest(email, loadCert(t, old.CertPath), nil, loadCert(t, old.CertPath), nil, Sighting{Seen: now.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Import(loadCert(t, imp.CertPath), nil, []string{"dave@partner.example"}, "root (uid 0)", false); !errors.Is(err, ErrNotForAddress) {
		t.Errorf("Import for an address the certificate does not name = %v, want ErrNotForAddress", err)
	}
	es, err := st.Import(loadCert(t, imp.CertPath), nil, []string{"Carol@Partner.example"}, "root (uid 0)", false)
	if err != nil || len(es) != 1 {
		t.Fatalf("Import = %+v, %v", es, err)
	}
	if e := es[0]; e.Fingerprint != imp.FP || e.ImportedBy != "root (uid 0)" || e.ImportedAt.IsZero() || e.Quarantined || !e.TrustedAt.IsZero() || !e.EncryptionPreferred {
		t.Errorf("imported entry = %+v, want %s imported by root, usable, not pinned, preferred", e, imp.FP)
	}
	if fp, _ := recipientFP(t, st, email, time.Now()); fp != imp.FP {
		t.Errorf("RecipientCert after the import = %s, want the imported %s", fp, imp.FP)
	}
	if at, ok, _ := st.Pinned(email, loadCert(t, imp.CertPath)); ok {
		t.Errorf("an import without trust pinned the certificate (at %v)", at)
	}
	l := loadCert(t, later.CertPath)
	if err := st.Harvest(email, l, nil, l, nil, Sighting{Seen: time.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if fp, _ := recipientFP(t, st, email, time.Now().Add(2*time.Minute)); fp != later.FP {
		t.Errorf("RecipientCert after a later signature = %s, want its certificate %s", fp, later.FP)
	}
	// Imported with trust: pinned too.
	es, err = st.Import(loadCert(t, imp.CertPath), nil, nil, "root (uid 0)", true)
	if err == nil {
		t.Errorf("Import without any address = %+v, want an error", es)
	}
	if _, err := st.Import(loadCert(t, imp.CertPath), nil, []string{email}, "root (uid 0)", true); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := st.Pinned(email, loadCert(t, imp.CertPath)); !ok {
		t.Errorf("an import with trust did not pin the certificate")
	}
}

// EncryptionProblem, which check-config applies to configured
// certificates: the validity period and the key usage.
func TestEncryptionProblem(t *testing.T) {
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	ok := goCert(t, 1, now.Add(-time.Hour), now.Add(time.Hour), x509.KeyUsageKeyAgreement)
	if p := EncryptionProblem(ok, now); p != "" {
		t.Errorf("EncryptionProblem(EC keyAgreement) = %q, want none", p)
	}
	if p := EncryptionProblem(ok, now.Add(2*time.Hour)); p == "" {
		t.Errorf("EncryptionProblem(expired) = none")
	}
	signOnly := goCert(t, 2, now.Add(-time.Hour), now.Add(time.Hour), x509.KeyUsageDigitalSignature)
	if p := EncryptionProblem(signOnly, now); p == "" {
		t.Errorf("EncryptionProblem(EC digitalSignature only) = none")
	}
}

// FuzzParseCertificates: what an administrator brings to certs import
// (and the control socket carries) never panics and never yields more
// than MaxCertificates.
func FuzzParseCertificates(f *testing.F) {
	for _, name := range []string{"alice.crt", "intermediate.pem", "ca-bundle.pem"} {
		b := testenv.Testdata(f, "pki", name)
		f.Add(b)
		if c, err := ParseCertificates(b); err == nil {
			f.Add(c[0].Raw)
		}
	}
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseCertificates(data)
		if err == nil && (len(certs) == 0 || len(certs) > MaxCertificates) {
			t.Fatalf("ParseCertificates = %d certificates, no error", len(certs))
		}
	})
}
