package cms

// Every expected value here comes from OpenSSL (run at test time) or from
// the input given to OpenSSL, never from this package's own output.

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/smimed/smimed/daemon/testenv"
)

// envParty is a recipient certificate and key made by openssl.
type envParty struct {
	name   string
	cert   string // PEM file, relative to the fixture dir
	keyPEM string // PEM file (PKCS #8)
	key    *Key
	serial *big.Int // as printed by openssl x509 -serial
	ski    []byte   // as printed by openssl x509 -ext subjectKeyIdentifier
}

type envFixture struct {
	dir string
	ca  string // CA certificate and key: ca.pem, ca.key
}

func envNewFixture(t testing.TB) *envFixture {
	testenv.NeedOpenSSL(t)
	dir := t.TempDir()
	testenv.OpenSSL(t, dir, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
		"-subj", "/O=smimed tests/CN=Test CA", "-days", "2")
	return &envFixture{dir: dir, ca: "ca.pem"}
}

// newParty makes a key (newkey as for openssl req -newkey, plus pkeyopts)
// and a certificate issued by the fixture CA.
func (fx *envFixture) newParty(t testing.TB, name string, newkey string, pkeyopts ...string) *envParty {
	t.Helper()
	keyFile, csr, cert := name+".key", name+".csr", name+".pem"
	args := []string{"req", "-new", "-newkey", newkey, "-nodes", "-keyout", keyFile, "-out", csr, "-subj", "/CN=" + name}
	for _, o := range pkeyopts {
		args = append(args, "-pkeyopt", o)
	}
	testenv.OpenSSL(t, fx.dir, args...)
	ext := filepath.Join(fx.dir, name+".ext")
	if err := os.WriteFile(ext, []byte("subjectKeyIdentifier=hash\nkeyUsage=keyEncipherment,keyAgreement,dataEncipherment\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.OpenSSL(t, fx.dir, "x509", "-req", "-in", csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
		"-days", "2", "-extfile", ext, "-out", cert)
	p := &envParty{name: name, cert: cert, keyPEM: keyFile}
	p.key = envLoadPEMKey(t, filepath.Join(fx.dir, cert), filepath.Join(fx.dir, keyFile))

	out := string(testenv.OpenSSL(t, fx.dir, "x509", "-in", cert, "-noout", "-serial"))
	s := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), "serial="))
	p.serial, _ = new(big.Int).SetString(s, 16)
	if p.serial == nil {
		t.Fatalf("openssl x509 -serial printed %q", out)
	}
	out = string(testenv.OpenSSL(t, fx.dir, "x509", "-in", cert, "-noout", "-ext", "subjectKeyIdentifier"))
	m := regexp.MustCompile(`(?m)^\s*([0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2})+)\s*$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no subjectKeyIdentifier in %q", out)
	}
	p.ski, _ = hex.DecodeString(strings.ReplaceAll(m[1], ":", ""))
	return p
}

func envLoadPEMKey(t testing.TB, certFile, keyFile string) *Key {
	t.Helper()
	cb, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(cb)
	if blk == nil {
		t.Fatalf("%s: no PEM", certFile)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", certFile, err)
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ = pem.Decode(kb)
	if blk == nil {
		t.Fatalf("%s: no PEM", keyFile)
	}
	priv, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", keyFile, err)
	}
	return &Key{Cert: cert, Private: priv}
}

// envWriteFile writes data to name in dir and returns name.
func envWriteFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

// envPlaintext makes a MIME entity of about n bytes with some binary content.
func envPlaintext(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := []byte("Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n")
	for len(b) < n {
		b = append(b, byte(r.Uint32()))
	}
	return b[:max(n, 0)]
}

// envReadCMS turns openssl's output (DER, PEM or S/MIME) into a ContentInfo.
func envReadCMS(t testing.TB, data []byte, form string) *ContentInfo {
	t.Helper()
	var der []byte
	switch form {
	case "DER":
		der = data
	case "PEM":
		blk, _ := pem.Decode(data)
		if blk == nil {
			t.Fatalf("no PEM block in openssl output")
		}
		der = blk.Bytes
	case "SMIME":
		der = envSMIMEBody(t, data)
	default:
		t.Fatalf("unknown form %q", form)
	}
	ci, err := ParseContentInfo(der)
	if err != nil {
		t.Fatalf("ParseContentInfo() = %v", err)
	}
	return ci
}

// envSMIMEBody base64-decodes the body of a single-part S/MIME message.
func envSMIMEBody(t testing.TB, msg []byte) []byte {
	t.Helper()
	msg = bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))
	i := bytes.Index(msg, []byte("\n\n"))
	if i < 0 {
		t.Fatalf("no header/body separator")
	}
	body := bytes.Map(func(r rune) rune {
		if r == '\n' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, msg[i+2:])
	der, err := base64.StdEncoding.DecodeString(string(body))
	if err != nil {
		t.Fatalf("S/MIME body: %v", err)
	}
	return der
}

// envRecip is one -recip argument with its -keyopt options.
type envRecip struct {
	p       *envParty
	keyopts []string
}

// encrypt runs openssl cms -encrypt on in and returns the output.
func (fx *envFixture) encrypt(t testing.TB, in []byte, form string, opts []string, recips ...envRecip) []byte {
	t.Helper()
	inFile := envWriteFile(t, fx.dir, fmt.Sprintf("in-%d.bin", rand.Uint64()), in)
	outFile := fmt.Sprintf("out-%d.bin", rand.Uint64())
	args := []string{"cms", "-encrypt", "-binary", "-in", inFile, "-out", outFile, "-outform", form}
	args = append(args, opts...)
	for _, r := range recips {
		args = append(args, "-recip", r.p.cert)
		for _, o := range r.keyopts {
			args = append(args, "-keyopt", o)
		}
	}
	testenv.OpenSSL(t, fx.dir, args...)
	out, err := os.ReadFile(filepath.Join(fx.dir, outFile))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// envIDOf is the RecipientIdentifier openssl writes for p, as openssl
// prints p's certificate (`x509 -noout -issuer -serial`, or its subject
// key identifier): the report must let an administrator match the two.
func envIDOf(t testing.TB, fx *envFixture, p *envParty, keyid bool) string {
	t.Helper()
	if keyid {
		out := string(testenv.OpenSSL(t, fx.dir, "x509", "-in", p.cert, "-noout", "-ext", "subjectKeyIdentifier"))
		lines := strings.Split(strings.TrimSpace(out), "\n")
		return "ski=" + strings.TrimSpace(lines[len(lines)-1])
	}
	out := strings.TrimSpace(string(testenv.OpenSSL(t, fx.dir, "x509", "-in", p.cert, "-noout", "-issuer", "-serial")))
	return strings.ReplaceAll(out, "\n", " ")
}

type envParties struct {
	rsa, rsa2, p256, p384, p521 *envParty
}

func envMakeParties(t testing.TB, fx *envFixture) envParties {
	return envParties{
		rsa:  fx.newParty(t, "rsa", "rsa:2048"),
		rsa2: fx.newParty(t, "rsa2", "rsa:2048"),
		p256: fx.newParty(t, "p256", "ec", "ec_paramgen_curve:P-256"),
		p384: fx.newParty(t, "p384", "ec", "ec_paramgen_curve:P-384"),
		p521: fx.newParty(t, "p521", "ec", "ec_paramgen_curve:P-521"),
	}
}

func TestDecryptOpenSSL(t *testing.T) {
	fx := envNewFixture(t)
	ps := envMakeParties(t, fx)
	oaep := "rsa_padding_mode:oaep"

	type tc struct {
		name    string
		opts    []string // cipher and other openssl cms options
		form    string
		recips  []envRecip
		keys    []*envParty // the keys we hold
		size    int
		cipher  string
		kt      string
		by      *envParty // the key that must have worked
		keyid   bool
		stream  bool
		ctLimit int
	}
	r := func(p *envParty, o ...string) envRecip { return envRecip{p, o} }
	cases := []tc{
		{name: "pkcs1/aes-128-cbc", opts: []string{"-aes-128-cbc"}, recips: []envRecip{r(ps.rsa)}, size: 100, cipher: "aes-128-cbc", kt: "rsa-pkcs1v15"},
		{name: "pkcs1/aes-192-cbc", opts: []string{"-aes-192-cbc"}, recips: []envRecip{r(ps.rsa)}, size: 96, cipher: "aes-192-cbc", kt: "rsa-pkcs1v15"},
		{name: "pkcs1/aes-256-cbc", opts: []string{"-aes-256-cbc"}, recips: []envRecip{r(ps.rsa)}, size: 4097, cipher: "aes-256-cbc", kt: "rsa-pkcs1v15"},
		{name: "pkcs1/des-ede3-cbc", opts: []string{"-des3"}, recips: []envRecip{r(ps.rsa)}, size: 83, cipher: "des-ede3-cbc", kt: "rsa-pkcs1v15"},
		{name: "pkcs1/empty", opts: []string{"-aes-128-cbc"}, recips: []envRecip{r(ps.rsa)}, size: 0, cipher: "aes-128-cbc", kt: "rsa-pkcs1v15"},
		{name: "oaep/sha1", opts: []string{"-aes-256-cbc"}, recips: []envRecip{r(ps.rsa, oaep)}, size: 333, cipher: "aes-256-cbc", kt: "rsa-oaep"},
		{name: "oaep/sha256", opts: []string{"-aes-128-cbc"}, recips: []envRecip{r(ps.rsa, oaep, "rsa_oaep_md:sha256")}, size: 333, cipher: "aes-128-cbc", kt: "rsa-oaep"},
		{name: "oaep/sha256-mgf1-sha1", opts: []string{"-aes-128-cbc"}, recips: []envRecip{r(ps.rsa, oaep, "rsa_oaep_md:sha256", "rsa_mgf1_md:sha1")}, size: 333, cipher: "aes-128-cbc", kt: "rsa-oaep"},
		{name: "oaep/sha512", opts: []string{"-des3"}, recips: []envRecip{r(ps.rsa, oaep, "rsa_oaep_md:sha512")}, size: 333, cipher: "des-ede3-cbc", kt: "rsa-oaep"},
		{name: "oaep/label", opts: []string{"-aes-256-cbc"}, recips: []envRecip{r(ps.rsa, oaep, "rsa_oaep_label:0123456789abcdef")}, size: 333, cipher: "aes-256-cbc", kt: "rsa-oaep"},
		{name: "oaep/sha384-label", opts: []string{"-aes-192-gcm"}, recips: []envRecip{r(ps.rsa, oaep, "rsa_oaep_md:sha384", "rsa_oaep_label:00ff")}, size: 333, cipher: "aes-192-gcm", kt: "rsa-oaep"},
		{name: "pkcs1/keyid", opts: []string{"-aes-128-cbc", "-keyid"}, recips: []envRecip{r(ps.rsa)}, size: 64, cipher: "aes-128-cbc", kt: "rsa-pkcs1v15", keyid: true},
		{name: "gcm/aes-128", opts: []string{"-aes-128-gcm"}, recips: []envRecip{r(ps.rsa)}, size: 1000, cipher: "aes-128-gcm", kt: "rsa-pkcs1v15"},
		{name: "gcm/aes-192", opts: []string{"-aes-192-gcm"}, recips: []envRecip{r(ps.rsa)}, size: 1, cipher: "aes-192-gcm", kt: "rsa-pkcs1v15"},
		{name: "gcm/aes-256", opts: []string{"-aes-256-gcm"}, recips: []envRecip{r(ps.rsa, oaep)}, size: 1000, cipher: "aes-256-gcm", kt: "rsa-oaep"},
		{name: "gcm/aes-256-ec-keyid", opts: []string{"-aes-256-gcm", "-keyid"}, recips: []envRecip{r(ps.p384)}, size: 1000, cipher: "aes-256-gcm", kt: "ecdh", keyid: true},
		{name: "stream/der-cbc", opts: []string{"-aes-256-cbc", "-stream"}, recips: []envRecip{r(ps.rsa)}, size: 300000, cipher: "aes-256-cbc", kt: "rsa-pkcs1v15", stream: true},
		{name: "stream/der-gcm", opts: []string{"-aes-128-gcm", "-stream"}, recips: []envRecip{r(ps.p256)}, size: 300000, cipher: "aes-128-gcm", kt: "ecdh", stream: true},
		{name: "stream/pem", opts: []string{"-aes-128-cbc", "-stream"}, form: "PEM", recips: []envRecip{r(ps.rsa)}, size: 70000, cipher: "aes-128-cbc", kt: "rsa-pkcs1v15"},
		{name: "stream/smime", opts: []string{"-des3", "-stream"}, form: "SMIME", recips: []envRecip{r(ps.rsa)}, size: 70000, cipher: "des-ede3-cbc", kt: "rsa-pkcs1v15"},
		{name: "smime/indef-ec", opts: []string{"-aes-192-cbc", "-indef"}, form: "SMIME", recips: []envRecip{r(ps.p521)}, size: 5000, cipher: "aes-192-cbc", kt: "ecdh"},
		{name: "multi/rsa-ec-hold-rsa", opts: []string{"-aes-128-cbc"}, recips: []envRecip{r(ps.rsa), r(ps.p256)}, keys: []*envParty{ps.rsa}, size: 200, cipher: "aes-128-cbc", kt: "rsa-pkcs1v15"},
		{name: "multi/rsa-ec-hold-ec", opts: []string{"-aes-128-cbc"}, recips: []envRecip{r(ps.rsa), r(ps.p256)}, keys: []*envParty{ps.p256}, size: 200, cipher: "aes-128-cbc", kt: "ecdh"},
		{name: "multi/ec-rsa-hold-other-and-rsa", opts: []string{"-aes-256-gcm"}, recips: []envRecip{r(ps.p384), r(ps.rsa, oaep)}, keys: []*envParty{ps.rsa2, ps.p256, ps.rsa}, by: ps.rsa, size: 200, cipher: "aes-256-gcm", kt: "rsa-oaep"},
		{name: "multi/three-keyid", opts: []string{"-aes-128-cbc", "-keyid"}, recips: []envRecip{r(ps.rsa2), r(ps.p521), r(ps.rsa)}, keys: []*envParty{ps.rsa}, size: 200, cipher: "aes-128-cbc", kt: "rsa-pkcs1v15", keyid: true},
	}
	// OpenSSL wraps a 3DES content key for an EC recipient with the
	// Triple-DES key wrap of RFC 3217.
	for _, curve := range []*envParty{ps.p256, ps.p521} {
		cases = append(cases, tc{
			name: "ecdh/des3-wrap/" + curve.name, opts: []string{"-des3"},
			recips: []envRecip{r(curve)}, size: 200, cipher: "des-ede3-cbc", kt: "ecdh",
		})
	}
	for _, md := range []string{"sha1", "sha256", "sha512"} {
		cases = append(cases, tc{
			name: "ecdh/cofactor/" + md, opts: []string{"-aes-256-cbc"},
			recips: []envRecip{r(ps.p384, "ecdh_cofactor_mode:1", "ecdh_kdf_md:"+md)}, size: 77, cipher: "aes-256-cbc", kt: "ecdh",
		})
	}
	for _, curve := range []*envParty{ps.p256, ps.p384, ps.p521} {
		for i, md := range []string{"sha1", "sha224", "sha256", "sha384", "sha512"} {
			ciphers := []string{"aes-128-cbc", "aes-192-cbc", "aes-256-cbc", "aes-128-gcm", "aes-256-gcm"}
			c := ciphers[i]
			cases = append(cases, tc{
				name: fmt.Sprintf("ecdh/%s/%s/%s", curve.name, md, c), opts: []string{"-" + c},
				recips: []envRecip{r(curve, "ecdh_kdf_md:"+md)}, size: 500 + i, cipher: c, kt: "ecdh",
			})
		}
	}

	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			form := c.form
			if form == "" {
				form = "DER"
			}
			in := envPlaintext(c.size, uint64(i))
			out := fx.encrypt(t, in, form, c.opts, c.recips...)
			if c.stream && (len(out) < 2 || out[1] != 0x80) {
				t.Fatalf("openssl -stream did not write an indefinite length (% x)", out[:min(len(out), 4)])
			}
			ci := envReadCMS(t, out, form)
			keys := []*Key{}
			held := c.keys
			if held == nil {
				held = []*envParty{c.recips[0].p}
			}
			for _, p := range held {
				keys = append(keys, p.key)
			}
			by := c.by
			if by == nil {
				by = held[0]
			}
			got, err := Decrypt(ci, keys)
			if err != nil {
				t.Fatalf("Decrypt() = %v", err)
			}
			if !bytes.Equal(got.Content, in) {
				t.Fatalf("Decrypt().Content = %d bytes, want the %d bytes given to openssl", len(got.Content), len(in))
			}
			own := envReadCMS(t, bytes.Clone(out), form)
			if got, err := DecryptInPlace(own, keys); err != nil || !bytes.Equal(got.Content, in) || got.Key != by.key {
				t.Fatalf("DecryptInPlace() = %v, want what Decrypt gave", err)
			}
			if got.Cipher != c.cipher || got.KeyTransport != c.kt || got.Key != by.key {
				t.Errorf("Decrypt() cipher, key transport, key = %q, %q, %v; want %q, %q, %s", got.Cipher, got.KeyTransport, got.Key.Cert.Subject, c.cipher, c.kt, by.name)
			}
			if !got.ContentType.Equal(OIDData) {
				t.Errorf("ContentType = %v, want id-data", got.ContentType)
			}
			wantCT := OIDEnvelopedData
			if strings.HasSuffix(c.cipher, "-gcm") {
				wantCT = OIDAuthEnvelopedData
			}
			if !ci.Type.Equal(wantCT) {
				t.Errorf("ContentInfo type = %v, want %v", ci.Type, wantCT)
			}
			// The recipients, in openssl's order, with the identifiers
			// openssl printed for the certificates.
			var want []string
			for _, rc := range c.recips {
				kind := "ktri"
				if _, ok := rc.p.key.Private.(*ecdsa.PrivateKey); ok {
					kind = "kari"
				}
				want = append(want, kind+" "+envIDOf(t, fx, rc.p, c.keyid))
			}
			rs, err := Recipients(ci)
			if err != nil {
				t.Fatalf("Recipients() = %v", err)
			}
			var have []string
			for _, r := range rs {
				have = append(have, r.String())
			}
			// OpenSSL writes the SET OF RecipientInfo in DER order, not
			// in the order of -recip.
			slices.Sort(have)
			slices.Sort(want)
			if !slices.Equal(have, want) {
				t.Errorf("Recipients() = %q, want %q", have, want)
			}
			if len(got.Recipients) != len(rs) {
				t.Errorf("Decrypted.Recipients has %d entries, want %d", len(got.Recipients), len(rs))
			}
		})
	}
}

// TestDecryptOtherRecipientKinds: KEK and password recipients are listed
// and do not stop an RSA or EC recipient from decrypting.
func TestDecryptOtherRecipientKinds(t *testing.T) {
	fx := envNewFixture(t)
	rsaP := fx.newParty(t, "rsa", "rsa:2048")
	ecP := fx.newParty(t, "ec", "ec", "ec_paramgen_curve:P-256")
	in := envPlaintext(777, 7)
	out := fx.encrypt(t, in, "DER", []string{"-aes-256-cbc", "-secretkey", "000102030405060708090a0b0c0d0e0f", "-secretkeyid", "0102", "-pwri_password", "secret"},
		envRecip{p: ecP}, envRecip{p: rsaP})
	ci := envReadCMS(t, out, "DER")
	rs, err := Recipients(ci)
	if err != nil {
		t.Fatalf("Recipients() = %v", err)
	}
	var kinds []string
	for _, r := range rs {
		kinds = append(kinds, r.Kind+":"+r.KeyTransport)
	}
	// openssl cms -cmsout -print names them in this order.
	printed := string(testenv.OpenSSL(t, fx.dir, "cms", "-cmsout", "-print", "-inform", "DER", "-in", envWriteFile(t, fx.dir, "kinds.der", out)))
	var want []string
	for _, m := range regexp.MustCompile(`d\.(ktri|kari|kekri|pwri|ori):`).FindAllStringSubmatch(printed, -1) {
		switch m[1] {
		case "ktri":
			want = append(want, "ktri:rsa-pkcs1v15")
		case "kari":
			want = append(want, "kari:ecdh")
		case "kekri":
			want = append(want, "kekri:2.16.840.1.101.3.4.1.5") // id-aes128-wrap
		case "pwri":
			want = append(want, "pwri:1.2.840.113549.1.9.16.3.9") // id-alg-PWRI-KEK
		}
	}
	if strings.Join(kinds, " ") != strings.Join(want, " ") {
		t.Fatalf("Recipients() kinds = %v, want %v", kinds, want)
	}
	for _, p := range []*envParty{rsaP, ecP} {
		got, err := Decrypt(ci, []*Key{p.key})
		if err != nil {
			t.Fatalf("Decrypt(%s) = %v", p.name, err)
		}
		if !bytes.Equal(got.Content, in) {
			t.Fatalf("Decrypt(%s) content differs from openssl's input", p.name)
		}
	}
}

func TestDecryptNoRecipient(t *testing.T) {
	fx := envNewFixture(t)
	ps := envMakeParties(t, fx)
	for _, keyid := range []bool{false, true} {
		opts := []string{"-aes-128-cbc"}
		if keyid {
			opts = append(opts, "-keyid")
		}
		out := fx.encrypt(t, envPlaintext(100, 1), "DER", opts, envRecip{p: ps.rsa}, envRecip{p: ps.p384})
		ci := envReadCMS(t, out, "DER")
		_, err := Decrypt(ci, []*Key{ps.rsa2.key, ps.p256.key, ps.p521.key})
		if !errors.Is(err, ErrNoRecipient) {
			t.Fatalf("Decrypt() = %v, want ErrNoRecipient", err)
		}
		want := fmt.Sprintf("cms: no recipient matches any key: 3 keys tried; recipients: ktri %s, kari %s",
			envIDOf(t, fx, ps.rsa, keyid), envIDOf(t, fx, ps.p384, keyid))
		if err.Error() != want {
			t.Errorf("Decrypt() error\n got %s\nwant %s", err, want)
		}
		if _, err := Decrypt(ci, nil); !errors.Is(err, ErrNoRecipient) || !strings.Contains(err.Error(), "0 keys tried") {
			t.Errorf("Decrypt(no keys) = %v, want ErrNoRecipient with 0 keys", err)
		}
	}
}

// envASN1Item is one line of openssl asn1parse output.
type envASN1Item struct {
	off, depth, hl, l int
	cons              bool
	what, value       string
}

func envASN1Parse(t testing.TB, dir string, der []byte) []envASN1Item {
	t.Helper()
	f := envWriteFile(t, dir, fmt.Sprintf("parse-%d.der", rand.Uint64()), der)
	out := testenv.OpenSSL(t, dir, "asn1parse", "-inform", "DER", "-in", f)
	re := regexp.MustCompile(`^\s*(\d+):d=(\d+)\s+hl=(\d+)\s+l=\s*(\d+)\s+(prim|cons):\s*([^:]*?)\s*(?::(.*))?$`)
	var items []envASN1Item
	for _, line := range strings.Split(string(out), "\n") {
		m := re.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		what := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(m[6]), "[HEX DUMP]"))
		it := envASN1Item{cons: m[5] == "cons", what: what, value: strings.TrimSpace(m[7])}
		it.off, _ = strconv.Atoi(m[1])
		it.depth, _ = strconv.Atoi(m[2])
		it.hl, _ = strconv.Atoi(m[3])
		it.l, _ = strconv.Atoi(m[4])
		items = append(items, it)
	}
	return items
}

// envContentItem finds the primitive encryptedContent [0] (the last one).
func envContentItem(t testing.TB, items []envASN1Item) envASN1Item {
	t.Helper()
	for i := len(items) - 1; i >= 0; i-- {
		if !items[i].cons && items[i].what == "cont [ 0 ]" {
			return items[i]
		}
	}
	t.Fatalf("no primitive [0] encryptedContent in asn1parse output")
	return envASN1Item{}
}

func TestDecryptTampered(t *testing.T) {
	fx := envNewFixture(t)
	rsaP := fx.newParty(t, "rsa", "rsa:2048")
	ecP := fx.newParty(t, "ec", "ec", "ec_paramgen_curve:P-256")
	in := envPlaintext(1000, 3)

	mutate := func(t *testing.T, der []byte, off int, x byte) *ContentInfo {
		d := bytes.Clone(der)
		d[off] ^= x
		ci, err := ParseContentInfo(d)
		if err != nil {
			t.Fatalf("ParseContentInfo(tampered) = %v", err)
		}
		return ci
	}
	t.Run("cbc-pad-byte", func(t *testing.T) {
		der := fx.encrypt(t, in, "DER", []string{"-aes-128-cbc"}, envRecip{p: rsaP})
		c := envContentItem(t, envASN1Parse(t, fx.dir, der))
		end := c.off + c.hl + c.l
		// Flipping the top bit of the second-to-last block's last byte
		// turns the pad length byte into a value > 16.
		_, err := Decrypt(mutate(t, der, end-17, 0x80), []*Key{rsaP.key})
		if !errors.Is(err, ErrDecrypt) || !strings.Contains(err.Error(), "content: bad CBC padding") {
			t.Fatalf("Decrypt() = %v, want ErrDecrypt with bad CBC padding", err)
		}
		if !strings.Contains(err.Error(), "ktri issuer=") {
			t.Errorf("Decrypt() = %v, want the recipient named", err)
		}
	})
	t.Run("gcm-content", func(t *testing.T) {
		der := fx.encrypt(t, in, "DER", []string{"-aes-256-gcm"}, envRecip{p: rsaP})
		c := envContentItem(t, envASN1Parse(t, fx.dir, der))
		_, err := Decrypt(mutate(t, der, c.off+c.hl+5, 1), []*Key{rsaP.key})
		if !errors.Is(err, ErrDecrypt) || !strings.Contains(err.Error(), "authentication failed") {
			t.Fatalf("Decrypt() = %v, want ErrDecrypt with failed authentication", err)
		}
		// The mac is the last OCTET STRING, at the end of the message.
		_, err = Decrypt(mutate(t, der, len(der)-1, 1), []*Key{rsaP.key})
		if !errors.Is(err, ErrDecrypt) {
			t.Fatalf("Decrypt(tampered mac) = %v, want ErrDecrypt", err)
		}
	})
	t.Run("gcm-rsa-key", func(t *testing.T) {
		der := fx.encrypt(t, in, "DER", []string{"-aes-256-gcm"}, envRecip{p: rsaP})
		var ek envASN1Item
		for _, it := range envASN1Parse(t, fx.dir, der) {
			if it.what == "OCTET STRING" && it.l == 256 {
				ek = it
			}
		}
		_, err := Decrypt(mutate(t, der, ek.off+ek.hl+100, 4), []*Key{rsaP.key})
		if !errors.Is(err, ErrDecrypt) {
			t.Fatalf("Decrypt() = %v, want ErrDecrypt", err)
		}
	})
	t.Run("ec-wrapped-key", func(t *testing.T) {
		der := fx.encrypt(t, in, "DER", []string{"-aes-128-cbc"}, envRecip{p: ecP})
		var ek envASN1Item
		for _, it := range envASN1Parse(t, fx.dir, der) {
			if it.what == "OCTET STRING" && it.l == 24 { // AES-wrapped 16-byte key
				ek = it
			}
		}
		if ek.l == 0 {
			t.Fatal("no 24-byte wrapped key found")
		}
		_, err := Decrypt(mutate(t, der, ek.off+ek.hl+3, 1), []*Key{ecP.key})
		if !errors.Is(err, ErrDecrypt) || !strings.Contains(err.Error(), "key unwrap: integrity check failed") {
			t.Fatalf("Decrypt() = %v, want ErrDecrypt from the key unwrap", err)
		}
	})
	t.Run("every-byte", func(t *testing.T) {
		// Flip each byte and cut at each length: errors, never a panic, and
		// never a "success" with different content.
		for _, opt := range []string{"-aes-128-gcm", "-des3"} {
			der := fx.encrypt(t, envPlaintext(40, 4), "DER", []string{opt}, envRecip{p: ecP}, envRecip{p: rsaP, keyopts: []string{"rsa_padding_mode:oaep"}})
			keys := []*Key{rsaP.key, ecP.key}
			for i := range der {
				d := bytes.Clone(der)
				d[i] ^= 0x41
				if ci, err := ParseContentInfo(d); err == nil {
					Recipients(ci)
					if got, err := Decrypt(ci, keys); err == nil && !bytes.Equal(got.Content, envPlaintext(40, 4)) && opt != "-des3" {
						t.Fatalf("byte %d flipped: Decrypt() succeeded with other content", i)
					}
				}
				if ci, err := ParseContentInfo(der[:i]); err == nil {
					if _, err := Decrypt(ci, keys); err == nil {
						t.Fatalf("cut at %d: Decrypt() succeeded", i)
					}
				}
			}
		}
	})
}

// TestDecryptCraftedPadding re-encrypts the content of an openssl message
// with openssl enc -nopad, using the content key openssl pkeyutl recovers,
// so that the final block carries hand-made padding.
func TestDecryptCraftedPadding(t *testing.T) {
	fx := envNewFixture(t)
	rsaP := fx.newParty(t, "rsa", "rsa:2048")
	const n = 48
	der := fx.encrypt(t, envPlaintext(n-8, 5), "DER", []string{"-aes-128-cbc"}, envRecip{p: rsaP})
	items := envASN1Parse(t, fx.dir, der)
	var ek, ivItem envASN1Item
	for i, it := range items {
		if it.what == "OCTET STRING" && it.l == 256 {
			ek = it
		}
		if it.what == "OBJECT" && it.value == "aes-128-cbc" && i+1 < len(items) {
			ivItem = items[i+1]
		}
	}
	c := envContentItem(t, items)
	if ek.l == 0 || ivItem.l != 16 || c.l != n {
		t.Fatalf("unexpected openssl structure: ek %+v iv %+v content %+v", ek, ivItem, c)
	}
	envWriteFile(t, fx.dir, "ek.bin", der[ek.off+ek.hl:ek.off+ek.hl+ek.l])
	cek := testenv.OpenSSL(t, fx.dir, "pkeyutl", "-decrypt", "-inkey", rsaP.keyPEM, "-in", "ek.bin")
	if len(cek) != 16 {
		t.Fatalf("openssl pkeyutl gave a %d-byte key", len(cek))
	}
	iv := hex.EncodeToString(der[ivItem.off+ivItem.hl : ivItem.off+ivItem.hl+16])

	body := bytes.Repeat([]byte{'A'}, n-16)
	block := func(tail ...byte) []byte {
		b := append(bytes.Repeat([]byte{'B'}, 16-len(tail)), tail...)
		return append(bytes.Clone(body), b...)
	}
	cases := []struct {
		name string
		pt   []byte
		want int // content length; -1: bad padding
	}{
		{"pad-0", block(0), -1},
		{"pad-17", block(bytes.Repeat([]byte{17}, 16)...), -1},
		{"pad-255", block(bytes.Repeat([]byte{255}, 16)...), -1},
		{"inconsistent", block(5, 5, 4, 5, 5), -1},
		{"inconsistent-first", block(4, 5, 5, 5, 5), -1},
		{"full-block-bad", append(bytes.Clone(body), append([]byte{15}, bytes.Repeat([]byte{16}, 15)...)...), -1},
		{"pad-1", block(1), n - 1},
		{"pad-5", block(5, 5, 5, 5, 5), n - 5},
		{"pad-16", append(bytes.Clone(body), bytes.Repeat([]byte{16}, 16)...), n - 16},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			envWriteFile(t, fx.dir, "pt.bin", tc.pt)
			ct := testenv.OpenSSL(t, fx.dir, "enc", "-aes-128-cbc", "-nopad", "-K", hex.EncodeToString(cek), "-iv", iv, "-in", "pt.bin")
			if len(ct) != n {
				t.Fatalf("openssl enc gave %d bytes", len(ct))
			}
			d := bytes.Clone(der)
			copy(d[c.off+c.hl:], ct)
			ci, err := ParseContentInfo(d)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decrypt(ci, []*Key{rsaP.key})
			if tc.want < 0 {
				if !errors.Is(err, ErrDecrypt) || !strings.Contains(err.Error(), "padding") {
					t.Fatalf("Decrypt() = %v, want ErrDecrypt for bad padding", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decrypt() = %v", err)
			}
			if !bytes.Equal(got.Content, tc.pt[:tc.want]) {
				t.Fatalf("Decrypt() = %q, want %q", got.Content, tc.pt[:tc.want])
			}
		})
	}
}

func TestPKCS7Unpad(t *testing.T) {
	blk := func(b ...byte) []byte { return append(bytes.Repeat([]byte{'x'}, 16-len(b)), b...) }
	cases := []struct {
		name string
		in   []byte
		bs   int
		want int
	}{
		{"pad0", blk(0), 16, -1},
		{"pad1", blk(1), 16, 15},
		{"pad2", blk(2, 2), 16, 14},
		{"pad2-bad", blk(1, 2), 16, -1},
		{"pad16", bytes.Repeat([]byte{16}, 16), 16, 0},
		{"pad16-bad", append([]byte{17}, bytes.Repeat([]byte{16}, 15)...), 16, -1},
		{"pad17", bytes.Repeat([]byte{17}, 16), 16, -1},
		{"pad17-2blocks", bytes.Repeat([]byte{17}, 32), 16, -1},
		{"pad200", blk(200), 16, -1},
		{"pad8-des", []byte{8, 8, 8, 8, 8, 8, 8, 8}, 8, 0},
		{"pad9-des", []byte{9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9}, 8, -1},
		{"empty", nil, 16, -1},
		{"short", []byte{1}, 16, -1},
		{"not-multiple", blk(1)[:15], 16, -1},
		{"two-blocks", append(blk(3, 3, 3), blk(3, 3, 3)...), 16, 29},
	}
	for _, c := range cases {
		n, ok := envPKCS7Unpad(c.in, c.bs)
		if (c.want < 0) == ok || (ok && n != c.want) {
			t.Errorf("pkcs7Unpad(%s) = %d, %v; want %d", c.name, n, ok, c.want)
		}
	}
}

// TestAESKeyUnwrap uses the test vectors of RFC 3394 section 4.
func TestAESKeyUnwrap(t *testing.T) {
	h := func(s string) []byte {
		b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	kek128 := h("000102030405060708090A0B0C0D0E0F")
	kek192 := h("000102030405060708090A0B0C0D0E0F1011121314151617")
	kek256 := h("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
	cases := []struct{ kek, key, wrapped []byte }{
		{kek128, h("00112233445566778899AABBCCDDEEFF"), h("1FA68B0A8112B447 AEF34BD8FB5A7B82 9D3E862371D2CFE5")},
		{kek192, h("00112233445566778899AABBCCDDEEFF0001020304050607"), h("031D33264E15D332 68F24EC260743EDC E1C6C7DDEE725A93 6BA814915C6762D2")},
		{kek256, h("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F"), h("28C9F404C4B810F4 CBCCB35CFB87F826 3F5786E2D80ED326 CBC7F0E71A99F43B FB988B9B7A02DD21")},
	}
	for i, c := range cases {
		got, err := envAESKeyUnwrap(c.kek, c.wrapped)
		if err != nil || !bytes.Equal(got, c.key) {
			t.Errorf("vector %d: envAESKeyUnwrap() = %x, %v; want %x", i, got, err, c.key)
		}
		bad := bytes.Clone(c.wrapped)
		bad[len(bad)-1] ^= 1
		if got, err := envAESKeyUnwrap(c.kek, bad); !errors.Is(err, ErrDecrypt) || got != nil {
			t.Errorf("vector %d tampered: envAESKeyUnwrap() = %x, %v; want nil, ErrDecrypt", i, got, err)
		}
		if _, err := envAESKeyUnwrap(c.kek, c.wrapped[:len(c.wrapped)-1]); !errors.Is(err, ErrDecrypt) {
			t.Errorf("vector %d short: envAESKeyUnwrap() err = %v, want ErrDecrypt", i, err)
		}
	}
	if _, err := envAESKeyUnwrap(kek128, h("1FA68B0A8112B447AEF34BD8FB5A7B82")); err == nil {
		t.Error("aesKeyUnwrap(16 bytes) succeeded; RFC 3394 needs at least 24")
	}
}

// TestDecryptFallThrough: a matching pair that fails does not stop the
// next one, and when all fail every failure is reported.
func TestDecryptFallThrough(t *testing.T) {
	fx := envNewFixture(t)
	rsaP := fx.newParty(t, "rsa", "rsa:2048")
	ecP := fx.newParty(t, "ec", "ec", "ec_paramgen_curve:P-384")
	in := envPlaintext(500, 9)
	der := fx.encrypt(t, in, "DER", []string{"-aes-256-gcm"}, envRecip{p: rsaP}, envRecip{p: ecP})
	items := envASN1Parse(t, fx.dir, der)
	var rsaEK, ecEK envASN1Item
	for _, it := range items {
		if it.what == "OCTET STRING" && it.l == 256 {
			rsaEK = it
		}
		if it.what == "OCTET STRING" && it.l == 40 { // AES-wrapped 32-byte key
			ecEK = it
		}
	}
	if rsaEK.l == 0 || ecEK.l == 0 {
		t.Fatalf("encrypted keys not found")
	}
	d := bytes.Clone(der)
	d[rsaEK.off+rsaEK.hl+7] ^= 1
	ci, err := ParseContentInfo(d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decrypt(ci, []*Key{rsaP.key, ecP.key})
	if err != nil {
		t.Fatalf("Decrypt() = %v, want success through the EC recipient", err)
	}
	if got.Key != ecP.key || got.KeyTransport != "ecdh" || !bytes.Equal(got.Content, in) {
		t.Fatalf("Decrypt() used %v (%s)", got.Key.Cert.Subject, got.KeyTransport)
	}
	d[ecEK.off+ecEK.hl+7] ^= 1
	ci, err = ParseContentInfo(d)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Decrypt(ci, []*Key{rsaP.key, ecP.key})
	if !errors.Is(err, ErrDecrypt) {
		t.Fatalf("Decrypt() = %v, want ErrDecrypt", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "ktri "+envIDOf(t, fx, rsaP, false)+": content: aes-256-gcm authentication failed") ||
		!strings.Contains(msg, "kari "+envIDOf(t, fx, ecP, false)+": key unwrap: integrity check failed") {
		t.Fatalf("Decrypt() = %v, want both failures named", err)
	}
}

// TestDecryptKeyRotation: the message is for the new certificate; the old
// key is tried (no match) and the new one works.
func TestDecryptKeyRotation(t *testing.T) {
	fx := envNewFixture(t)
	oldP := fx.newParty(t, "old", "rsa:2048")
	newP := fx.newParty(t, "new", "rsa:2048")
	in := envPlaintext(64, 10)
	ci := envReadCMS(t, fx.encrypt(t, in, "DER", []string{"-aes-128-cbc"}, envRecip{p: newP}), "DER")
	got, err := Decrypt(ci, []*Key{oldP.key, newP.key})
	if err != nil || got.Key != newP.key || !bytes.Equal(got.Content, in) {
		t.Fatalf("Decrypt() = %v, %v; want the new key to work", got, err)
	}
	// A key whose private half belongs to another certificate is refused,
	// not used to produce garbage.
	mixed := &Key{Cert: newP.key.Cert, Private: oldP.key.Private}
	if _, err := Decrypt(ci, []*Key{mixed}); !errors.Is(err, ErrDecrypt) || !strings.Contains(err.Error(), "does not belong") {
		t.Fatalf("Decrypt(mismatched key) = %v, want ErrDecrypt naming the mismatch", err)
	}
	got, err = Decrypt(ci, []*Key{mixed, newP.key})
	if err != nil || got.Key != newP.key {
		t.Fatalf("Decrypt(mismatched, good) = %v, %v", got, err)
	}
}

// envHSMKey is a crypto.Decrypter that is not an *rsa.PrivateKey.
type envHSMKey struct{ k *rsa.PrivateKey }

func (h envHSMKey) Public() crypto.PublicKey { return h.k.Public() }
func (h envHSMKey) Decrypt(r io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	return h.k.Decrypt(r, msg, opts)
}

func TestDecryptDecrypter(t *testing.T) {
	fx := envNewFixture(t)
	p := fx.newParty(t, "rsa", "rsa:2048")
	k := &Key{Cert: p.key.Cert, Private: envHSMKey{p.key.Private.(*rsa.PrivateKey)}}
	for _, ko := range [][]string{nil, {"rsa_padding_mode:oaep", "rsa_oaep_md:sha256"}} {
		in := envPlaintext(99, 11)
		ci := envReadCMS(t, fx.encrypt(t, in, "DER", []string{"-aes-192-cbc"}, envRecip{p, ko}), "DER")
		got, err := Decrypt(ci, []*Key{k})
		if err != nil || !bytes.Equal(got.Content, in) {
			t.Fatalf("Decrypt(Decrypter, %v) = %v", ko, err)
		}
	}
}

func TestDecryptUnsupported(t *testing.T) {
	fx := envNewFixture(t)
	rsaP := fx.newParty(t, "rsa", "rsa:2048")
	t.Run("rc2-cbc", func(t *testing.T) {
		cmd := exec.Command("openssl", "cms", "-encrypt", "-binary", "-rc2", "-provider", "legacy", "-provider", "default",
			"-outform", "DER", "-recip", rsaP.cert)
		cmd.Dir = fx.dir
		cmd.Stdin = strings.NewReader("hello")
		der, err := cmd.Output()
		if err != nil {
			t.Skipf("openssl cannot write RC2 here (legacy provider missing?): %v", err)
		}
		_, err = Decrypt(envReadCMS(t, der, "DER"), []*Key{rsaP.key})
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "rc2-cbc") {
			t.Fatalf("Decrypt() = %v, want ErrUnsupported naming rc2-cbc", err)
		}
	})
	t.Run("signed-data", func(t *testing.T) {
		f := envWriteFile(t, fx.dir, "m.txt", []byte("hello"))
		der := testenv.OpenSSL(t, fx.dir, "cms", "-sign", "-binary", "-in", f, "-signer", rsaP.cert, "-inkey", rsaP.keyPEM, "-outform", "DER")
		ci := envReadCMS(t, der, "DER")
		if _, err := Decrypt(ci, []*Key{rsaP.key}); !errors.Is(err, ErrUnsupported) {
			t.Fatalf("Decrypt(signed-data) = %v, want ErrUnsupported", err)
		}
		if _, err := Recipients(ci); !errors.Is(err, ErrUnsupported) {
			t.Fatalf("Recipients(signed-data) = %v, want ErrUnsupported", err)
		}
	})
}

// TestDecryptAllocs: a 5 MiB message costs about one message-sized buffer
// in ParseContentInfo (BER normalisation) and one plaintext-sized buffer in
// Decrypt, whether the content arrives in one piece or chunked.
func TestDecryptAllocs(t *testing.T) {
	fx := envNewFixture(t)
	rsaP := fx.newParty(t, "rsa", "rsa:2048")
	const size = 5 << 20
	in := envPlaintext(size, 12)
	for _, opts := range [][]string{{"-aes-256-cbc"}, {"-aes-256-cbc", "-stream"}, {"-aes-128-gcm", "-stream"}} {
		der := fx.encrypt(t, in, "DER", opts, envRecip{p: rsaP})
		var ms0, ms1, ms2 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms0)
		ci, err := ParseContentInfo(der)
		if err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&ms1)
		got, err := Decrypt(ci, []*Key{rsaP.key})
		runtime.ReadMemStats(&ms2)
		if err != nil || !bytes.Equal(got.Content, in) {
			t.Fatalf("Decrypt(%v) = %v", opts, err)
		}
		parse, dec := ms1.TotalAlloc-ms0.TotalAlloc, ms2.TotalAlloc-ms1.TotalAlloc
		t.Logf("%v: ParseContentInfo allocated %.1f MiB, Decrypt %.1f MiB for %d MiB", opts, float64(parse)/(1<<20), float64(dec)/(1<<20), size>>20)
		if parse > 2*size {
			t.Errorf("ParseContentInfo(%v) allocated %d bytes for a %d-byte message, want at most 2x", opts, parse, size)
		}
		if dec > 2*size {
			t.Errorf("Decrypt(%v) allocated %d bytes for a %d-byte message, want at most 2x", opts, dec, size)
		}
	}
}

// TestDecryptCorpusInterop decrypts the OpenSSL-made Thunderbird interop
// files (RSA-OAEP variants incl. a label, ECDH P-384) with the keys from
// their PKCS #12 files, and compares with openssl cms -decrypt.
func TestDecryptCorpusInterop(t *testing.T) {
	dir, err := filepath.Abs(testenv.CorpusPath())
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(filepath.Join(dir, "MANIFEST.md"))
	if err != nil {
		testenv.SkipNoCorpus(t, dir, err)
	}
	testenv.NeedOpenSSL(t)
	interop := filepath.Join(dir, "thunderbird-nss", "smime-interop")
	rows := regexp.MustCompile(`(?m)^\| smime-interop/([\w.-]+\.env) \|.*key: (Fran(?:-ec)?\.p12)`).FindAllSubmatch(manifest, -1)
	if len(rows) < 6 {
		t.Fatalf("MANIFEST.md lists %d smime-interop .env files, want 6", len(rows))
	}
	tmp := t.TempDir()
	keys := map[string]*Key{}
	for _, p12 := range []string{"Fran.p12", "Fran-ec.p12"} {
		// The key and its certificate as OpenSSL reads them, as PEM.
		testenv.OpenSSL(t, tmp, "pkcs12", "-in", filepath.Join(interop, p12), "-passin", "pass:nss", "-nodes", "-clcerts", "-out", p12+".pem")
		data, err := os.ReadFile(filepath.Join(tmp, p12+".pem"))
		if err != nil {
			t.Fatal(err)
		}
		k := &Key{}
		for b, rest := pem.Decode(data); b != nil; b, rest = pem.Decode(rest) {
			switch b.Type {
			case "PRIVATE KEY":
				if k.Private, err = x509.ParsePKCS8PrivateKey(b.Bytes); err != nil {
					t.Fatalf("%s: key: %v", p12, err)
				}
			case "CERTIFICATE":
				if k.Cert, err = x509.ParseCertificate(b.Bytes); err != nil {
					t.Fatalf("%s: certificate: %v", p12, err)
				}
			}
		}
		if k.Cert == nil || k.Private == nil {
			t.Fatalf("%s: openssl gave no key or certificate", p12)
		}
		keys[p12] = k
	}
	all := []*Key{keys["Fran.p12"], keys["Fran-ec.p12"]}
	for _, row := range rows {
		name, p12 := string(row[1]), string(row[2])
		t.Run(name, func(t *testing.T) {
			f := filepath.Join(interop, name)
			want := testenv.OpenSSL(t, tmp, "cms", "-decrypt", "-inform", "SMIME", "-binary", "-in", f, "-recip", p12+".pem", "-inkey", p12+".pem")
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			ci, err := ParseContentInfo(envSMIMEBody(t, raw))
			if err != nil {
				t.Fatalf("ParseContentInfo() = %v", err)
			}
			got, err := Decrypt(ci, all)
			if err != nil {
				t.Fatalf("Decrypt() = %v", err)
			}
			if !bytes.Equal(got.Content, want) {
				t.Fatalf("Decrypt() = %q, openssl cms -decrypt = %q", got.Content, want)
			}
			if got.Key != keys[p12] {
				t.Errorf("Decrypt() used %v, MANIFEST says %s", got.Key.Cert.Subject, p12)
			}
			if !bytes.Contains(want, []byte("This is a test message to Fran.")) {
				t.Errorf("openssl output %q lacks the text MANIFEST.md promises", want)
			}
		})
	}
}

// TestDecryptCorpusOpenSSL111 decrypts OpenSSL 1.1.1's ECDH output (two
// kari recipients, sha1kdf, Triple-DES key wrap) from OpenSSL's own tests.
func TestDecryptCorpusOpenSSL111(t *testing.T) {
	dir, err := filepath.Abs(testenv.CorpusPath())
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "openssl", "recipes", "80-test_cms_data", "ciphertext_from_1_1_1.cms")
	raw, err := os.ReadFile(f)
	if err != nil {
		testenv.SkipNoCorpus(t, dir, err)
	}
	testenv.NeedOpenSSL(t)
	keyFile := filepath.Join(dir, "openssl", "smime-certs", "smec3.pem")
	pemData, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	k := &Key{}
	for rest := pemData; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		switch blk.Type {
		case "CERTIFICATE":
			k.Cert, err = x509.ParseCertificate(blk.Bytes)
		case "PRIVATE KEY":
			k.Private, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		}
		if err != nil {
			t.Fatalf("%s: %v", keyFile, err)
		}
	}
	want := testenv.OpenSSL(t, t.TempDir(), "cms", "-decrypt", "-inform", "SMIME", "-binary", "-in", f, "-recip", keyFile, "-inkey", keyFile)
	ci, err := ParseContentInfo(envSMIMEBody(t, raw))
	if err != nil {
		t.Fatalf("ParseContentInfo() = %v", err)
	}
	got, err := Decrypt(ci, []*Key{k})
	if err != nil {
		t.Fatalf("Decrypt() = %v", err)
	}
	if !bytes.Equal(got.Content, want) || got.Cipher != "des-ede3-cbc" || got.KeyTransport != "ecdh" {
		t.Fatalf("Decrypt() = %q (%s, %s), openssl cms -decrypt = %q", got.Content, got.Cipher, got.KeyTransport, want)
	}
}

// TestCipherName checks the names against OpenSSL's own for the same OIDs.
func TestCipherName(t *testing.T) {
	testenv.NeedOpenSSL(t)
	dir := t.TempDir()
	for _, c := range envContentCiphers {
		oid := c.oid.String()
		der, err := asn1.Marshal(c.oid)
		if err != nil {
			t.Fatal(err)
		}
		out := string(testenv.OpenSSL(t, dir, "asn1parse", "-inform", "DER", "-in", envWriteFile(t, dir, "oid.der", der)))
		i := strings.LastIndex(out, ":")
		name := strings.ToLower(strings.TrimSpace(out[i+1:]))
		if name == oid {
			continue // OpenSSL has no name either
		}
		want := map[string]string{"des-ede3-cbc": "des-ede3-cbc", "rc2-cbc": "rc2-cbc", "des-cbc": "des-cbc",
			"id-aes128-ccm": "aes-128-ccm", "id-aes192-ccm": "aes-192-ccm", "id-aes256-ccm": "aes-256-ccm",
			"id-aes128-gcm": "aes-128-gcm", "id-aes192-gcm": "aes-192-gcm", "id-aes256-gcm": "aes-256-gcm",
			"id-alg-aead-chacha20-poly1305": "chacha20-poly1305"}[name]
		if want == "" {
			want = name
		}
		if got := CipherName(c.oid); got != want {
			t.Errorf("CipherName(%s) = %q, OpenSSL calls it %q", oid, got, name)
		}
	}
	if got := CipherName(asn1.ObjectIdentifier{1, 2, 3}); got != "1.2.3" {
		t.Errorf("CipherName(1.2.3) = %q", got)
	}
}

// TestDecryptManyRecipients: the recipient listing and the number of tries
// are bounded, so a message naming thousands of recipients stays cheap.
func TestDecryptManyRecipients(t *testing.T) {
	testenv.NeedOpenSSL(t)
	fx := &envFixture{dir: t.TempDir()}
	// Self-signed, one openssl run each: this test needs many.
	quick := func(name string) *envParty {
		p := &envParty{name: name, cert: name + ".pem", keyPEM: name + ".key"}
		testenv.OpenSSL(t, fx.dir, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
			"-keyout", p.keyPEM, "-out", p.cert, "-subj", "/CN="+name, "-days", "2")
		p.key = envLoadPEMKey(t, filepath.Join(fx.dir, p.cert), filepath.Join(fx.dir, p.keyPEM))
		return p
	}
	var rs []envRecip
	for i := range 20 {
		rs = append(rs, envRecip{p: quick(fmt.Sprintf("ec%d", i))})
	}
	other := quick("other")
	der := fx.encrypt(t, []byte("hi"), "DER", []string{"-aes-128-gcm"}, rs...)
	_, err := Decrypt(envReadCMS(t, der, "DER"), []*Key{other.key})
	if !errors.Is(err, ErrNoRecipient) || !strings.HasSuffix(err.Error(), ", and 4 more") || strings.Count(err.Error(), "kari ") != 16 {
		t.Fatalf("Decrypt() = %v, want ErrNoRecipient listing 16 recipients and 4 more", err)
	}

	// The same certificate 20 times, and content that fails its tag.
	same := make([]envRecip, 20)
	for i := range same {
		same[i] = rs[0]
	}
	der = fx.encrypt(t, []byte("hi"), "DER", []string{"-aes-128-gcm"}, same...)
	c := envContentItem(t, envASN1Parse(t, fx.dir, der))
	der[c.off+c.hl] ^= 1
	_, err = Decrypt(envReadCMS(t, der, "DER"), []*Key{rs[0].p.key})
	if !errors.Is(err, ErrDecrypt) || strings.Count(err.Error(), "authentication failed") != 16 ||
		!strings.HasSuffix(err.Error(), "; 4 more matching recipients not tried") {
		t.Fatalf("Decrypt() = %v, want 16 failed tries and 4 not tried", err)
	}
}

// TestX963KDF compares the KDF and the ECC-CMS-SharedInfo encoding (with a
// ukm, which openssl cms cannot be asked to send) with OpenSSL.
func TestX963KDF(t *testing.T) {
	testenv.NeedOpenSSL(t)
	dir := t.TempDir()
	wrap := []byte{0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x05} // aes128-wrap
	ukm := bytes.Repeat([]byte{0x5a}, 64)
	info, err := envSharedInfo(wrap, ukm, true, 16)
	if err != nil {
		t.Fatal(err)
	}
	type item struct {
		depth, l    int
		cons        bool
		what, value string
	}
	var got []item
	for _, it := range envASN1Parse(t, dir, info) {
		got = append(got, item{it.depth, it.l, it.cons, it.what, it.value})
	}
	want := []item{
		{0, 89, true, "SEQUENCE", ""},
		{1, 11, true, "SEQUENCE", ""},
		{2, 9, false, "OBJECT", "id-aes128-wrap"},
		{1, 66, true, "cont [ 0 ]", ""},
		{2, 64, false, "OCTET STRING", strings.Repeat("Z", 64)},
		{1, 6, true, "cont [ 2 ]", ""},
		{2, 4, false, "OCTET STRING", "00000080"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("ECC-CMS-SharedInfo per openssl asn1parse:\n got %+v\nwant %+v", got, want)
	}
	z := []byte("shared secret Z from ECDH, 32 b.")
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA224, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		for _, n := range []int{16, 24, 32, 70} {
			out := testenv.OpenSSL(t, dir, "kdf", "-keylen", strconv.Itoa(n), "-kdfopt", "digest:"+strings.ReplaceAll(h.String(), "-", ""),
				"-kdfopt", "hexsecret:"+hex.EncodeToString(z), "-kdfopt", "hexinfo:"+hex.EncodeToString(info), "X963KDF")
			want, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(string(out)), ":", ""))
			if err != nil {
				t.Fatal(err)
			}
			if got := envX963KDF(h, z, info, n); !bytes.Equal(got, want) {
				t.Errorf("envX963KDF(%v, %d) = %x, openssl kdf = %x", h, n, got, want)
			}
		}
	}
}

// TestOpenInPlaceKeepsCiphertext: decryption in place that fails (a wrong
// content key, found out at the padding) leaves the ciphertext as it was,
// so that the next recipient's key can still decrypt it.
func TestOpenInPlaceKeepsCiphertext(t *testing.T) {
	key, wrong := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	iv := bytes.Repeat([]byte{3}, 16)
	in := envPlaintext(100, 11)
	padded := append(bytes.Clone(in), bytes.Repeat([]byte{12}, 12)...)
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	ct := make([]byte, len(padded))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, padded)
	orig := bytes.Clone(ct)
	cc := &envContentCipher{name: "aes-256-cbc", kind: envKindAESCBC, keyLen: 32, iv: iv}
	src := envOctets{body: ct, n: len(ct)}
	buf, err := cc.buffer(src, nil, true)
	if err != nil || !src.in(buf) {
		t.Fatalf("buffer(in place) = %v, not the ciphertext itself", err)
	}
	if _, err := cc.open(wrong, src, buf, nil, nil); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("open(wrong key) = %v, want ErrDecrypt", err)
	}
	if !bytes.Equal(ct, orig) {
		t.Fatal("open(wrong key) changed the ciphertext")
	}
	pt, err := cc.open(key, src, buf, nil, nil)
	if err != nil || !bytes.Equal(pt, in) {
		t.Fatalf("open(key) = %q, %v; want the plaintext", pt, err)
	}
}
