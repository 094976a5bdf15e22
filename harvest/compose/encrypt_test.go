package compose

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest/cms"
)

// recipient names a test party and what it announced.
type rcpt struct {
	party string
	caps  []string
}

var gcmCaps = []string{"aes-256-gcm", "aes-256-cbc"}

// encryptCases are every combination the gateway produces.
func encryptCases() []struct {
	name   string
	recips []rcpt
	cipher string
	kms    []string
} {
	var out []struct {
		name   string
		recips []rcpt
		cipher string
		kms    []string
	}
	for _, gcm := range []bool{false, true} {
		var caps []string
		cipher := cms.CipherAES256CBC
		if gcm {
			caps, cipher = gcmCaps, cms.CipherAES256GCM
		}
		with := func(extra ...string) []string { return append(append([]string{}, caps...), extra...) }
		for _, c := range []struct {
			name   string
			recips []rcpt
			kms    []string
		}{
			{"rsa-pkcs1", []rcpt{{"rcpt-rsa", with()}}, []string{cms.KeyRSAPKCS1v15}},
			{"rsa-oaep", []rcpt{{"rcpt-rsa", with("rsaes-oaep")}}, []string{cms.KeyRSAOAEP}},
			{"p256", []rcpt{{"rcpt-p256", with()}}, []string{cms.KeyECDH}},
			{"p384", []rcpt{{"rcpt-p384", with()}}, []string{cms.KeyECDH}},
			{"several+escrow", []rcpt{{"rcpt-rsa", with("rsaes-oaep")}, {"rcpt-p256", with()}, {"rcpt-p384", with()}, {"escrow", with()}},
				[]string{cms.KeyRSAOAEP, cms.KeyECDH, cms.KeyECDH, cms.KeyRSAPKCS1v15}},
		} {
			out = append(out, struct {
				name   string
				recips []rcpt
				cipher string
				kms    []string
			}{cipher + "/" + c.name, c.recips, cipher, c.kms})
		}
	}
	return out
}

func (p *pki) recipients(rs []rcpt) []Recipient {
	var out []Recipient
	for _, r := range rs {
		out = append(out, Recipient{Cert: p.parties[r.party].cert, Capabilities: r.caps})
	}
	return out
}

// The encrypted entity is the input's MIME fields and body, nothing else.
const plainMessage = "From: sign-rsa@org.example\r\nTo: partner@partner.example\r\nSubject: plans\r\n" +
	"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGeheime Pläne\r\nline two\r\n"

const plainEntity = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGeheime Pläne\r\nline two\r\n"

func TestEncryptOpenSSL(t *testing.T) {
	p := testPKI(t)
	dir := t.TempDir()
	for _, c := range encryptCases() {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			alg, err := Encrypt(&out, strings.NewReader(plainMessage), p.recipients(c.recips), Options{TempDir: dir})
			if err != nil {
				t.Fatalf("Encrypt() = %v", err)
			}
			if alg.Cipher != c.cipher || fmt.Sprint(alg.KeyManagement) != fmt.Sprint(c.kms) {
				t.Errorf("Encrypt() algorithms = %+v, want %s %v", alg, c.cipher, c.kms)
			}
			h, der := p7m(t, out.Bytes())
			if h.Get("Subject") != "plans" || !strings.Contains(h.Get("Content-Type"), "smime-type="+alg.SMIMEType()) {
				t.Errorf("outer header %v", h.Map())
			}
			path := write(t, dir, "enc.eml", out.Bytes())
			for _, r := range c.recips {
				k := p.parties[r.party]
				got := testenv.OpenSSL(t, dir, "cms", "-decrypt", "-in", path, "-recip", k.certPath, "-inkey", k.keyPath, "-binary")
				if string(got) != plainEntity {
					t.Fatalf("openssl cms -decrypt (%s) = %q, want %q", r.party, got, plainEntity)
				}
				ci, err := cms.ParseContentInfo(der)
				if err != nil {
					t.Fatal(err)
				}
				dec, err := cms.Decrypt(ci, []*cms.Key{{Cert: k.cert, Private: k.key}})
				if err != nil || string(dec.Content) != plainEntity {
					t.Fatalf("cms.Decrypt (%s) = %v", r.party, err)
				}
			}
			// A key that is not a recipient cannot decrypt.
			other := p.parties["sign-rsa"]
			if o, err := testenv.OpenSSLTry(t, dir, nil, "cms", "-decrypt", "-in", path, "-recip", other.certPath, "-inkey", other.keyPath); err == nil {
				t.Fatalf("openssl decrypted with a key that is no recipient: %s", o)
			}
		})
	}
}

func TestSignEncryptOpenSSL(t *testing.T) {
	p := testPKI(t)
	dir := t.TempDir()
	for _, protect := range []bool{false, true} {
		for _, gcm := range []bool{false, true} {
			caps := []string(nil)
			if gcm {
				caps = gcmCaps
			}
			t.Run(fmt.Sprintf("gcm=%v/protect=%v", gcm, protect), func(t *testing.T) {
				var out bytes.Buffer
				recips := []Recipient{{Cert: p.parties["rcpt-p256"].cert, Capabilities: caps}, {Cert: p.parties["escrow"].cert, Capabilities: caps}}
				if _, err := SignEncrypt(&out, bytes.NewReader(testMessage()), p.signer("sign-rsa", false), recips, Options{TempDir: dir, ProtectHeaders: protect}); err != nil {
					t.Fatalf("SignEncrypt() = %v", err)
				}
				h, _ := p7m(t, out.Bytes())
				wantSubject := "quarterly figures"
				if protect {
					wantSubject = "[...]"
				}
				if h.Get("Subject") != wantSubject {
					t.Errorf("outer Subject %q, want %q", h.Get("Subject"), wantSubject)
				}
				for _, who := range []string{"rcpt-p256", "escrow"} {
					k := p.parties[who]
					signed := testenv.OpenSSL(t, dir, "cms", "-decrypt", "-in", write(t, dir, "se.eml", out.Bytes()), "-recip", k.certPath, "-inkey", k.keyPath)
					got := testenv.OpenSSL(t, dir, "cms", "-verify", "-in", write(t, dir, "se-signed.eml", signed), "-CAfile", p.root.Cert)
					if !bytes.Equal(canonicalParts(t, got), canonicalParts(t, testMessage())) {
						t.Errorf("decrypted and verified content decodes to other parts than the input")
					}
					if protect {
						inner := string(got[:bytes.Index(got, []byte("\r\n\r\n"))])
						for _, want := range []string{"Subject: quarterly figures", "HP-Outer: Subject: [...]", `hp=cipher`, "From: Alice"} {
							if !strings.Contains(inner, want) {
								t.Errorf("protected header lacks %q:\n%s", want, inner)
							}
						}
						if strings.Contains(inner, "Received:") {
							t.Errorf("trace field copied into the protected header:\n%s", inner)
						}
					}
				}
			})
		}
	}
}
