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

// Attacks on the verdicts and on the readable copy. Every message here is
// made by OpenSSL; the expected outcome is stated by the attack's premise,
// and OpenSSL's own view is checked where it has one.

func process(t *testing.T, eng *Engine, raw []byte) *Result {
	t.Helper()
	res, err := eng.Process(raw, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(res.Report.Error, internalError) {
		t.Fatal(res.Report.Error)
	}
	return res
}

func TestNameConstrainedSubjectEmail(t *testing.T) {
	testenv.NeedOpenSSL(t)
	dir := t.TempDir()
	rootKey := privateCopy(t, dir, "root.key")
	os.WriteFile(filepath.Join(dir, "ca.cnf"), []byte("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\nnameConstraints=critical,permitted;email:partner.example\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "ee.cnf"), []byte("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=emailProtection\n"), 0o600)
	testenv.OpenSSL(t, dir, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-subj", "/CN=Partner constrained CA", "-out", "ca.csr")
	testenv.OpenSSL(t, dir, "x509", "-req", "-in", "ca.csr", "-CA", filepath.Join(testdataDir, "pki", "ca-bundle.pem"), "-CAkey", rootKey,
		"-set_serial", "7001", "-days", "365", "-extfile", "ca.cnf", "-out", "ca.crt")
	// No SAN: the only address is the subject emailAddress, outside the
	// CA's permitted subtree.
	testenv.OpenSSL(t, dir, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "ee.key", "-subj", "/CN=Not the CEO/emailAddress=ceo@org.example", "-out", "ee.csr")
	testenv.OpenSSL(t, dir, "x509", "-req", "-in", "ee.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial", "7002", "-days", "365", "-extfile", "ee.cnf", "-out", "ee.crt")
	if out, err := testenv.OpenSSLTry(t, dir, nil, "verify", "-CAfile", filepath.Join(testdataDir, "pki", "ca-bundle.pem"), "-untrusted", "ca.crt", "ee.crt"); err == nil || !strings.Contains(string(out), "permitted subtree violation") {
		t.Fatalf("openssl verify = %v %s; the premise is OpenSSL's permitted subtree violation", err, out)
	}
	entity := []byte("Content-Type: text/plain\r\n\r\nPay the invoice.\r\n")
	signed := testenv.OpenSSLInput(t, dir, entity, "cms", "-sign", "-signer", "ee.crt", "-inkey", "ee.key", "-certfile", "ca.crt")
	raw := append([]byte("From: ceo@org.example\r\nTo: staff@org.example\r\nSubject: urgent\r\n"), signed...)

	st := openTestStore(t, filepath.Join(t.TempDir(), "smimed.db"), false)
	defer st.Close()
	res := process(t, New(Options{Roots: fixtureRoots(t), Store: st, Harvest: true}), raw)
	if s := res.Report.Signatures; len(s) != 1 || s[0].Status == StatusValid {
		t.Fatalf("signatures = %+v, want not valid", s)
	}
	if es, _ := st.ByEmail("ceo@org.example"); len(es) != 0 {
		t.Errorf("store holds %+v for ceo@org.example", es)
	}
}

func TestPlaintextHeadersComeFromOutside(t *testing.T) {
	testenv.NeedOpenSSL(t)
	dir := t.TempDir()
	inner := []byte("From: ceo@org.example\r\nReceived: from forged\r\nAuthentication-Results: mx.org.example; dmarc=pass\r\nContent-Type: text/plain\r\n\r\nhello\r\n")
	enc := testenv.OpenSSLInput(t, dir, inner, "cms", "-encrypt", "-aes256", filepath.Join(testdataDir, "pki", "org-new.crt"))
	raw := append([]byte("Received: from real.example\r\nFrom: mallory@evil.example\r\nAuthentication-Results: mx.org.example; dmarc=fail\r\nContent-Base: http://evil.example/\r\nX-Note: a\rB: injected\r\n"), enc...)
	res := process(t, New(Options{Keys: keyList(orgKeys(t))}), raw)
	if res.Report.Decryption.Status != DecryptOK {
		t.Fatalf("Decryption = %+v", res.Report.Decryption)
	}
	p := string(res.Plaintext)
	for _, bad := range []string{"ceo@org.example", "forged", "dmarc=pass", "Content-Base", "\rB:"} {
		if strings.Contains(p, bad) {
			t.Errorf("plaintext contains %q:\n%s", bad, p)
		}
	}
	for _, good := range []string{"From: mallory@evil.example\r\n", "Received: from real.example\r\n", "dmarc=fail", "\r\n\r\nhello\r\n"} {
		if !strings.Contains(p, good) {
			t.Errorf("plaintext lacks %q:\n%s", good, p)
		}
	}
}

func TestSignedPartInsideMixed(t *testing.T) {
	testenv.NeedOpenSSL(t)
	dir := t.TempDir()
	signed := signAs(t, dir, "alice", "", []byte("Content-Type: text/plain\r\n\r\nHello from alice.\r\n"))
	raw := []byte("From: alice@partner.example\r\nSubject: pay now\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nPay to IBAN XX 666.\r\n--zz\r\n")
	raw = append(raw, signed...)
	raw = append(raw, "\r\n--zz--\r\n"...)
	res := process(t, New(Options{Roots: fixtureRoots(t)}), raw)
	r := res.Report
	if strings.Join(r.Layers, ",") != "multipart/signed (part)" || len(r.Signatures) != 1 || r.Signatures[0].Status != StatusPartial || len(r.Notes) == 0 {
		t.Errorf("report = %+v, want a partial signature marked as covering a part, with a note", r)
	}
	if !bytes.Equal(res.Plaintext, raw) {
		t.Errorf("a container message was rewritten")
	}
}

func TestFromBinding(t *testing.T) {
	testenv.NeedOpenSSL(t)
	dir := t.TempDir()
	entity := []byte("Content-Type: text/plain\r\n\r\nhi\r\n")
	eng := New(Options{Roots: fixtureRoots(t)})
	for _, tc := range []struct{ header, want string }{
		{"From: alice@partner.example\r\n", StatusValid},
		{"From: ALICE@Partner.Example\r\n", StatusValid},
		{"From: alice@partner.example, ceo@org.example\r\n", StatusMismatch},
		{"From: alice@partner.example\r\nFrom: ceo@org.example\r\n", StatusMismatch},
		{"From: \"ceo@org.example\" <alice@partner.example>\r\n", StatusMismatch},
		{"From: Alice Example <alice@partner.example>\r\n", StatusValid},
		{"", StatusMismatch},
	} {
		res := process(t, eng, signAs(t, dir, "alice", tc.header, entity))
		if s := res.Report.Signatures; len(s) != 1 || s[0].Status != tc.want {
			t.Errorf("%q: signatures = %+v, want %s", tc.header, s, tc.want)
		}
	}
}

func TestQuarantineOnlyFromAddress(t *testing.T) {
	testenv.NeedOpenSSL(t)
	dir := t.TempDir()
	testenv.OpenSSL(t, dir, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ee.key", "-subj", "/CN=Self", "-days", "30", "-addext",
		"subjectAltName=email:me@self.example,email:ceo@org.example,email:cfo@org.example", "-addext", "extendedKeyUsage=emailProtection", "-out", "ee.crt")
	signed := testenv.OpenSSLInput(t, dir, []byte("Content-Type: text/plain\r\n\r\nhi\r\n"), "cms", "-sign", "-signer", "ee.crt", "-inkey", "ee.key")
	raw := append([]byte("From: me@self.example\r\n"), signed...)
	st := openTestStore(t, filepath.Join(t.TempDir(), "smimed.db"), false)
	defer st.Close()
	res := process(t, New(Options{Roots: fixtureRoots(t), Store: st, Harvest: true}), raw)
	if s := res.Report.Signatures; len(s) != 1 || s[0].Status != StatusUntrusted {
		t.Fatalf("signatures = %+v, want untrusted", s)
	}
	if h := res.Report.Harvested; len(h) != 1 || h[0].Email != "me@self.example" || !h[0].Quarantined {
		t.Errorf("harvested = %+v, want only the From address, quarantined", h)
	}
	if es, _ := st.ByEmail("ceo@org.example"); len(es) != 0 {
		t.Errorf("quarantine holds %+v for ceo@org.example", es)
	}
}

func TestNestingLimits(t *testing.T) {
	testenv.NeedOpenSSL(t)
	// too-deep.eml: ten opaque signatures; exactly MaxDepth layers are
	// looked at, then the error.
	raw, err := os.ReadFile(filepath.Join(testdataDir, "msg", "too-deep.eml"))
	if err != nil {
		t.Fatal(err)
	}
	res := process(t, New(Options{Roots: fixtureRoots(t)}), raw)
	if len(res.Report.Layers) != MaxDepth || len(res.Report.Signatures) != MaxDepth || !strings.Contains(res.Report.Error, "nested too deeply") {
		t.Errorf("too-deep: %d layers, %d signatures, error %q; want %d, %d and the depth error",
			len(res.Report.Layers), len(res.Report.Signatures), res.Report.Error, MaxDepth, MaxDepth)
	}
	// Thousands of message/rfc822 wrappers inside an encrypted layer: an
	// error, not a stack overflow.
	var inner bytes.Buffer
	for i := 0; i < 5000; i++ {
		inner.WriteString("Content-Type: message/rfc822\r\n\r\n")
	}
	inner.WriteString("Content-Type: text/plain\r\n\r\nbottom\r\n")
	enc := testenv.OpenSSLInput(t, t.TempDir(), inner.Bytes(), "cms", "-encrypt", "-aes128", filepath.Join(testdataDir, "pki", "org-new.crt"))
	res = process(t, New(Options{Keys: keyList(orgKeys(t))}), append([]byte("From: a@b.example\r\n"), enc...))
	if !strings.Contains(res.Report.Error, "nested too deeply") {
		t.Errorf("deep message/rfc822: error %q, want the depth error", res.Report.Error)
	}
}

func TestMboxLine(t *testing.T) {
	if got := stripMboxLine([]byte("From alice@partner.example Fri Nov 27 10:00:00 2026\nFrom: a@b\n\nx")); !bytes.HasPrefix(got, []byte("From: a@b")) {
		t.Errorf("mbox line kept: %q", got)
	}
	obsolete := []byte("From : ceo@org.example\nSubject: x\n\nbody")
	if got := stripMboxLine(obsolete); !bytes.Equal(got, obsolete) {
		t.Errorf("obsolete From header field dropped: %q", got)
	}
}

func TestHeaderErrorHasNoBodyText(t *testing.T) {
	res := process(t, New(Options{}), []byte("Subject: payroll\r\nSalaries 2027: Alice 120k\r\n"))
	if strings.Contains(res.Report.Error, "Salaries") || res.Report.Error == "" {
		t.Errorf("Error = %q, want a fixed message without message text", res.Report.Error)
	}
}

func TestBoundaryPrefixOfNestedBoundary(t *testing.T) {
	// The inner multipart's boundary "b1x" starts with the outer "b1": it
	// must not end the outer part.
	body := []byte("--b1\r\nContent-Type: multipart/mixed; boundary=b1x\r\n\r\n--b1x\r\n\r\ninner\r\n--b1x--\r\n--b1\r\nContent-Type: application/pkcs7-signature\r\n\r\nSIG\r\n--b1--\r\n")
	signed, sig, _, err := splitSigned(body, "b1")
	if err != nil {
		t.Fatal(err)
	}
	if want := "Content-Type: multipart/mixed; boundary=b1x\r\n\r\n--b1x\r\n\r\ninner\r\n--b1x--"; string(signed) != want {
		t.Errorf("signed part = %q, want %q", signed, want)
	}
	if !strings.HasSuffix(string(sig), "SIG") {
		t.Errorf("signature part = %q", sig)
	}
}
