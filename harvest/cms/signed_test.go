package cms

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
)

// The expected results in these tests come from OpenSSL: every message is
// made by `openssl cms -sign`, OpenSSL's own verdict is checked first, and
// attribute values are compared with what `openssl asn1parse` prints.

const signedTestMessage = "Content-Type: text/plain; charset=us-ascii\r\n\r\nhello from the signed-data test\r\n"

// osl runs the openssl command in a directory (testenv.OpenSSL), without
// the system's openssl.cnf.
type osl struct {
	t   *testing.T
	dir string
}

// newOSL sets OPENSSL_CONF=/dev/null for the rest of t.
func newOSL(t *testing.T, dir string) *osl {
	t.Helper()
	testenv.NeedOpenSSL(t)
	t.Setenv("OPENSSL_CONF", os.DevNull)
	return &osl{t: t, dir: dir}
}

// run runs openssl, returns its standard output and fails the test if it
// fails.
func (o *osl) run(args ...string) []byte {
	o.t.Helper()
	return testenv.OpenSSL(o.t, o.dir, args...)
}

// try runs openssl and returns its output (stdout, then stderr) and error.
func (o *osl) try(args ...string) ([]byte, error) {
	o.t.Helper()
	return testenv.OpenSSLTry(o.t, o.dir, nil, args...)
}

func (o *osl) path(name string) string { return filepath.Join(o.dir, name) }

func (o *osl) write(name string, data []byte) string {
	o.t.Helper()
	p := o.path(name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		o.t.Fatal(err)
	}
	return p
}

func (o *osl) read(name string) []byte {
	o.t.Helper()
	b, err := os.ReadFile(o.path(name))
	if err != nil {
		o.t.Fatal(err)
	}
	return b
}

// cert loads a PEM certificate written by openssl.
func (o *osl) cert(name string) *x509.Certificate {
	o.t.Helper()
	blk, _ := pem.Decode(o.read(name))
	if blk == nil {
		o.t.Fatalf("%s: no PEM block", name)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		o.t.Fatalf("%s: %v", name, err)
	}
	return c
}

const certConfig = `[req]
distinguished_name = dn
prompt = no
x509_extensions = ext
[dn]
CN = test
[ext]
subjectKeyIdentifier = hash
basicConstraints = critical,CA:FALSE
keyUsage = digitalSignature, nonRepudiation, keyEncipherment
extendedKeyUsage = emailProtection
`

// makeSigner creates name.key and name.crt (self-signed) with the given
// -newkey algorithm and -pkeyopt options.
func (o *osl) makeSigner(name, newkey string, pkeyopts ...string) {
	o.t.Helper()
	cnf := o.path("req.cnf")
	if _, err := os.Stat(cnf); err != nil {
		o.write("req.cnf", []byte(certConfig))
	}
	args := []string{"req", "-config", cnf, "-x509", "-new", "-newkey", newkey, "-nodes",
		"-keyout", name + ".key", "-out", name + ".crt", "-subj", "/CN=" + name + "/emailAddress=" + name + "@example.org", "-days", "3"}
	for _, p := range pkeyopts {
		args = append(args, "-pkeyopt", p)
	}
	o.run(args...)
}

// asn1Line is one line of `openssl asn1parse -i`.
type asn1Line struct {
	off, depth, hl, l int
	cons              bool
	typ, val          string
}

var asn1LineRE = regexp.MustCompile(`^\s*(\d+):d=(\d+)\s+hl=(\d+)\s+l=\s*(\d+|inf)\s+(prim|cons):\s*(.*)$`)

func (o *osl) asn1parse(file string) []asn1Line {
	o.t.Helper()
	out := o.run("asn1parse", "-inform", "DER", "-i", "-in", file)
	var lines []asn1Line
	for _, s := range strings.Split(string(out), "\n") {
		m := asn1LineRE.FindStringSubmatch(s)
		if m == nil {
			continue
		}
		var ln asn1Line
		ln.off, _ = strconv.Atoi(m[1])
		ln.depth, _ = strconv.Atoi(m[2])
		ln.hl, _ = strconv.Atoi(m[3])
		ln.l, _ = strconv.Atoi(m[4])
		ln.cons = m[5] == "cons"
		rest := m[6]
		if i := strings.Index(rest, ":"); i >= 0 {
			ln.typ, ln.val = rest[:i], strings.TrimSpace(rest[i+1:])
		} else {
			ln.typ = rest
		}
		ln.typ = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(ln.typ), "[HEX DUMP]"))
		lines = append(lines, ln)
	}
	return lines
}

// opensslSigner is what asn1parse shows about one SignerInfo.
type opensslSigner struct {
	serial       string // hex, as printed; "" for a SKI signer
	sigOff       int    // offset of the first byte of the signature value
	signingTime  string // the UTCTime as printed, "" when absent
	capabilities []string
}

// opensslSigners splits asn1parse output of a ContentInfo into SignerInfos
// (children of the last depth-3 SET, the signerInfos).
func opensslSigners(lines []asn1Line) []opensslSigner {
	start := -1
	for i, ln := range lines {
		if ln.depth == 3 && ln.typ == "SET" {
			start = i
		}
	}
	var out []opensslSigner
	if start < 0 {
		return nil
	}
	capDepth := -1
	for _, ln := range lines[start+1:] {
		if ln.depth <= 3 {
			break
		}
		if ln.depth == 4 {
			out = append(out, opensslSigner{sigOff: -1})
			continue
		}
		s := &out[len(out)-1]
		switch {
		case ln.depth == 6 && ln.typ == "INTEGER" && s.serial == "":
			s.serial = ln.val
		case ln.depth == 5 && ln.typ == "OCTET STRING" && !ln.cons:
			s.sigOff = ln.off + ln.hl
		case ln.typ == "UTCTIME" || ln.typ == "GENERALIZEDTIME":
			s.signingTime = ln.val
		case ln.typ == "OBJECT" && ln.val == "S/MIME Capabilities":
			capDepth = ln.depth
			continue
		}
		if capDepth >= 0 {
			if ln.depth < capDepth {
				capDepth = -1
			} else if ln.typ == "OBJECT" && ln.depth == capDepth+3 {
				s.capabilities = append(s.capabilities, ln.val)
			}
		}
	}
	return out
}

// sameSerial compares a serial number with asn1parse's hex rendering.
func sameSerial(n *big.Int, hex string) bool {
	v, ok := new(big.Int).SetString(hex, 16)
	return ok && n != nil && n.Cmp(v) == 0
}

func parseSignedFile(t *testing.T, der []byte) *SignedData {
	t.Helper()
	ci, err := ParseContentInfo(der)
	if err != nil {
		t.Fatalf("ParseContentInfo: %v", err)
	}
	sd, err := ParseSignedData(ci)
	if err != nil {
		t.Fatalf("ParseSignedData: %v", err)
	}
	return sd
}

type signCase struct {
	name    string
	signers []string // key names; each gets -signer X.crt -inkey X.key
	md      string   // -md value, "" for OpenSSL's default (sha256)
	flags   []string
	keyopts []string // -keyopt values after every -inkey
	digest  string   // expected DigestName
	alg     string   // expected Algorithm
}

func (c signCase) has(flag string) bool {
	for _, f := range c.flags {
		if f == flag {
			return true
		}
	}
	return false
}

func TestSignedDataOpenSSL(t *testing.T) {
	o := newOSL(t, t.TempDir())
	o.makeSigner("rsa", "rsa:2048")
	o.makeSigner("rsb", "rsa:2048")
	o.makeSigner("pss", "rsa-pss", "rsa_keygen_bits:2048")
	o.makeSigner("p256", "ec", "ec_paramgen_curve:P-256")
	o.makeSigner("p384", "ec", "ec_paramgen_curve:P-384")
	o.makeSigner("p521", "ec", "ec_paramgen_curve:P-521")
	msg := []byte(signedTestMessage)
	o.write("msg.txt", msg)
	bad := append([]byte{}, msg...)
	bad[len(bad)-4] ^= 0x20 // "test" -> "tesT"
	o.write("bad.txt", bad)

	certs := map[string]*x509.Certificate{}
	for _, n := range []string{"rsa", "rsb", "pss", "p256", "p384", "p521"} {
		certs[n] = o.cert(n + ".crt")
	}

	cases := []signCase{
		{name: "rsa-sha1", signers: []string{"rsa"}, md: "sha1", digest: "sha-1", alg: "rsa-pkcs1v15"},
		{name: "rsa-sha224", signers: []string{"rsa"}, md: "sha224", digest: "sha-224", alg: "rsa-pkcs1v15"},
		{name: "rsa-sha256", signers: []string{"rsa"}, md: "sha256", digest: "sha-256", alg: "rsa-pkcs1v15"},
		{name: "rsa-sha384", signers: []string{"rsa"}, md: "sha384", digest: "sha-384", alg: "rsa-pkcs1v15"},
		{name: "rsa-sha512", signers: []string{"rsa"}, md: "sha512", digest: "sha-512", alg: "rsa-pkcs1v15"},
		{name: "rsa-default-md", signers: []string{"rsa"}, digest: "sha-256", alg: "rsa-pkcs1v15"},
		{name: "rsa-sha1-opaque", signers: []string{"rsa"}, md: "sha1", flags: []string{"-nodetach"}, digest: "sha-1", alg: "rsa-pkcs1v15"},
		{name: "rsa-sha512-opaque", signers: []string{"rsa"}, md: "sha512", flags: []string{"-nodetach"}, digest: "sha-512", alg: "rsa-pkcs1v15"},
		{name: "pss-default", signers: []string{"rsa"}, md: "sha256", keyopts: []string{"rsa_padding_mode:pss"}, digest: "sha-256", alg: "rsa-pss"},
		{name: "pss-salt7-sha384", signers: []string{"rsa"}, md: "sha384", keyopts: []string{"rsa_padding_mode:pss", "rsa_pss_saltlen:7"}, digest: "sha-384", alg: "rsa-pss"},
		{name: "pss-salt0-sha1", signers: []string{"rsa"}, md: "sha1", keyopts: []string{"rsa_padding_mode:pss", "rsa_pss_saltlen:0"}, digest: "sha-1", alg: "rsa-pss"},
		{name: "pss-saltmax-sha512-opaque", signers: []string{"rsa"}, md: "sha512", flags: []string{"-nodetach"}, keyopts: []string{"rsa_padding_mode:pss", "rsa_pss_saltlen:max"}, digest: "sha-512", alg: "rsa-pss"},
		{name: "pss-key", signers: []string{"pss"}, md: "sha256", keyopts: []string{"rsa_padding_mode:pss"}, digest: "sha-256", alg: "rsa-pss"},
		{name: "ecdsa-p256", signers: []string{"p256"}, md: "sha256", digest: "sha-256", alg: "ecdsa"},
		{name: "ecdsa-p256-sha1", signers: []string{"p256"}, md: "sha1", digest: "sha-1", alg: "ecdsa"},
		{name: "ecdsa-p384", signers: []string{"p384"}, md: "sha384", digest: "sha-384", alg: "ecdsa"},
		{name: "ecdsa-p521", signers: []string{"p521"}, md: "sha512", digest: "sha-512", alg: "ecdsa"},
		{name: "ecdsa-p384-opaque", signers: []string{"p384"}, md: "sha224", flags: []string{"-nodetach"}, digest: "sha-224", alg: "ecdsa"},
		{name: "noattr-rsa", signers: []string{"rsa"}, md: "sha256", flags: []string{"-noattr"}, digest: "sha-256", alg: "rsa-pkcs1v15"},
		{name: "noattr-rsa-opaque", signers: []string{"rsa"}, md: "sha1", flags: []string{"-noattr", "-nodetach"}, digest: "sha-1", alg: "rsa-pkcs1v15"},
		{name: "noattr-ecdsa", signers: []string{"p384"}, md: "sha384", flags: []string{"-noattr"}, digest: "sha-384", alg: "ecdsa"},
		{name: "noattr-pss", signers: []string{"rsa"}, md: "sha256", flags: []string{"-noattr"}, keyopts: []string{"rsa_padding_mode:pss", "rsa_pss_saltlen:32"}, digest: "sha-256", alg: "rsa-pss"},
		{name: "keyid-rsa", signers: []string{"rsa"}, md: "sha256", flags: []string{"-keyid"}, digest: "sha-256", alg: "rsa-pkcs1v15"},
		{name: "keyid-ecdsa-opaque", signers: []string{"p256"}, md: "sha256", flags: []string{"-keyid", "-nodetach"}, digest: "sha-256", alg: "ecdsa"},
		{name: "nocerts", signers: []string{"rsa"}, md: "sha256", flags: []string{"-nocerts"}, digest: "sha-256", alg: "rsa-pkcs1v15"},
		{name: "nocerts-keyid-ecdsa", signers: []string{"p521"}, md: "sha384", flags: []string{"-nocerts", "-keyid"}, digest: "sha-384", alg: "ecdsa"},
		{name: "two-rsa", signers: []string{"rsa", "rsb"}, md: "sha256", digest: "sha-256", alg: "rsa-pkcs1v15"},
		{name: "two-ecdsa-opaque", signers: []string{"p256", "p384"}, md: "sha384", flags: []string{"-nodetach"}, digest: "sha-384", alg: "ecdsa"},
		{name: "two-pss", signers: []string{"rsb", "rsa"}, md: "sha512", keyopts: []string{"rsa_padding_mode:pss", "rsa_pss_saltlen:20"}, digest: "sha-512", alg: "rsa-pss"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := &osl{t: t, dir: o.dir}
			file := c.name + ".p7s"
			args := []string{"cms", "-sign", "-binary", "-outform", "DER", "-in", "msg.txt", "-out", file}
			if c.md != "" {
				args = append(args, "-md", c.md)
			}
			args = append(args, c.flags...)
			for _, s := range c.signers {
				args = append(args, "-signer", s+".crt", "-inkey", s+".key")
				for _, k := range c.keyopts {
					args = append(args, "-keyopt", k)
				}
			}
			o.run(args...)
			der := o.read(file)
			detached := !c.has("-nodetach")

			// OpenSSL's verdict on the good message, then on bad content.
			vargs := []string{"cms", "-verify", "-binary", "-inform", "DER", "-noverify", "-out", c.name + ".out"}
			if c.has("-nocerts") {
				for _, s := range c.signers {
					vargs = append(vargs, "-certfile", s+".crt")
				}
			}
			if detached {
				o.run(append(vargs, "-in", file, "-content", "msg.txt")...)
			} else {
				o.run(append(vargs, "-in", file)...)
			}
			if got := o.read(c.name + ".out"); !bytes.Equal(got, msg) {
				t.Fatalf("openssl output differs from the message: %q", got)
			}
			if detached {
				if _, err := o.try(append(vargs, "-in", file, "-content", "bad.txt")...); err == nil {
					t.Fatal("openssl verified modified detached content")
				}
			}

			ossl := opensslSigners(o.asn1parse(file))
			if len(ossl) != len(c.signers) {
				t.Fatalf("asn1parse shows %d signers, want %d", len(ossl), len(c.signers))
			}

			sd := parseSignedFile(t, der)
			if !sd.EContentType.Equal(OIDData) {
				t.Errorf("EContentType = %v", sd.EContentType)
			}
			if detached && sd.EContent != nil {
				t.Errorf("detached message has EContent %q", sd.EContent)
			}
			if !detached && !bytes.Equal(sd.EContent, msg) {
				t.Errorf("EContent = %q, want %q", sd.EContent, msg)
			}
			if c.has("-nocerts") {
				if len(sd.Certificates) != 0 {
					t.Errorf("-nocerts message has %d certificates", len(sd.Certificates))
				}
			} else if len(sd.Certificates) != len(c.signers) {
				t.Errorf("%d certificates, want %d", len(sd.Certificates), len(c.signers))
			}
			if sd.BadCertificates != 0 {
				t.Errorf("BadCertificates = %d", sd.BadCertificates)
			}
			if len(sd.Signers) != len(c.signers) {
				t.Fatalf("%d signers, want %d", len(sd.Signers), len(c.signers))
			}

			var extra []*x509.Certificate
			if c.has("-nocerts") {
				// The store holds unrelated certificates too.
				extra = []*x509.Certificate{certs["p384"], certs["rsb"], certs["pss"]}
				for _, s := range c.signers {
					extra = append(extra, certs[s])
				}
			}
			content := msg
			if !detached {
				content = sd.EContent
			}
			found := map[string]bool{}
			for i, si := range sd.Signers {
				cert := sd.FindCertificate(si, extra)
				if cert == nil {
					t.Fatalf("signer %d (%v): FindCertificate found nothing", i, si.ID)
				}
				if c.has("-nocerts") && sd.FindCertificate(si, nil) != nil {
					t.Errorf("signer %d: FindCertificate without extra found a certificate", i)
				}
				name := ""
				for _, s := range c.signers {
					if bytes.Equal(certs[s].Raw, cert.Raw) {
						name = s
					}
				}
				if name == "" || found[name] {
					t.Fatalf("signer %d: FindCertificate returned %v, not one of %v (or twice)", i, cert.Subject, c.signers)
				}
				found[name] = true
				if c.has("-keyid") {
					if si.ID.SKI == nil || !bytes.Equal(si.ID.SKI, certs[name].SubjectKeyId) {
						t.Errorf("signer %d: SKI %x, want %x", i, si.ID.SKI, certs[name].SubjectKeyId)
					}
				} else if !sameSerial(certs[name].SerialNumber, ossl[i].serial) || !sameSerial(si.ID.Serial, ossl[i].serial) {
					t.Errorf("signer %d: serial %x, openssl shows %s, cert %x", i, si.ID.Serial, ossl[i].serial, certs[name].SerialNumber)
				}
				if si.DigestName != c.digest || si.Algorithm != c.alg {
					t.Errorf("signer %d: digest %q alg %q, want %q %q", i, si.DigestName, si.Algorithm, c.digest, c.alg)
				}
				checkOpenSSLAttrs(t, si, ossl[i], c.has("-noattr"))

				if err := sd.Verify(si, cert, content); err != nil {
					t.Errorf("signer %d: Verify: %v", i, err)
				}
				// nil content is empty content, never "use EContent".
				if err := sd.Verify(si, cert, nil); err == nil {
					t.Errorf("signer %d: Verify(nil content) succeeded", i)
				}
				// Modified content: digest mismatch with signed attributes,
				// else the signature itself fails.
				want := ErrDigestMismatch
				if c.has("-noattr") {
					want = ErrBadSignature
				}
				if err := sd.Verify(si, cert, bad); !errors.Is(err, want) {
					t.Errorf("signer %d: Verify(modified content) = %v, want %v", i, err, want)
				}
				// The wrong certificate.
				other := certs["rsb"]
				if name == "rsb" {
					other = certs["p256"]
				}
				if err := sd.Verify(si, other, content); !errors.Is(err, ErrBadSignature) {
					t.Errorf("signer %d: Verify(wrong cert) = %v, want ErrBadSignature", i, err)
				}
			}

			if !detached {
				// Modify the embedded content itself.
				i := bytes.Index(der, []byte("hello from"))
				if i < 0 {
					t.Fatal("content not found in DER")
				}
				mod := append([]byte{}, der...)
				mod[i] = 'j'
				o.write("mod-"+file, mod)
				if _, err := o.try(append(vargs, "-in", "mod-"+file)...); err == nil {
					t.Fatal("openssl verified modified embedded content")
				}
				sd2 := parseSignedFile(t, mod)
				want := ErrDigestMismatch
				if c.has("-noattr") {
					want = ErrBadSignature
				}
				for j, si := range sd2.Signers {
					if err := sd2.Verify(si, sd2.FindCertificate(si, extra), sd2.EContent); !errors.Is(err, want) {
						t.Errorf("modified eContent, signer %d: %v, want %v", j, err, want)
					}
				}
			}

			// Corrupt the first signer's signature: that signer fails with
			// ErrBadSignature, any other still verifies.
			mod := append([]byte{}, der...)
			mod[ossl[0].sigOff+5] ^= 0x01
			o.write("sig-"+file, mod)
			cargs := append(vargs, "-in", "sig-"+file)
			if detached {
				cargs = append(cargs, "-content", "msg.txt")
			}
			if _, err := o.try(cargs...); err == nil {
				t.Fatal("openssl verified a corrupted signature")
			}
			sd3 := parseSignedFile(t, mod)
			for j, si := range sd3.Signers {
				err := sd3.Verify(si, sd3.FindCertificate(si, extra), content)
				corrupted := ossl[0].serial != "" && sameSerial(si.ID.Serial, ossl[0].serial) ||
					ossl[0].serial == "" && j == 0
				if corrupted && !errors.Is(err, ErrBadSignature) {
					t.Errorf("corrupted signer %d: %v, want ErrBadSignature", j, err)
				}
				if !corrupted && err != nil {
					t.Errorf("intact signer %d: %v", j, err)
				}
			}
		})
	}

	t.Run("md5", func(t *testing.T) {
		o := &osl{t: t, dir: o.dir}
		o.run("cms", "-sign", "-binary", "-outform", "DER", "-in", "msg.txt", "-out", "md5.p7s", "-md", "md5",
			"-signer", "rsa.crt", "-inkey", "rsa.key")
		o.run("cms", "-verify", "-binary", "-inform", "DER", "-noverify", "-in", "md5.p7s", "-content", "msg.txt", "-out", "/dev/null")
		sd := parseSignedFile(t, o.read("md5.p7s"))
		si := sd.Signers[0]
		if si.DigestName != "md5" || si.Digest != 0 {
			t.Errorf("digest %q %v", si.DigestName, si.Digest)
		}
		err := sd.Verify(si, sd.FindCertificate(si, nil), msg)
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "md5") {
			t.Errorf("Verify = %v, want ErrUnsupported naming md5", err)
		}
	})

	t.Run("econtent-type", func(t *testing.T) {
		o := &osl{t: t, dir: o.dir}
		o.run("cms", "-sign", "-binary", "-outform", "DER", "-in", "msg.txt", "-out", "ect.p7s", "-nodetach",
			"-econtent_type", "1.2.3.4.5", "-signer", "p256.crt", "-inkey", "p256.key")
		o.run("cms", "-verify", "-binary", "-inform", "DER", "-noverify", "-in", "ect.p7s", "-out", "/dev/null")
		sd := parseSignedFile(t, o.read("ect.p7s"))
		if !sd.EContentType.Equal(asn1.ObjectIdentifier{1, 2, 3, 4, 5}) || !bytes.Equal(sd.EContent, msg) {
			t.Fatalf("EContentType %v EContent %q", sd.EContentType, sd.EContent)
		}
		si := sd.Signers[0]
		if err := sd.Verify(si, sd.FindCertificate(si, nil), sd.EContent); err != nil {
			t.Errorf("Verify: %v", err)
		}
	})

	t.Run("extra-certs", func(t *testing.T) {
		o := &osl{t: t, dir: o.dir}
		o.run("cms", "-sign", "-binary", "-outform", "DER", "-in", "msg.txt", "-out", "xc.p7s",
			"-certfile", "p384.crt", "-signer", "rsa.crt", "-inkey", "rsa.key")
		sd := parseSignedFile(t, o.read("xc.p7s"))
		if len(sd.Certificates) != 2 {
			t.Fatalf("%d certificates, want 2", len(sd.Certificates))
		}
		if c := sd.FindCertificate(sd.Signers[0], nil); c == nil || !bytes.Equal(c.Raw, certs["rsa"].Raw) {
			t.Fatalf("FindCertificate picked %v", c)
		}
	})

	t.Run("ber-stream", func(t *testing.T) {
		// -stream writes indefinite lengths and a chunked eContent.
		o := &osl{t: t, dir: o.dir}
		big := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n"), 3000)
		o.write("big.txt", big)
		o.run("cms", "-sign", "-binary", "-outform", "DER", "-stream", "-nodetach", "-in", "big.txt", "-out", "stream.p7s",
			"-signer", "rsa.crt", "-inkey", "rsa.key", "-signer", "p256.crt", "-inkey", "p256.key")
		o.run("cms", "-verify", "-binary", "-inform", "DER", "-noverify", "-in", "stream.p7s", "-out", "/dev/null")
		der := o.read("stream.p7s")
		if der[1] != 0x80 {
			t.Fatalf("expected an indefinite-length encoding, got % x", der[:4])
		}
		sd := parseSignedFile(t, der)
		if !bytes.Equal(sd.EContent, big) {
			t.Fatalf("EContent: %d bytes, want %d", len(sd.EContent), len(big))
		}
		for i, si := range sd.Signers {
			if err := sd.Verify(si, sd.FindCertificate(si, nil), sd.EContent); err != nil {
				t.Errorf("signer %d: %v", i, err)
			}
		}
	})
}

// checkOpenSSLAttrs compares the attributes we read with asn1parse's view.
func checkOpenSSLAttrs(t *testing.T, si *SignerInfo, ossl opensslSigner, noattr bool) {
	t.Helper()
	if si.HasSignedAttrs == noattr {
		t.Errorf("HasSignedAttrs = %v with -noattr %v", si.HasSignedAttrs, noattr)
	}
	if noattr {
		if !si.SigningTime.IsZero() || si.SMIMECapabilities != nil || si.EncryptionKeyPreference != nil {
			t.Errorf("attributes without signedAttrs: %v %v %v", si.SigningTime, si.SMIMECapabilities, si.EncryptionKeyPreference)
		}
		return
	}
	want, err := time.Parse("060102150405Z", ossl.signingTime)
	if err != nil {
		t.Fatalf("openssl signingTime %q: %v", ossl.signingTime, err)
	}
	if !si.SigningTime.Equal(want) {
		t.Errorf("SigningTime = %v, openssl shows %v", si.SigningTime, want)
	}
	if d := time.Since(si.SigningTime); d < -time.Minute || d > 10*time.Minute {
		t.Errorf("SigningTime %v is not now", si.SigningTime)
	}
	if len(ossl.capabilities) == 0 {
		t.Fatal("asn1parse shows no S/MIME capabilities")
	}
	if strings.Join(si.SMIMECapabilities, ",") != strings.Join(ossl.capabilities, ",") {
		t.Errorf("SMIMECapabilities = %v, openssl shows %v", si.SMIMECapabilities, ossl.capabilities)
	}
	if si.EncryptionKeyPreference != nil {
		t.Errorf("unexpected EncryptionKeyPreference %v", si.EncryptionKeyPreference)
	}
}

func corpusDir(t *testing.T) string {
	t.Helper()
	dir := testenv.CorpusPath()
	if _, err := os.Stat(filepath.Join(dir, "MANIFEST.md")); err != nil {
		testenv.SkipNoCorpus(t, dir, err)
	}
	return dir
}

// TestSignedDataCorpusBadAttributes: OpenSSL's own test messages with broken
// signed attributes, which OpenSSL rejects ("attribute error").
func TestSignedDataCorpusBadAttributes(t *testing.T) {
	dir := filepath.Join(corpusDir(t), "openssl", "recipes", "80-test_cms_data")
	for _, name := range []string{"bad_signtime_attr", "ct_multiple_attr", "no_ct_attr", "no_md_attr"} {
		t.Run(name, func(t *testing.T) {
			der, err := os.ReadFile(filepath.Join(dir, name+".cms"))
			if err != nil {
				t.Fatal(err)
			}
			sd := parseSignedFile(t, der)
			if len(sd.Signers) != 1 || sd.EContent == nil {
				t.Fatalf("%d signers, EContent %q", len(sd.Signers), sd.EContent)
			}
			si := sd.Signers[0]
			cert := sd.FindCertificate(si, nil)
			if cert == nil {
				t.Fatal("signer certificate not found")
			}
			if err := sd.Verify(si, cert, sd.EContent); !errors.Is(err, ErrBadAttributes) {
				t.Errorf("Verify = %v, want ErrBadAttributes", err)
			}
		})
	}
	t.Run("pkcs7-md4", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(dir, "pkcs7-md4.pem"))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatal("no PEM block")
		}
		sd := parseSignedFile(t, blk.Bytes)
		si := sd.Signers[0]
		err = sd.Verify(si, sd.FindCertificate(si, nil), sd.EContent)
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "md4") {
			t.Errorf("Verify = %v, want ErrUnsupported naming md4", err)
		}
	})
}

// TestSignedDataCorpusThunderbird: an NSS-made opaque signature with
// SMIMEEncryptionKeyPreference and Microsoft's attribute (both name Alice's
// certificate, serial 0x1E, per asn1parse), signing time 2026-01-26
// 14:40:10Z. OpenSSL verifies it (MANIFEST: "sig: OK").
func TestSignedDataCorpusThunderbird(t *testing.T) {
	file := filepath.Join(corpusDir(t), "thunderbird-nss", "smime", "alice.sig.SHA256.opaque.eml")
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	raw = bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
	i := bytes.Index(raw, []byte("\n\n"))
	if i < 0 {
		t.Fatal("no header/body separator")
	}
	der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(raw[i+2:])), ""))
	if err != nil {
		t.Fatal(err)
	}
	sd := parseSignedFile(t, der)
	if len(sd.Signers) != 1 {
		t.Fatalf("%d signers", len(sd.Signers))
	}
	si := sd.Signers[0]
	cert := sd.FindCertificate(si, nil)
	if cert == nil {
		t.Fatal("signer certificate not found")
	}
	if err := sd.Verify(si, cert, sd.EContent); err != nil {
		t.Errorf("Verify: %v", err)
	}
	if !si.SigningTime.Equal(time.Date(2026, 1, 26, 14, 40, 10, 0, time.UTC)) {
		t.Errorf("SigningTime %v", si.SigningTime)
	}
	if si.EncryptionKeyPreference == nil || !si.EncryptionKeyPreference.Matches(cert) ||
		si.EncryptionKeyPreference.Serial.Cmp(big.NewInt(0x1e)) != 0 {
		t.Errorf("EncryptionKeyPreference %v, want Alice's certificate (serial 0x1e)", si.EncryptionKeyPreference)
	}
	if si.SMIMECapabilities != nil { // this NSS message has none (asn1parse)
		t.Errorf("SMIMECapabilities %v", si.SMIMECapabilities)
	}
	if err := sd.Verify(si, cert, []byte("something else")); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("Verify(other content) = %v", err)
	}
}

// TestSignedDataTruncated feeds every prefix and many single-byte changes
// of an OpenSSL message through the parser and verifier: no panics, and
// every failure is one of the package's errors.
func TestSignedDataTruncated(t *testing.T) {
	o := newOSL(t, t.TempDir())
	o.makeSigner("rsa", "rsa:1024")
	o.write("msg.txt", []byte(signedTestMessage))
	o.run("cms", "-sign", "-binary", "-outform", "DER", "-nodetach", "-in", "msg.txt", "-out", "m.p7s",
		"-signer", "rsa.crt", "-inkey", "rsa.key", "-keyopt", "rsa_padding_mode:pss")
	der := o.read("m.p7s")
	try := func(b []byte) {
		ci, err := ParseContentInfo(b)
		if err != nil {
			return
		}
		sd, err := ParseSignedData(ci)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		for _, si := range sd.Signers {
			_ = si.ID.String()
			cert := sd.FindCertificate(si, nil)
			if cert == nil {
				continue
			}
			err := sd.Verify(si, cert, sd.EContent)
			if err != nil && !isSignedError(err) {
				t.Fatalf("unexpected error class: %v", err)
			}
		}
	}
	for n := 0; n < len(der); n++ {
		try(der[:n])
	}
	for i := range der {
		mod := append([]byte{}, der...)
		mod[i] ^= 0xff
		try(mod)
	}
}

func isSignedError(err error) bool {
	for _, e := range []error{ErrMalformed, ErrUnsupported, ErrBadAttributes, ErrDigestMismatch, ErrBadSignature} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func TestParseSignedDataWrongType(t *testing.T) {
	if _, err := ParseSignedData(&ContentInfo{Type: OIDEnvelopedData}); !errors.Is(err, ErrMalformed) {
		t.Errorf("enveloped-data: %v", err)
	}
	if _, err := ParseSignedData(nil); err == nil {
		t.Error("nil ContentInfo accepted")
	}
}

// derTLV encodes one value.
func derTLV(class, tag int, compound bool, content ...[]byte) []byte {
	b, err := asn1.Marshal(asn1.RawValue{Class: class, Tag: tag, IsCompound: compound, Bytes: bytes.Join(content, nil)})
	if err != nil {
		panic(err)
	}
	return b
}

func derSeq(c ...[]byte) []byte { return derTLV(asn1.ClassUniversal, asn1.TagSequence, true, c...) }
func derSet(c ...[]byte) []byte { return derTLV(asn1.ClassUniversal, asn1.TagSet, true, c...) }

func derMarshal(v any, params string) []byte {
	b, err := asn1.MarshalWithParams(v, params)
	if err != nil {
		panic(err)
	}
	return b
}

func derAttr(oid asn1.ObjectIdentifier, values ...[]byte) []byte {
	return derSeq(derMarshal(oid, ""), derSet(values...))
}

// sortedAttrs orders attributes as DER's SET OF requires.
func sortedAttrs(attrs [][]byte) [][]byte {
	out := append([][]byte{}, attrs...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if bytes.Compare(out[j], out[i]) < 0 {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// buildSignedData makes a detached SHA-256/RSA SignedData with the given
// signed (in the given order) and unsigned attributes.
func buildSignedData(t *testing.T, cert *x509.Certificate, key *rsa.PrivateKey, signed, unsigned [][]byte) []byte {
	t.Helper()
	sha256OID := derSeq(derMarshal(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}, ""))
	attrSet := derSet(signed...)
	sum := sha256.Sum256(attrSet)
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	si := [][]byte{
		derMarshal(1, ""),
		derSeq(cert.RawIssuer, derMarshal(cert.SerialNumber, "")),
		sha256OID,
		derTLV(asn1.ClassContextSpecific, 0, true, signed...),
		derSeq(derMarshal(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}, ""), asn1.NullBytes),
		derMarshal(sig, ""),
	}
	if unsigned != nil {
		si = append(si, derTLV(asn1.ClassContextSpecific, 1, true, unsigned...))
	}
	sd := derSeq(
		derMarshal(1, ""),
		derSet(sha256OID),
		derSeq(derMarshal(OIDData, "")),
		derTLV(asn1.ClassContextSpecific, 0, true, cert.Raw),
		derSet(derSeq(si...)),
	)
	return derSeq(derMarshal(OIDSignedData, ""), derTLV(asn1.ClassContextSpecific, 0, true, sd))
}

// TestSignedDataBuiltAttributes checks attribute handling on SignedData
// built here (RSA signatures over exactly the attributes given), with
// OpenSSL's verdict as the reference where OpenSSL has one.
func TestSignedDataBuiltAttributes(t *testing.T) {
	o := newOSL(t, t.TempDir())
	o.makeSigner("rsa", "rsa:2048")
	cert := o.cert("rsa.crt")
	blk, _ := pem.Decode(o.read("rsa.key"))
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key := k.(*rsa.PrivateKey)
	msg := []byte(signedTestMessage)
	o.write("msg.txt", msg)
	sum := sha256.Sum256(msg)

	ct := derAttr(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}, derMarshal(OIDData, ""))
	md := derAttr(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}, derMarshal(sum[:], ""))
	when := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	stOID := asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 5}
	st := derAttr(stOID, derMarshal(when, "utc"))
	ekpOID := asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 11}
	msOID := asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 16, 4}
	ias := derSeq(cert.RawIssuer, derMarshal(cert.SerialNumber, ""))
	iasID := &Identifier{IssuerRaw: cert.RawIssuer, Serial: cert.SerialNumber}
	skiID := &Identifier{SKI: cert.SubjectKeyId}
	capsOID := asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 15}
	caps := derAttr(capsOID, derSeq(
		derSeq(derMarshal(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 46}, "")),
		derSeq(derMarshal(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 6}, "")),
		derSeq(derMarshal(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 7}, ""), derSeq()),
		derSeq(derMarshal(asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 2}, ""), derMarshal(128, "")),
		derSeq(derMarshal(asn1.ObjectIdentifier{1, 2, 3, 4}, "")),
	))
	wantCaps := []string{"aes-256-gcm", "aes-128-gcm", "rsaes-oaep", "rc2-cbc", "1.2.3.4"}

	type tc struct {
		name             string
		signed, unsigned [][]byte
		sorted           bool // put the attributes in DER order
		opensslOK        *bool
		want             error
		wantEKP          *Identifier
		wantCaps         []string
	}
	yes, no := new(bool), new(bool)
	*yes = true
	cases := []tc{
		{name: "plain", signed: [][]byte{ct, md, st}, sorted: true, opensslOK: yes},
		{name: "ekp-issuer-serial", signed: [][]byte{ct, md, st, derAttr(ekpOID, derTLV(asn1.ClassContextSpecific, 0, true, cert.RawIssuer, derMarshal(cert.SerialNumber, "")))},
			sorted: true, opensslOK: yes, wantEKP: iasID},
		{name: "ekp-recipient-key-id", signed: [][]byte{ct, md, st, derAttr(ekpOID, derTLV(asn1.ClassContextSpecific, 1, true, derMarshal(cert.SubjectKeyId, ""), derMarshal(when, "generalized")))},
			sorted: true, opensslOK: yes, wantEKP: skiID},
		{name: "ekp-subject-alt-key-id", signed: [][]byte{ct, md, st, derAttr(ekpOID, derTLV(asn1.ClassContextSpecific, 2, false, cert.SubjectKeyId))},
			sorted: true, opensslOK: yes, wantEKP: skiID},
		{name: "ms-ekp", signed: [][]byte{ct, md, st, derAttr(msOID, ias)}, sorted: true, opensslOK: yes, wantEKP: iasID},
		{name: "ms-and-rfc-ekp", signed: [][]byte{ct, md, st, derAttr(msOID, ias), derAttr(ekpOID, derTLV(asn1.ClassContextSpecific, 2, false, cert.SubjectKeyId))},
			sorted: true, opensslOK: yes, wantEKP: skiID},
		{name: "broken-ekp-still-verifies", signed: [][]byte{ct, md, st, derAttr(ekpOID, derTLV(asn1.ClassContextSpecific, 0, true, derMarshal(5, ""))), derAttr(msOID, derMarshal("x", ""))},
			sorted: true, opensslOK: yes},
		{name: "capabilities", signed: [][]byte{ct, md, caps}, sorted: true, opensslOK: yes, wantCaps: wantCaps},
		{name: "broken-capabilities-still-verify", signed: [][]byte{ct, md, derAttr(capsOID, derMarshal(7, ""))}, sorted: true, opensslOK: yes},
		{name: "unsorted-signed-attrs", signed: [][]byte{st, md, ct}, opensslOK: yes},
		{name: "no-content-type", signed: [][]byte{md, st}, sorted: true, opensslOK: no, want: ErrBadAttributes},
		{name: "two-content-types", signed: [][]byte{ct, ct, md}, opensslOK: no, want: ErrBadAttributes},
		{name: "content-type-two-values", signed: [][]byte{derAttr(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}, derMarshal(OIDData, ""), derMarshal(OIDData, "")), md},
			sorted: true, opensslOK: no, want: ErrBadAttributes},
		// OpenSSL 3.0 does not compare the contentType attribute with
		// eContentType (it verifies this message); RFC 5652 11.1 requires
		// them to match.
		{name: "content-type-mismatch", signed: [][]byte{derAttr(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}, derMarshal(OIDSignedData, "")), md},
			sorted: true, want: ErrBadAttributes},
		{name: "no-message-digest", signed: [][]byte{ct, st}, sorted: true, opensslOK: no, want: ErrBadAttributes},
		{name: "two-message-digests", signed: [][]byte{ct, md, md}, opensslOK: no, want: ErrBadAttributes},
		{name: "wrong-message-digest", signed: [][]byte{ct, derAttr(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}, derMarshal(make([]byte, 32), ""))},
			sorted: true, opensslOK: no, want: ErrDigestMismatch},
		{name: "two-signing-times", signed: [][]byte{ct, md, st, derAttr(stOID, derMarshal(when.Add(time.Hour), "utc"))}, sorted: true, opensslOK: no, want: ErrBadAttributes},
		{name: "signing-time-two-values", signed: [][]byte{ct, md, derAttr(stOID, derMarshal(when, "utc"), derMarshal(when, "utc"))}, sorted: true, opensslOK: no, want: ErrBadAttributes},
		// OpenSSL does not look inside the signingTime value; RFC 5652
		// 11.3 requires a valid UTCTime or GeneralizedTime.
		{name: "signing-time-garbage", signed: [][]byte{ct, md, derAttr(stOID, derTLV(asn1.ClassUniversal, asn1.TagUTCTime, false, []byte("not a time")))}, sorted: true, want: ErrBadAttributes},
		{name: "signing-time-integer", signed: [][]byte{ct, md, derAttr(stOID, derMarshal(5, ""))}, sorted: true, want: ErrBadAttributes},
		{name: "signing-time-generalized", signed: [][]byte{ct, md, derAttr(stOID, derMarshal(when, "generalized"))}, sorted: true, opensslOK: yes},
		{name: "unsigned-signing-time", signed: [][]byte{ct, md}, unsigned: [][]byte{st}, sorted: true, opensslOK: no, want: ErrBadAttributes},
		{name: "countersignature-signed", signed: [][]byte{ct, md, derAttr(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 6}, derSeq())}, sorted: true, opensslOK: no, want: ErrBadAttributes},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			signed := c.signed
			if c.sorted {
				signed = sortedAttrs(signed)
			}
			der := buildSignedData(t, cert, key, signed, c.unsigned)
			if c.opensslOK != nil {
				file := o.write(c.name+".p7s", der)
				_, err := o.try("cms", "-verify", "-binary", "-inform", "DER", "-noverify", "-in", file, "-content", "msg.txt", "-out", "/dev/null")
				if (err == nil) != *c.opensslOK {
					t.Fatalf("openssl verification success = %v, want %v: test case is wrong", err == nil, *c.opensslOK)
				}
				if (c.want == nil) != *c.opensslOK {
					t.Fatalf("test case expects %v although OpenSSL success = %v", c.want, *c.opensslOK)
				}
			}
			sd := parseSignedFile(t, der)
			si := sd.Signers[0]
			err := sd.Verify(si, sd.FindCertificate(si, nil), msg)
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("Verify = %v, want %v", err, c.want)
			}
			got := si.EncryptionKeyPreference
			switch {
			case c.wantEKP == nil && got != nil:
				t.Errorf("EncryptionKeyPreference = %v, want none", got)
			case c.wantEKP != nil && (got == nil || got.String() != c.wantEKP.String() || !got.Matches(cert)):
				t.Errorf("EncryptionKeyPreference = %v, want %v", got, c.wantEKP)
			}
			if strings.Join(si.SMIMECapabilities, ",") != strings.Join(c.wantCaps, ",") {
				t.Errorf("SMIMECapabilities = %q, want %q", si.SMIMECapabilities, c.wantCaps)
			}
			if c.want == nil && bytes.Contains(der, derMarshal(when, "utc")) && !si.SigningTime.Equal(when) {
				t.Errorf("SigningTime = %v, want %v", si.SigningTime, when)
			}
		})
	}
}

// TestSignedDataCorpusRFC4134: the RFC 4134 examples. OpenSSL verifies the
// RSA ones (MANIFEST "sig: OK"); DSA is not supported here; 4.11 is a
// certs-only SignedData.
func TestSignedDataCorpusRFC4134(t *testing.T) {
	dir := filepath.Join(corpusDir(t), "rfc4134")
	ex, err := os.ReadFile(filepath.Join(dir, "ExContent.bin"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		want error
	}{{"4.1", ErrUnsupported}, {"4.2", nil}, {"4.3", ErrUnsupported}, {"4.4", ErrUnsupported}, {"4.5", nil},
		{"4.6", ErrUnsupported}, {"4.7", ErrUnsupported}, {"4.10", ErrUnsupported}} {
		t.Run(c.name, func(t *testing.T) {
			der, err := os.ReadFile(filepath.Join(dir, c.name+".bin"))
			if err != nil {
				t.Fatal(err)
			}
			sd := parseSignedFile(t, der)
			if sd.EContent != nil && !bytes.Equal(sd.EContent, ex) {
				t.Errorf("EContent %q differs from ExContent.bin", sd.EContent)
			}
			for i, si := range sd.Signers {
				cert := sd.FindCertificate(si, nil)
				if err := sd.Verify(si, cert, ex); c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
					t.Errorf("signer %d: Verify = %v, want %v", i, err, c.want)
				}
				if c.want == nil {
					if err := sd.Verify(si, cert, ex[1:]); !errors.Is(err, ErrBadSignature) {
						t.Errorf("signer %d: Verify(other content) = %v, want ErrBadSignature", i, err)
					}
				}
			}
		})
	}
	der, err := os.ReadFile(filepath.Join(dir, "4.11.bin"))
	if err != nil {
		t.Fatal(err)
	}
	sd := parseSignedFile(t, der)
	if len(sd.Signers) != 0 || len(sd.Certificates) == 0 {
		t.Errorf("certs-only 4.11: %d signers, %d certificates", len(sd.Signers), len(sd.Certificates))
	}
}

// TestSignedDigestCache: one pass over the content computes every digest
// the signers need; another buffer is hashed afresh; concurrent use is safe.
func TestSignedDigestCache(t *testing.T) {
	sd := &SignedData{cache: new(sdDigestCache), Signers: []*SignerInfo{
		{Digest: crypto.SHA256}, {Digest: crypto.SHA1}, {Digest: crypto.SHA256}, {Digest: 0}}}
	a := bytes.Repeat([]byte("a"), 1<<20)
	b := bytes.Repeat([]byte("b"), 1<<20)
	want256a, want1a := sha256.Sum256(a), sha1.Sum(a)
	if got := sd.contentDigest(crypto.SHA1, a); !bytes.Equal(got, want1a[:]) {
		t.Fatalf("sha1 %x", got)
	}
	if n := len(sd.cache.sums); n != 2 {
		t.Fatalf("%d digests after the first pass, want 2 (sha1 and sha256)", n)
	}
	if got := sd.cache.sums[crypto.SHA256]; !bytes.Equal(got, want256a[:]) {
		t.Fatalf("sha256 %x", got)
	}
	want256b := sha256.Sum256(b)
	done := make(chan []byte)
	for i := 0; i < 4; i++ {
		go func() { done <- sd.contentDigest(crypto.SHA256, b) }()
	}
	for i := 0; i < 4; i++ {
		if got := <-done; !bytes.Equal(got, want256b[:]) {
			t.Fatalf("sha256(b) %x", got)
		}
	}
	if got := sd.contentDigest(crypto.SHA256, a[:len(a)-1]); bytes.Equal(got, want256a[:]) {
		t.Fatal("a shorter view of the same buffer got the cached digest")
	}
}
