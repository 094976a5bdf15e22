package harvest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest/cms"
)

// Issue 9: mail encrypted to the organisation's historic RSA keys of 512
// and 768 bits (Thunderbird 3 era) must stay readable. Keys, certificates,
// PKCS#12 files and messages are made by OpenSSL 3.0, which encrypts to
// such keys with `openssl cms -encrypt` without any extra option (its
// security level applies to TLS, not to CMS); the expected plaintext is
// OpenSSL's own decryption of the same message.
func TestLegacySmallRSAKeys(t *testing.T) {
	testenv.NeedOpenSSL(t)
	entity := []byte("Content-Type: text/plain; charset=us-ascii\r\n\r\nThe 2009 contract, as agreed.\r\n")
	for _, bits := range []int{512, 768} {
		t.Run(fmt.Sprint(bits), func(t *testing.T) {
			dir := t.TempDir()
			testenv.OpenSSL(t, dir, "genrsa", "-traditional", "-out", "org.key", fmt.Sprint(bits))
			os.Chmod(filepath.Join(dir, "org.key"), 0o600)
			testenv.OpenSSL(t, dir, "req", "-x509", "-new", "-key", "org.key", "-subj", "/O=Org/CN=old", "-days", "3650",
				"-addext", "subjectAltName=email:ceo@org.example", "-addext", "keyUsage=critical,keyEncipherment,digitalSignature", "-out", "org.crt")
			testenv.OpenSSL(t, dir, "pkcs12", "-export", "-inkey", "org.key", "-in", "org.crt", "-passout", "pass:old", "-out", "org.p12")
			testenv.OpenSSL(t, dir, "pkcs12", "-export", "-legacy", "-inkey", "org.key", "-in", "org.crt", "-passout", "pass:old", "-out", "org-legacy.p12")
			for _, f := range []string{"org.p12", "org-legacy.p12"} {
				os.Chmod(filepath.Join(dir, f), 0o600)
			}

			pemKey, err := LoadPEMKey(filepath.Join(dir, "org.crt"), filepath.Join(dir, "org.key"))
			if err != nil {
				t.Fatalf("LoadPEMKey() = %v", err)
			}
			loaded := []*LoadedKey{pemKey}
			for _, f := range []string{"org.p12", "org-legacy.p12"} {
				lks, err := LoadPKCS12(filepath.Join(dir, f), "old")
				if err != nil {
					t.Fatalf("LoadPKCS12(%s) = %v", f, err)
				}
				loaded = append(loaded, lks[0])
			}
			for _, lk := range loaded {
				want := fmt.Sprintf("key file %s: RSA key of %d bits (under 1024): loaded to decrypt old mail only; replace it for new mail", lk.Source, bits)
				if lk.Warning != want {
					t.Errorf("%s: Warning = %q, want %q", lk.Source, lk.Warning, want)
				}
				if _, ok := lk.Private.(*cms.LegacyRSAKey); !ok {
					t.Errorf("%s: Private is %T, want a decrypt-only *cms.LegacyRSAKey", lk.Source, lk.Private)
				}
			}

			testenv.OpenSSLInput(t, dir, entity, "cms", "-encrypt", "-aes128", "-recip", "org.crt", "-out", "v15.eml")
			testenv.OpenSSLInput(t, dir, entity, "cms", "-encrypt", "-aes128", "-recip", "org.crt", "-keyopt", "rsa_padding_mode:oaep", "-out", "oaep.eml")
			for _, msg := range []string{"v15.eml", "oaep.eml"} {
				raw, err := os.ReadFile(filepath.Join(dir, msg))
				if err != nil {
					t.Fatal(err)
				}
				want := testenv.OpenSSLInput(t, dir, raw, "cms", "-decrypt", "-recip", "org.crt", "-inkey", "org.key")
				if !bytes.Equal(want, entity) {
					t.Fatalf("openssl decrypts %s to %q, want %q", msg, want, entity)
				}
				for _, lk := range loaded {
					eng := New(Options{Keys: []*cms.Key{{Cert: lk.Cert, Private: lk.Private}}})
					res := process(t, eng, append([]byte("From: partner@partner.example\r\n"), raw...))
					if res.Report.Decryption.Status != DecryptOK || !bytes.HasSuffix(res.Plaintext, want[bytes.Index(want, []byte("\r\n\r\n")):]) {
						t.Errorf("%s with %s: decryption %+v, plaintext %q; want OpenSSL's %q", msg, filepath.Base(lk.Source), res.Report.Decryption, res.Plaintext, want)
					}
				}
			}

			// Never for signatures: a message signed with the small key
			// (OpenSSL verifies it) is not valid, and nothing is harvested.
			signed := testenv.OpenSSLInput(t, dir, []byte("Content-Type: text/plain\r\n\r\nhi\r\n"), "cms", "-sign", "-signer", "org.crt", "-inkey", "org.key")
			testenv.OpenSSLInput(t, dir, signed, "cms", "-verify", "-noverify", "-out", os.DevNull)
			roots := fixtureRoots(t)
			roots.AddCert(pemKey.Cert) // even as its own trust anchor
			eng := New(Options{Roots: roots})
			res := process(t, eng, append([]byte("From: ceo@org.example\r\n"), signed...))
			s := res.Report.Signatures
			if len(s) != 1 || s[0].Status != StatusError || !strings.Contains(s[0].Reason, fmt.Sprintf("%d-bit RSA key", bits)) || len(res.Report.Harvested) != 0 {
				t.Errorf("signature by a %d-bit key: %+v, harvested %v; want error, the reason naming the size", bits, s, res.Report.Harvested)
			}
		})
	}
}

// NewLegacyRSAKey refuses keys crypto/rsa handles itself: the math/big
// path is never used for 1,024 bits and more.
func TestLegacyKeyOnlyUnder1024(t *testing.T) {
	for _, name := range []string{"org-new"} {
		lk, err := LoadPEMKey(filepath.Join(testdataDir, "pki", name+".crt"), privateCopy(t, t.TempDir(), name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		if lk.Warning != "" {
			t.Errorf("%s: Warning = %q, want none", name, lk.Warning)
		}
		if _, ok := lk.Private.(*cms.LegacyRSAKey); ok {
			t.Errorf("%s: loaded as a legacy key", name)
		}
	}
}
