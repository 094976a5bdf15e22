package harvest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
)

// Issue 9, "verdicts people can act on": a certificate an administrator
// trusted is a pinned leaf. Its signatures are valid without a CA chain,
// with the reason saying so; the From binding, the validity period and
// the extended key usage still apply, and only for that exact
// certificate. Untrust undoes it. The verdicts before trust and after
// untrust are OpenSSL's (testdata/expected.tsv: untrusted, "self-signed,
// not chained to the test root").
func TestTrustedCertificateIsPinnedLeaf(t *testing.T) {
	testenv.NeedOpenSSL(t)
	dir := t.TempDir()
	raw, err := os.ReadFile(filepath.Join(testdataDir, "msg", "signed-selfsigned.eml"))
	if err != nil {
		t.Fatal(err)
	}
	fp := testenv.OpenSSLFingerprint(t, filepath.Join(testdataDir, "pki", "selfsigned.crt"))
	st := openTestStore(t, filepath.Join(dir, "smimed.db"), false)
	defer st.Close()
	eng := New(Options{Roots: fixtureRoots(t), Store: st, Harvest: true})
	verdict := func(raw []byte, received time.Time) Signature {
		t.Helper()
		res, err := eng.Process(raw, received)
		if err != nil {
			t.Fatal(err)
		}
		if s := res.Report.Signatures; len(s) != 1 {
			t.Fatalf("signatures = %+v, want one", s)
		}
		return res.Report.Signatures[0]
	}
	now := time.Now()

	if v := verdict(raw, now); v.Status != StatusUntrusted || v.Fingerprint != fp {
		t.Fatalf("before trust: %s (%s) by %s, want untrusted by %s", v.Status, v.Reason, v.Fingerprint, fp)
	}
	if _, err := st.Trust(fp, "admin"); err != nil {
		t.Fatalf("Trust() = %v", err)
	}
	day := time.Now().UTC().Format(time.DateOnly)
	want := "trusted by admin on " + day + " (no CA chain)"
	if v := verdict(raw, now); v.Status != StatusValid || v.Reason != want {
		t.Errorf("after trust: %s (%q), want valid (%q)", v.Status, v.Reason, want)
	}

	// The From binding still applies: the same signature under another
	// From address is not valid (and the pin is per address).
	other := bytes.Replace(raw, []byte("From: selfsigned@partner.example"), []byte("From: alice@partner.example"), 1)
	if bytes.Equal(other, raw) {
		t.Fatal("fixture has no From: selfsigned@partner.example line")
	}
	if v := verdict(other, now); v.Status == StatusValid {
		t.Errorf("pinned certificate under another From: %s (%s), want not valid", v.Status, v.Reason)
	}
	// The validity period still applies: received (and so judged) before
	// the certificate's notBefore (2026-01-01, `openssl x509 -startdate`).
	notBefore := testenv.OpenSSLDate(t, filepath.Join(testdataDir, "pki", "selfsigned.crt"), "startdate")
	if v := verdict(raw, notBefore.Add(-24*time.Hour)); v.Status != StatusExpired {
		t.Errorf("pinned certificate judged before notBefore: %s (%s), want expired", v.Status, v.Reason)
	}

	// Only that exact certificate: another self-signed certificate for the
	// same address stays untrusted.
	testenv.OpenSSL(t, dir, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "twin.key", "-subj", "/O=Partner Example/CN=selfsigned",
		"-days", "30", "-addext", "subjectAltName=email:selfsigned@partner.example", "-addext", "extendedKeyUsage=emailProtection", "-out", "twin.crt")
	twin := append([]byte("From: selfsigned@partner.example\r\n"),
		testenv.OpenSSLInput(t, dir, []byte("Content-Type: text/plain\r\n\r\nhi\r\n"), "cms", "-sign", "-signer", "twin.crt", "-inkey", "twin.key")...)
	if v := verdict(twin, now); v.Status != StatusUntrusted {
		t.Errorf("another certificate for the pinned address: %s (%s), want untrusted", v.Status, v.Reason)
	}

	if _, err := st.Untrust(fp, "admin"); err != nil {
		t.Fatalf("Untrust() = %v", err)
	}
	if v := verdict(raw, now); v.Status != StatusUntrusted {
		t.Errorf("after untrust: %s (%s), want untrusted", v.Status, v.Reason)
	}
	es, err := st.ByFingerprint(fp)
	if err != nil || len(es) != 1 || !es[0].Quarantined || !es[0].TrustedAt.IsZero() || es[0].EncryptionPreferred {
		t.Errorf("after untrust: entries %+v, %v; want one, quarantined, not trusted, not preferred", es, err)
	}
	if _, err := st.Untrust(fp, "admin"); err == nil || !strings.Contains(err.Error(), "not trusted") {
		t.Errorf("second Untrust() = %v, want ErrNotTrusted", err)
	}
}

// A pinned certificate whose extended key usage does not allow email
// protection is still refused: only the missing chain is forgiven.
func TestPinnedLeafKeepsEKU(t *testing.T) {
	testenv.NeedOpenSSL(t)
	dir := t.TempDir()
	testenv.OpenSSL(t, dir, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "tls.key", "-subj", "/CN=tls",
		"-days", "30", "-addext", "subjectAltName=email:web@partner.example", "-addext", "extendedKeyUsage=serverAuth", "-out", "tls.crt")
	raw := append([]byte("From: web@partner.example\r\n"),
		testenv.OpenSSLInput(t, dir, []byte("Content-Type: text/plain\r\n\r\nhi\r\n"), "cms", "-sign", "-signer", "tls.crt", "-inkey", "tls.key")...)
	st := openTestStore(t, filepath.Join(dir, "smimed.db"), false)
	defer st.Close()
	eng := New(Options{Roots: fixtureRoots(t), Store: st, Harvest: true})
	if res := process(t, eng, raw); len(res.Report.Harvested) != 1 || !res.Report.Harvested[0].Quarantined {
		t.Fatalf("harvested = %+v, want the certificate quarantined", res.Report.Harvested)
	}
	if _, err := st.Trust(testenv.OpenSSLFingerprint(t, filepath.Join(dir, "tls.crt")), "admin"); err != nil {
		t.Fatal(err)
	}
	s := process(t, eng, raw).Report.Signatures
	if len(s) != 1 || s[0].Status != StatusUntrusted || !strings.Contains(s[0].Reason, "extended key usage") {
		t.Errorf("pinned serverAuth certificate: %+v, want untrusted for its extended key usage", s)
	}
}
