package harvest

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
	"github.com/smimed/smimed/daemon/testenv"
)

// Messages made by a second, independent CMS implementation
// (github.com/smallstep/pkcs7, the maintained fork of go.mozilla.org/pkcs7)
// must read the same as OpenSSL's. It also writes what OpenSSL's command
// line cannot: an SMIMEEncryptionKeyPreference attribute. Every call into it
// runs behind recover(), as the library can panic.

func safely(what string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s panicked: %v", what, r)
		}
	}()
	return f()
}

func wrapBase64(der []byte) string { return testenv.Base64Lines(der) }

// encryptionCert has OpenSSL issue an encryption-only certificate for
// alice@partner.example under the fixture intermediate.
func encryptionCert(t *testing.T) (*x509.Certificate, string) {
	t.Helper()
	dir := t.TempDir()
	caKey := privateCopy(t, dir, "intermediate.key")
	ext := filepath.Join(dir, "ext.cnf")
	os.WriteFile(ext, []byte("subjectAltName=email:alice@partner.example\nkeyUsage=critical,keyEncipherment\nextendedKeyUsage=emailProtection\nbasicConstraints=CA:FALSE\n"), 0o600)
	testenv.OpenSSL(t, dir, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "enc.key", "-subj", "/CN=Alice (encryption)/emailAddress=alice@partner.example", "-out", "enc.csr")
	testenv.OpenSSL(t, dir, "x509", "-req", "-in", "enc.csr", "-CA", filepath.Join(testdataDir, "pki", "intermediate.pem"), "-CAkey", caKey,
		"-set_serial", "4242", "-days", "365", "-extfile", ext, "-out", "enc.crt")
	certPath := filepath.Join(dir, "enc.crt")
	return pemCert(t, certPath), testenv.OpenSSLFingerprint(t, certPath)
}

func TestPKCS7SignedWithEncryptionPreference(t *testing.T) {
	testenv.NeedOpenSSL(t)
	dir := t.TempDir()
	signer, err := LoadPEMKey(filepath.Join(testdataDir, "pki", "alice.crt"), privateCopy(t, dir, "alice.key"))
	if err != nil {
		t.Fatal(err)
	}
	inter := pemCert(t, filepath.Join(testdataDir, "pki", "intermediate.pem"))
	encCert, encFP := encryptionCert(t)

	// SMIMEEncryptionKeyPreference ::= CHOICE { issuerAndSerialNumber [0] IMPLICIT ... }
	ias, err := asn1.Marshal(struct {
		Issuer asn1.RawValue
		Serial *big.Int
	}{asn1.RawValue{FullBytes: encCert.RawIssuer}, encCert.SerialNumber})
	if err != nil {
		t.Fatal(err)
	}
	ias[0] = 0xa0
	content := []byte("Content-Type: text/plain; charset=us-ascii\r\n\r\nSigned by smallstep/pkcs7.\r\n")
	var der []byte
	err = safely("pkcs7 sign", func() error {
		sd, err := pkcs7.NewSignedData(content)
		if err != nil {
			return err
		}
		sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
		cfg := pkcs7.SignerInfoConfig{ExtraSignedAttributes: []pkcs7.Attribute{
			{Type: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 11}, Value: asn1.RawValue{FullBytes: ias}},
		}}
		if err := sd.AddSignerChain(signer.Cert, signer.Private.(crypto.Signer), []*x509.Certificate{inter}, cfg); err != nil {
			return err
		}
		sd.AddCertificate(encCert)
		sd.Detach()
		der, err = sd.Finish()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	msg := "From: Alice <alice@partner.example>\r\nTo: ceo@org.example\r\nSubject: pkcs7 signed\r\nMessage-ID: <p7@partner.example>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"b0\"\r\n\r\n" +
		"--b0\r\n" + string(content) + "\r\n--b0\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		wrapBase64(der) + "--b0--\r\n"

	// OpenSSL agrees that the signature and chain are good.
	if out, err := testenv.OpenSSLTry(t, "", []byte(msg), "cms", "-verify", "-CAfile", filepath.Join(testdataDir, "pki", "ca-bundle.pem"), "-purpose", "smimesign", "-out", os.DevNull); err != nil {
		t.Fatalf("openssl cms -verify rejects the pkcs7 message: %v\n%s", err, out)
	}

	st := openTestStore(t, filepath.Join(t.TempDir(), "smimed.db"), false)
	defer st.Close()
	eng := New(Options{Roots: fixtureRoots(t), Store: st, Harvest: true})
	res, err := eng.Process([]byte(msg), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Report.Signatures) != 1 || res.Report.Signatures[0].Status != StatusValid {
		t.Fatalf("signatures = %+v, want one valid", res.Report.Signatures)
	}
	es, err := st.ByEmail("alice@partner.example")
	if err != nil {
		t.Fatal(err)
	}
	pref := ""
	for _, e := range es {
		if e.EncryptionPreferred {
			pref = e.Fingerprint
		}
	}
	if pref != encFP {
		t.Errorf("preferred encryption certificate = %s, want the one the signer named, %s (openssl); entries %+v", pref, encFP, es)
	}
}

func TestPKCS7Encrypted(t *testing.T) {
	testenv.NeedOpenSSL(t)
	keys := orgKeys(t)
	eng := New(Options{Keys: keyList(keys), Roots: fixtureRoots(t)})
	defer func() { // the library's settings are globals
		pkcs7.ContentEncryptionAlgorithm = pkcs7.EncryptionAlgorithmDESCBC
		pkcs7.KeyEncryptionAlgorithm = pkcs7.OIDEncryptionAlgorithmRSA
		pkcs7.KeyEncryptionHash = crypto.SHA256
	}()
	body := "Encrypted by smallstep/pkcs7.\r\n"
	entity := []byte("Content-Type: text/plain; charset=us-ascii\r\n\r\n" + body)
	for _, tc := range []struct {
		name      string
		cipher    int
		kea       asn1.ObjectIdentifier
		hash      crypto.Hash
		wantCiph  string
		wantTrans string
	}{
		{"aes256-pkcs1", pkcs7.EncryptionAlgorithmAES256CBC, pkcs7.OIDEncryptionAlgorithmRSA, crypto.SHA256, "aes-256-cbc", "rsa-pkcs1v15"},
		{"aes128-oaep-sha1", pkcs7.EncryptionAlgorithmAES128CBC, pkcs7.OIDEncryptionAlgorithmRSAESOAEP, crypto.SHA1, "aes-128-cbc", "rsa-oaep"},
		// smallstep/pkcs7 v0.2.3 writes hashFunc=SHA-256 without a
		// maskGenFunc (so MGF1-SHA-1 by RFC 4055's default) but masks
		// with MGF1-SHA-256: OpenSSL refuses it ("no matching
		// recipient"), and so do we.
		{"aes128-oaep-sha256-nonconformant", pkcs7.EncryptionAlgorithmAES128CBC, pkcs7.OIDEncryptionAlgorithmRSAESOAEP, crypto.SHA256, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var der []byte
			err := safely("pkcs7 encrypt", func() error {
				pkcs7.ContentEncryptionAlgorithm = tc.cipher
				pkcs7.KeyEncryptionAlgorithm = tc.kea
				pkcs7.KeyEncryptionHash = tc.hash
				var err error
				der, err = pkcs7.Encrypt(entity, []*x509.Certificate{keys["org-new"].Cert})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			msg := "From: alice@partner.example\r\nTo: ceo@org.example\r\nSubject: pkcs7 " + tc.name + "\r\nMIME-Version: 1.0\r\n" +
				"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\n" + wrapBase64(der)
			res, err := eng.Process([]byte(msg), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			d := res.Report.Decryption
			if tc.wantCiph == "" {
				dir := t.TempDir()
				if out, err := testenv.OpenSSLTry(t, "", der, "cms", "-decrypt", "-inform", "DER", "-recip", filepath.Join(testdataDir, "pki", "org-new.crt"),
					"-inkey", privateCopy(t, dir, "org-new.key")); err == nil {
					t.Fatalf("openssl decrypts the message (%q); the case's premise is wrong", out)
				}
				if d.Status != DecryptFailed {
					t.Errorf("Decryption = %+v, want failed like OpenSSL", d)
				}
				return
			}
			if d.Status != DecryptOK || d.Cipher != tc.wantCiph || d.KeyTransport != tc.wantTrans {
				t.Fatalf("Decryption = %+v, want ok %s %s", d, tc.wantCiph, tc.wantTrans)
			}
			if !bytes.HasSuffix(res.Plaintext, []byte("\r\n\r\n"+body)) {
				t.Errorf("plaintext = %q", res.Plaintext)
			}
		})
	}
}
