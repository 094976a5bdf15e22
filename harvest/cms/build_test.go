package cms

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
)

// The builders' output is judged by OpenSSL (openssl cms -verify and
// -decrypt), and by this package's own parser as a second reader.

type buildKey struct {
	certPath, keyPath string
	cert              *x509.Certificate
	key               crypto.Signer
}

func issueBuildKey(t *testing.T, ca *testenv.CA, name, keyType string) buildKey {
	t.Helper()
	c, k := ca.IssueKey(t, name, name+"@org.example", keyType, time.Now().Add(-time.Hour))
	return buildKey{certPath: c, keyPath: k, cert: testenv.ReadCert(t, c), key: testenv.ReadKey(t, k)}
}

func TestSignDetachedOpenSSL(t *testing.T) {
	o := newOSL(t, t.TempDir())
	ca := testenv.NewCA(t, "Build CA", "")
	content := []byte("Content-Type: text/plain\r\n\r\nsigned by smimed\r\n")
	if err := os.WriteFile(o.path("content"), content, 0o600); err != nil {
		t.Fatal(err)
	}
	when := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, c := range []struct {
		name, key string
		pss       bool
		algo      string // what openssl prints as the signature algorithm
	}{
		{"rsa", "rsa:2048", false, "sha256WithRSAEncryption"},
		{"pss", "rsa:2048", true, "rsassaPss"},
		{"p256", "P-256", false, "ecdsa-with-SHA256"},
		{"p384", "P-384", false, "ecdsa-with-SHA256"},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := issueBuildKey(t, ca, "signer-"+c.name, c.key)
			d := sha256.Sum256(content)
			der, err := SignDetached(d[:], SignParams{Cert: k.cert, Key: k.key, PSS: c.pss, SigningTime: when})
			if err != nil {
				t.Fatalf("SignDetached() = %v", err)
			}
			sig := o.path(c.name + ".p7s")
			if err := os.WriteFile(sig, der, 0o600); err != nil {
				t.Fatal(err)
			}
			o.run("cms", "-verify", "-inform", "DER", "-in", sig, "-content", o.path("content"), "-binary", "-CAfile", ca.Cert, "-out", os.DevNull)
			// A changed content must fail with OpenSSL too.
			bad := o.path("bad")
			os.WriteFile(bad, append(bytes.Clone(content), 'x'), 0o600)
			if out, err := o.try("cms", "-verify", "-inform", "DER", "-in", sig, "-content", bad, "-binary", "-CAfile", ca.Cert, "-out", os.DevNull); err == nil {
				t.Fatalf("openssl verified changed content: %s", out)
			}
			printed := string(o.run("cms", "-cmsout", "-print", "-inform", "DER", "-in", sig))
			for _, want := range []string{"signingTime", "Mar  4 05:06:07 2026 GMT", "S/MIME Capabilities (1.2.840.113549.1.9.15)", "aes-256-gcm", "aes-256-cbc", "rsaesOaep",
				"id-smime-aa-encrypKeyPref", "1.3.6.1.4.1.311.16.4", c.algo} {
				if !strings.Contains(printed, want) {
					t.Errorf("openssl cms -cmsout -print lacks %q:\n%s", want, printed)
				}
			}
			// Our own reader agrees.
			ci, err := ParseContentInfo(der)
			if err != nil {
				t.Fatal(err)
			}
			sd, err := ParseSignedData(ci)
			if err != nil {
				t.Fatal(err)
			}
			si := sd.Signers[0]
			if err := sd.Verify(si, sd.FindCertificate(si, nil), content); err != nil {
				t.Fatalf("Verify() = %v", err)
			}
			if !si.SigningTime.Equal(when) {
				t.Errorf("SigningTime = %v, want %v", si.SigningTime, when)
			}
		})
	}
}

func TestSealOpenSSL(t *testing.T) {
	o := newOSL(t, t.TempDir())
	ca := testenv.NewCA(t, "Seal CA", "")
	keys := map[string]buildKey{}
	for _, n := range []string{"rsa:2048", "P-256", "P-384", "P-521"} {
		keys[n] = issueBuildKey(t, ca, "r-"+strings.ReplaceAll(n, ":", ""), n)
	}
	content := bytes.Repeat([]byte("Content-Type: text/plain\r\n\r\nsecret line\r\n"), 100)
	for _, cipherName := range []string{CipherAES256CBC, CipherAES256GCM} {
		for _, c := range []struct {
			name   string
			recips []string // key types; "oaep" is the RSA key with OAEP
		}{
			{"pkcs1", []string{"rsa:2048"}},
			{"oaep", []string{"oaep"}},
			{"p256", []string{"P-256"}},
			{"p384", []string{"P-384"}},
			{"p521", []string{"P-521"}},
			{"all", []string{"P-256", "oaep", "P-384"}},
		} {
			t.Run(cipherName+"/"+c.name, func(t *testing.T) {
				var rs []SealRecipient
				for _, r := range c.recips {
					if r == "oaep" {
						rs = append(rs, SealRecipient{Cert: keys["rsa:2048"].cert, OAEP: true})
					} else {
						rs = append(rs, SealRecipient{Cert: keys[r].cert})
					}
				}
				var out bytes.Buffer
				if _, err := Seal(&out, bytes.NewReader(content), int64(len(content)), cipherName, rs); err != nil {
					t.Fatalf("Seal() = %v", err)
				}
				p7m := o.path(cipherName + c.name + ".p7m")
				os.WriteFile(p7m, out.Bytes(), 0o600)
				for _, r := range c.recips {
					k := keys[r]
					if r == "oaep" {
						k = keys["rsa:2048"]
					}
					got := o.run("cms", "-decrypt", "-inform", "DER", "-in", p7m, "-recip", k.certPath, "-inkey", k.keyPath, "-binary")
					if !bytes.Equal(got, content) {
						t.Fatalf("openssl decrypted %d bytes, want the %d of the content", len(got), len(content))
					}
					ci, err := ParseContentInfo(out.Bytes())
					if err != nil {
						t.Fatal(err)
					}
					dec, err := Decrypt(ci, []*Key{{Cert: k.cert, Private: k.key}})
					if err != nil || !bytes.Equal(dec.Content, content) || dec.Cipher != cipherName {
						t.Fatalf("Decrypt() = %v, %v", dec, err)
					}
				}
			})
		}
	}
}

// Refusals of the builders: errors, never panics.
func TestBuildRefuses(t *testing.T) {
	var out bytes.Buffer
	if _, err := Seal(&out, bytes.NewReader(nil), 0, CipherAES256CBC, []SealRecipient{{}}); !errors.Is(err, ErrCannotEncrypt) {
		t.Errorf("Seal(no certificate) = %v, want ErrCannotEncrypt", err)
	}
	if _, err := Seal(&out, bytes.NewReader(nil), 0, CipherAES256CBC, nil); err == nil {
		t.Errorf("Seal(no recipients) = nil")
	}
	if _, err := SignDetached(make([]byte, 32), SignParams{}); !errors.Is(err, ErrCannotSign) {
		t.Errorf("SignDetached(no signer) = %v, want ErrCannotSign", err)
	}
	if _, err := SignDetached(make([]byte, 20), SignParams{}); err == nil {
		t.Errorf("SignDetached(short digest) = nil")
	}
}
