package compose

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"io"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/textproto"

	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest/cms"
)

// The messages built here are judged by other implementations: OpenSSL
// (openssl cms -verify, -decrypt, -cmsout -print), NSS (cmsutil -D) and
// gpgsm --verify; smimed's own reader (harvest/cms) is a further check,
// never the only one.

type party struct {
	certPath, keyPath string
	cert              *x509.Certificate
	key               crypto.Signer
}

type pki struct {
	root, sub *testenv.CA
	parties   map[string]party
	subCert   *x509.Certificate
}

var (
	pkiCache *pki
	// pkiDir holds the shared PKI's files for the whole test binary.
	pkiDir string
)

func TestMain(m *testing.M) {
	var err error
	if pkiDir, err = os.MkdirTemp("", "compose-pki"); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(pkiDir)
	os.Exit(code)
}

// keepTB is the test's TB with TempDir under pkiDir, so that the shared
// PKI outlives the test that happens to make it.
type keepTB struct{ testing.TB }

func (k keepTB) TempDir() string {
	d, err := os.MkdirTemp(pkiDir, "ca")
	if err != nil {
		k.Fatal(err)
	}
	return d
}

// testPKI is a root CA, an intermediate under it, and keys: signers under
// the intermediate (so that the chain must come with the message), and
// recipients of every kind under the root.
func testPKI(t *testing.T) *pki {
	t.Helper()
	if pkiCache != nil {
		return pkiCache
	}
	testenv.NeedOpenSSL(t)
	tb := keepTB{t}
	root := testenv.NewCA(tb, "Compose Root", "")
	sub := testenv.NewSubCA(tb, root, "Compose Intermediate", "", "")
	p := &pki{root: root, sub: sub, parties: map[string]party{}}
	when := time.Now().Add(-time.Hour)
	add := func(ca *testenv.CA, name, keyType string) {
		c, k := ca.IssueKey(tb, name, name+"@org.example", keyType, when)
		p.parties[name] = party{c, k, testenv.ReadCert(t, c), testenv.ReadKey(t, k)}
	}
	add(sub, "sign-rsa", "rsa:2048")
	add(sub, "sign-p256", "P-256")
	add(root, "rcpt-rsa", "rsa:2048")
	add(root, "rcpt-p256", "P-256")
	add(root, "rcpt-p384", "P-384")
	add(root, "escrow", "rsa:3072")
	p.subCert = testenv.ReadCert(t, sub.Cert)
	pkiCache = p
	return p
}

func (p *pki) signer(name string, pss bool) *Signer {
	s := p.parties[name]
	return &Signer{Cert: s.cert, Chain: []*x509.Certificate{p.subCert}, Key: s.key, PSS: pss}
}

// A message with what RFC 8551 3.1 asks to be converted: an 8bit text part
// with a bare LF and a 1200-octet line, a binary attachment, nested
// multipart, a base64 attachment.
const testBinary = "\x00\x01\x02\xff\xfe binary \r\n\n\r tail"

func testMessage() []byte {
	long := strings.Repeat("L", 1200)
	return []byte("Received: from client by mx; Thu, 1 Jan 2026 00:00:00 +0000\r\n" +
		"From: Alice <sign-rsa@org.example>\r\n" +
		"To: partner@partner.example\r\n" +
		"Subject: quarterly figures\r\n" +
		"Date: Thu, 1 Jan 2026 00:00:00 +0000\r\n" +
		"Message-ID: <m1@org.example>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=outer\r\n" +
		"\r\n" +
		"preamble\r\n" +
		"--outer\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: 8bit\r\n" +
		"\r\n" +
		"Grüße aus Köln\nsecond line\r\n" + long + "\r\n" +
		"--outer\r\n" +
		"Content-Type: multipart/alternative; boundary=inner\r\n" +
		"\r\n" +
		"--inner\r\n" +
		"Content-Type: text/html; charset=utf-8\r\n" +
		"\r\n" +
		"<p>Grüße</p>\r\n" +
		"--inner--\r\n" +
		"--outer\r\n" +
		"Content-Type: application/octet-stream; name=b.bin\r\n" +
		"Content-Transfer-Encoding: binary\r\n" +
		"\r\n" +
		testBinary + "\r\n" +
		"--outer\r\n" +
		"Content-Type: application/pdf; name=a.pdf\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"\r\n" +
		base64.StdEncoding.EncodeToString([]byte("%PDF-1.4 fake")) + "\r\n" +
		"--outer--\r\n")
}

func write(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// splitSigned cuts a multipart/signed message into its header, its raw
// first part (the signed content) and the signature's DER.
func splitSigned(t *testing.T, msg []byte) (textproto.Header, []byte, []byte) {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(msg))
	h, err := textproto.ReadHeader(br)
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mt != "multipart/signed" {
		t.Fatalf("Content-Type %q", h.Get("Content-Type"))
	}
	rest, _ := io.ReadAll(br)
	delim := []byte("--" + params["boundary"] + "\r\n")
	i := bytes.Index(rest, delim)
	if i < 0 {
		t.Fatal("no first delimiter")
	}
	body := rest[i+len(delim):]
	j := bytes.Index(body, []byte("\r\n"+string(delim)))
	if j < 0 {
		t.Fatal("no second delimiter")
	}
	content := body[:j]
	sigPart := body[j+2+len(delim):]
	k := bytes.Index(sigPart, []byte("\r\n\r\n"))
	end := bytes.Index(sigPart, []byte("--"+params["boundary"]+"--"))
	sig, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(sigPart[k:end])), ""))
	if err != nil {
		t.Fatal(err)
	}
	return h, content, sig
}

// p7m is the DER of an application/pkcs7-mime message's body.
func p7m(t *testing.T, msg []byte) (textproto.Header, []byte) {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(msg))
	h, err := textproto.ReadHeader(br)
	if err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(br)
	der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(rest)), ""))
	if err != nil {
		t.Fatal(err)
	}
	return h, der
}

func check7bit(t *testing.T, b []byte) {
	t.Helper()
	for i, line := range bytes.Split(b, []byte("\r\n")) {
		if len(line) > 998 {
			t.Errorf("line %d has %d octets", i+1, len(line))
		}
		for _, c := range line {
			if c >= 0x80 || c == 0 || c == '\r' || c == '\n' {
				t.Fatalf("line %d has octet %#x", i+1, c)
			}
		}
	}
}

// signCases are the signers every verifier is tried with.
var signCases = []struct {
	name, signer string
	pss          bool
}{{"rsa", "sign-rsa", false}, {"pss", "sign-rsa", true}, {"ecdsa", "sign-p256", false}}

// signTest signs testMessage as the signer and returns the message.
func (p *pki) signTest(t *testing.T, signer string, pss bool, dir string) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := Sign(&out, bytes.NewReader(testMessage()), p.signer(signer, pss), Options{TempDir: dir}); err != nil {
		t.Fatalf("Sign() = %v", err)
	}
	return out.Bytes()
}

func TestSignOpenSSL(t *testing.T) {
	p := testPKI(t)
	dir := t.TempDir()
	in := testMessage()
	for _, c := range signCases {
		t.Run(c.name, func(t *testing.T) {
			msg := p.signTest(t, c.signer, c.pss, dir)
			check7bit(t, msg)
			h, content, _ := splitSigned(t, msg)
			if h.Get("Subject") != "quarterly figures" || h.Get("Received") == "" {
				t.Errorf("transport fields not kept outside: %v", h.Map())
			}
			if !strings.Contains(h.Get("Content-Type"), "micalg=sha-256") {
				t.Errorf("Content-Type %q", h.Get("Content-Type"))
			}
			path := write(t, dir, c.name+".eml", msg)
			got := testenv.OpenSSL(t, dir, "cms", "-verify", "-in", path, "-CAfile", p.root.Cert, "-purpose", "smimesign")
			// What OpenSSL verified is the prepared entity, which decodes to the input's parts.
			if !bytes.Equal(canonicalParts(t, got), canonicalParts(t, in)) {
				t.Errorf("verified content decodes to other parts than the input")
			}
			// One octet changed in the signed part: OpenSSL must refuse.
			bad := bytes.Replace(msg, []byte("second line"), []byte("second lime"), 1)
			if out, err := testenv.OpenSSLTry(t, dir, nil, "cms", "-verify", "-in", write(t, dir, c.name+"-bad.eml", bad), "-CAfile", p.root.Cert); err == nil {
				t.Fatalf("openssl verified a changed message: %s", out)
			}
			// Our own reader agrees.
			ci, err := cms.ParseContentInfo(func() []byte { _, _, s := splitSigned(t, msg); return s }())
			if err != nil {
				t.Fatal(err)
			}
			sd, err := cms.ParseSignedData(ci)
			if err != nil {
				t.Fatal(err)
			}
			if err := sd.Verify(sd.Signers[0], sd.FindCertificate(sd.Signers[0], nil), content); err != nil {
				t.Fatalf("cms Verify() = %v", err)
			}
		})
	}
}

// TestSignProtectedOpenSSL: a signed-only message with header protection
// carries the header fields in the signed entity, marked hp="clear"
// (RFC 9788), and its outer Subject stays as it was.
func TestSignProtectedOpenSSL(t *testing.T) {
	p := testPKI(t)
	dir := t.TempDir()
	var out bytes.Buffer
	if err := Sign(&out, bytes.NewReader(testMessage()), p.signer("sign-p256", false), Options{TempDir: dir, ProtectHeaders: true}); err != nil {
		t.Fatal(err)
	}
	h, _, _ := splitSigned(t, out.Bytes())
	if h.Get("Subject") != "quarterly figures" {
		t.Errorf("outer Subject %q", h.Get("Subject"))
	}
	got := testenv.OpenSSL(t, dir, "cms", "-verify", "-in", write(t, dir, "hp.eml", out.Bytes()), "-CAfile", p.root.Cert)
	inner := string(got[:bytes.Index(got, []byte("\r\n\r\n"))])
	for _, want := range []string{"Subject: quarterly figures", "Message-ID: <m1@org.example>", "hp=clear"} {
		if !strings.Contains(inner, want) {
			t.Errorf("signed entity header lacks %q:\n%s", want, inner)
		}
	}
	for _, bad := range []string{"HP-Outer", "Received:"} {
		if strings.Contains(inner, bad) {
			t.Errorf("signed entity header has %q:\n%s", bad, inner)
		}
	}
}
