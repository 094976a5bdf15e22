package compose

import (
	"bytes"
	"strings"
	"testing"

	"github.com/smimed/smimed/daemon/testenv"
)

// NSS (cmsutil of libnss3-tools, the engine of Thunderbird) decrypts and
// verifies what we build.

func TestNSSVerify(t *testing.T) {
	p := testPKI(t)
	db := testenv.NewNSSDB(t, p.root.Cert)
	dir := t.TempDir()
	for _, c := range signCases {
		t.Run(c.name, func(t *testing.T) {
			_, content, sig := splitSigned(t, p.signTest(t, c.signer, c.pss, dir))
			cpath := write(t, dir, "content", content)
			if _, log, err := db.Decode(t, sig, cpath); err != nil {
				t.Fatalf("cmsutil -D: %v\n%s", err, log)
			}
			bad := write(t, dir, "bad", append(bytes.Clone(content), 'x'))
			if _, log, err := db.Decode(t, sig, bad); err == nil {
				t.Fatalf("cmsutil -D verified changed content:\n%s", log)
			}
		})
	}
}

// nssUnsupported lists the combinations NSS 3.87 (Debian 12) cannot
// decrypt, with the reason; the test checks that they still fail, so that
// the list stays true.
var nssUnsupported = map[string]string{
	"aes-256-cbc/rsa-oaep":       "RSAES-OAEP key transport: SEC_ERROR_UNSUPPORTED_KEYALG",
	"aes-256-cbc/p256":           "KeyAgreeRecipientInfo (ECDH): SEC_ERROR_BAD_DER, as for OpenSSL's own",
	"aes-256-cbc/p384":           "KeyAgreeRecipientInfo (ECDH): SEC_ERROR_BAD_DER",
	"aes-256-cbc/several+escrow": "one KeyAgreeRecipientInfo makes the whole message unreadable, also for the RSA recipients: SEC_ERROR_BAD_DER",
	"aes-256-gcm/rsa-pkcs1":      "AuthEnvelopedData: SEC_ERROR_UNRECOGNIZED_OID",
	"aes-256-gcm/rsa-oaep":       "AuthEnvelopedData: SEC_ERROR_UNRECOGNIZED_OID",
	"aes-256-gcm/p256":           "AuthEnvelopedData: SEC_ERROR_UNRECOGNIZED_OID",
	"aes-256-gcm/p384":           "AuthEnvelopedData: SEC_ERROR_UNRECOGNIZED_OID",
	"aes-256-gcm/several+escrow": "AuthEnvelopedData: SEC_ERROR_UNRECOGNIZED_OID",
}

func TestNSSDecrypt(t *testing.T) {
	p := testPKI(t)
	db := testenv.NewNSSDB(t, p.root.Cert)
	for _, n := range []string{"rcpt-rsa", "rcpt-p256", "rcpt-p384", "escrow"} {
		db.ImportKey(t, p.parties[n].certPath, p.parties[n].keyPath)
	}
	dir := t.TempDir()
	for _, c := range encryptCases() {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			if _, err := Encrypt(&out, strings.NewReader(plainMessage), p.recipients(c.recips), Options{TempDir: dir}); err != nil {
				t.Fatal(err)
			}
			_, der := p7m(t, out.Bytes())
			got, log, err := db.Decode(t, der, "")
			if why, ok := nssUnsupported[c.name]; ok {
				if err == nil && string(got) == plainEntity {
					t.Fatalf("cmsutil -D now decrypts %s (listed as unsupported: %s)", c.name, why)
				}
				t.Logf("NSS cannot decrypt %s (%s): %s", c.name, why, bytes.TrimSpace(log))
				return
			}
			if err != nil || string(got) != plainEntity {
				t.Fatalf("cmsutil -D = %q, %v\n%s", got, err, log)
			}
		})
	}
}

// TestNSSSignEncrypt decrypts a signed and encrypted message with NSS
// (AES-256-CBC, RSA PKCS #1 v1.5: what NSS 3.87 reads) and verifies the
// signature inside with NSS.
func TestNSSSignEncrypt(t *testing.T) {
	p := testPKI(t)
	db := testenv.NewNSSDB(t, p.root.Cert)
	db.ImportKey(t, p.parties["rcpt-rsa"].certPath, p.parties["rcpt-rsa"].keyPath)
	dir := t.TempDir()
	var out bytes.Buffer
	recips := []Recipient{{Cert: p.parties["rcpt-rsa"].cert}, {Cert: p.parties["escrow"].cert}}
	if _, err := SignEncrypt(&out, bytes.NewReader(testMessage()), p.signer("sign-p256", false), recips, Options{TempDir: dir}); err != nil {
		t.Fatal(err)
	}
	_, der := p7m(t, out.Bytes())
	signed, log, err := db.Decode(t, der, "")
	if err != nil {
		t.Fatalf("cmsutil -D: %v\n%s", err, log)
	}
	_, content, sig := splitSigned(t, signed)
	if _, log, err := db.Decode(t, sig, write(t, dir, "content", content)); err != nil {
		t.Fatalf("cmsutil -D (signature): %v\n%s", err, log)
	}
	if !bytes.Equal(canonicalParts(t, content), canonicalParts(t, testMessage())) {
		t.Errorf("NSS's plaintext decodes to other parts than the input")
	}
}
