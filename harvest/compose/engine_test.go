package compose

import (
	"bytes"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/cms"
)

// smimed's own incoming side (the harvest engine) reads what the gateway
// sends: it decrypts, verifies and takes the protected header fields.
// This is a further check beside OpenSSL, NSS and gpgsm, not instead.
func TestEngineReadsOwnMail(t *testing.T) {
	p := testPKI(t)
	roots := x509.NewCertPool()
	roots.AddCert(testenv.ReadCert(t, p.root.Cert))
	rc := p.parties["rcpt-rsa"]
	eng := harvest.New(harvest.Options{Keys: []*cms.Key{{Cert: rc.cert, Private: rc.key}}, Roots: roots})
	dir := t.TempDir()
	for _, c := range []struct {
		name       string
		caps       []string
		protect    bool
		wantCipher string
	}{
		{"cbc", nil, false, cms.CipherAES256CBC},
		{"gcm-oaep-protected", []string{"aes-256-gcm", "rsaes-oaep"}, true, cms.CipherAES256GCM},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			recips := []Recipient{{Cert: rc.cert, Capabilities: c.caps}, {Cert: p.parties["escrow"].cert, Capabilities: c.caps}}
			if _, err := SignEncrypt(&out, bytes.NewReader(testMessage()), p.signer("sign-rsa", false), recips, Options{TempDir: dir, ProtectHeaders: c.protect}); err != nil {
				t.Fatal(err)
			}
			res, err := eng.Process(out.Bytes(), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			rep := res.Report
			if rep.Decryption.Status != harvest.DecryptOK || rep.Decryption.Cipher != c.wantCipher {
				t.Fatalf("decryption %+v, want %s", rep.Decryption, c.wantCipher)
			}
			if len(rep.Signatures) != 1 || rep.Signatures[0].Status != harvest.StatusValid {
				t.Fatalf("signatures %+v, want one valid", rep.Signatures)
			}
			if rep.Subject != "quarterly figures" {
				t.Errorf("Subject %q, want the protected one", rep.Subject)
			}
			if !strings.Contains(string(res.Plaintext), "second line") {
				t.Errorf("plaintext lacks the body")
			}
		})
	}
}
