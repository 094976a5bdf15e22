package main

// This file makes what `smimed demo` needs and a real deployment gets from
// elsewhere: a throw-away PKI (the organisation's key, a partner's CA and
// certificate), made with crypto/x509 at run time, and the partner's S/MIME
// mail, made with github.com/smallstep/pkcs7. That library only WRITES the
// demo's mail here; the daemon reads mail with harvest/cms (docs/development.md,
// "Dependencies and why"). Every call into it runs behind recover(), as it
// can panic, and only PKCS#1 v1.5 key transport with AES-256-CBC is used
// (its RSA-OAEP with SHA-256 is not conformant, and its AES-GCM is not the
// AuthEnvelopedData RFC 5083 asks for).

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/smallstep/pkcs7"
)

// The demo's names.
const (
	demoOrgAddr     = "demo@org.example"
	demoPartnerAddr = "partner@partner.example"
)

// demoPKI is the demo's keys and certificates.
type demoPKI struct {
	orgCA, org, partnerCA, partner *x509.Certificate
	orgKey, partnerKey             *rsa.PrivateKey
}

// demoFiles are the PKI files written into the demo directory, relative
// to it.
const (
	demoOrgCAFile      = "org-ca.crt"
	demoOrgCertFile    = "org.crt"
	demoOrgKeyFile     = "org.key"
	demoPartnerCAFile  = "partner-ca.crt"
	demoPartnerCert    = "partner.crt"
	demoPartnerKeyFile = "partner.key"
)

// newDemoPKI generates an organisation CA and the organisation's RSA key
// and certificate (RSA: it must decrypt), a partner CA and the partner's
// RSA signing certificate for demoPartnerAddr. The CAs use P-256.
func newDemoPKI() (*demoPKI, error) {
	now := time.Now().Add(-time.Hour)
	until := now.AddDate(2, 0, 0)
	ca := func(name, org string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber:          demoSerial(),
			Subject:               pkix.Name{CommonName: name, Organization: []string{org}},
			NotBefore:             now,
			NotAfter:              until,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			IsCA:                  true,
			BasicConstraintsValid: true,
			MaxPathLenZero:        true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			return nil, nil, err
		}
		cert, err := x509.ParseCertificate(der)
		return cert, key, err
	}
	leaf := func(name, org, email string, issuer *x509.Certificate, issuerKey *ecdsa.PrivateKey) (*x509.Certificate, *rsa.PrivateKey, error) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber:          demoSerial(),
			Subject:               pkix.Name{CommonName: name, Organization: []string{org}},
			EmailAddresses:        []string{email},
			NotBefore:             now,
			NotAfter:              until,
			KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
			BasicConstraintsValid: true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, issuerKey)
		if err != nil {
			return nil, nil, err
		}
		cert, err := x509.ParseCertificate(der)
		return cert, key, err
	}
	p := &demoPKI{}
	var orgCAKey, partnerCAKey *ecdsa.PrivateKey
	var err error
	if p.orgCA, orgCAKey, err = ca("Demo Org CA (smimed demo)", "Demo Org"); err != nil {
		return nil, err
	}
	if p.org, p.orgKey, err = leaf("Demo Org (smimed demo)", "Demo Org", demoOrgAddr, p.orgCA, orgCAKey); err != nil {
		return nil, err
	}
	if p.partnerCA, partnerCAKey, err = ca("Partner CA (smimed demo)", "Partner Example"); err != nil {
		return nil, err
	}
	if p.partner, p.partnerKey, err = leaf("Partner (smimed demo)", "Partner Example", demoPartnerAddr, p.partnerCA, partnerCAKey); err != nil {
		return nil, err
	}
	return p, nil
}

func demoSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n.Add(n, big.NewInt(1))
}

// write puts the PKI into dir: certificates 0644, private keys 0600 (the
// key loader refuses anything else).
func (p *demoPKI) write(dir string) error {
	certPEM := func(c *x509.Certificate) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	keyPEM := func(k *rsa.PrivateKey) ([]byte, error) {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
	}
	orgKey, err := keyPEM(p.orgKey)
	if err != nil {
		return err
	}
	partnerKey, err := keyPEM(p.partnerKey)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{demoOrgCAFile, certPEM(p.orgCA), 0o644},
		{demoOrgCertFile, certPEM(p.org), 0o644},
		{demoOrgKeyFile, orgKey, 0o600},
		{demoPartnerCAFile, certPEM(p.partnerCA), 0o644},
		{demoPartnerCert, certPEM(p.partner), 0o644},
		{demoPartnerKeyFile, partnerKey, 0o600},
	} {
		if err := demoWriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// demoWriteFile writes data to path with exactly mode (whatever the umask),
// replacing a file of an earlier demo.
func demoWriteFile(path string, data []byte, mode os.FileMode) error {
	os.Remove(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// demoMail is one message the demo delivers.
type demoMail struct {
	name  string // file name stem under DIR/mail
	what  string // one line for the printout
	smime bool   // signed or encrypted: it gets a copy in Decrypted
	raw   []byte
}

// demoPKCS7Mu serialises the library's global settings
// (ContentEncryptionAlgorithm, KeyEncryptionAlgorithm).
var demoPKCS7Mu sync.Mutex

// demoSafePKCS7 runs f, turning a panic of the library into an error.
func demoSafePKCS7(what string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("pkcs7 %s panicked: %v", what, r)
		}
	}()
	return f()
}

// demoSignDetached returns a detached CMS SignedData (SHA-256, with the
// signer's certificate) over content.
func demoSignDetached(content []byte, cert *x509.Certificate, key crypto.Signer) ([]byte, error) {
	var der []byte
	err := demoSafePKCS7("sign", func() error {
		sd, err := pkcs7.NewSignedData(content)
		if err != nil {
			return err
		}
		sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
		if err := sd.AddSigner(cert, key, pkcs7.SignerInfoConfig{}); err != nil {
			return err
		}
		sd.Detach()
		der, err = sd.Finish()
		return err
	})
	return der, err
}

// demoEnvelope returns a CMS EnvelopedData of content for to: AES-256-CBC,
// RSA PKCS#1 v1.5 key transport.
func demoEnvelope(content []byte, to *x509.Certificate) ([]byte, error) {
	demoPKCS7Mu.Lock()
	defer demoPKCS7Mu.Unlock()
	var der []byte
	err := demoSafePKCS7("encrypt", func() error {
		pkcs7.ContentEncryptionAlgorithm = pkcs7.EncryptionAlgorithmAES256CBC
		pkcs7.KeyEncryptionAlgorithm = pkcs7.OIDEncryptionAlgorithmRSA
		var err error
		der, err = pkcs7.Encrypt(content, []*x509.Certificate{to})
		return err
	})
	return der, err
}

// demoBase64Lines is b in base64, 76 characters a line, each ended by CRLF
// (RFC 2045 6.8).
func demoBase64Lines(b []byte) string {
	s := base64.StdEncoding.EncodeToString(b)
	var out strings.Builder
	for len(s) > 76 {
		out.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	out.WriteString(s + "\r\n")
	return out.String()
}

// demoCRLF turns the LF line ends of s into CRLF.
func demoCRLF(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// newDemoMail makes the partner's five messages: clear-signed, encrypted
// to the organisation, signed then encrypted, plain, and a signed one
// whose text was changed after signing. Message-IDs carry token, so every
// demo run's messages are its own.
func newDemoMail(p *demoPKI, now time.Time) ([]demoMail, error) {
	token := make([]byte, 6)
	rand.Read(token)
	tok := hex.EncodeToString(token)
	header := func(n int, name, subject string) string {
		return demoCRLF(fmt.Sprintf("From: Partner <%s>\nTo: Demo Org <%s>\nSubject: %s\nDate: %s\nMessage-ID: <demo-%d-%s.%s@partner.example>\nMIME-Version: 1.0\n",
			demoPartnerAddr, demoOrgAddr, subject, now.Add(time.Duration(n)*time.Second).Format(time.RFC1123Z), n, name, tok))
	}
	text := func(body string) []byte {
		return []byte(demoCRLF("Content-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: 7bit\n\n" + body))
	}
	// signedEntity is content clear-signed (RFC 8551 3.5.3): the
	// signature covers the first part's bytes up to, not including, the
	// CRLF before the boundary.
	signedEntity := func(content []byte) (string, error) {
		sig, err := demoSignDetached(content, p.partner, p.partnerKey)
		if err != nil {
			return "", err
		}
		boundary := "signed-" + tok
		return demoCRLF(fmt.Sprintf("Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256;\n boundary=%q\n\nThis is an S/MIME signed message.\n\n--%s\n", boundary, boundary)) +
			string(content) +
			demoCRLF(fmt.Sprintf("\n--%s\nContent-Type: application/pkcs7-signature; name=smime.p7s\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=smime.p7s\n\n", boundary)) +
			demoBase64Lines(sig) + demoCRLF(fmt.Sprintf("--%s--\n", boundary)), nil
	}
	enveloped := func(entity []byte) (string, error) {
		der, err := demoEnvelope(entity, p.org)
		if err != nil {
			return "", err
		}
		return demoCRLF("Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=smime.p7m\n\n") +
			demoBase64Lines(der), nil
	}

	var mails []demoMail
	add := func(name, what, subject, entity string, smime bool) {
		n := len(mails) + 1
		mails = append(mails, demoMail{name: fmt.Sprintf("%d-%s", n, name), what: what, smime: smime, raw: []byte(header(n, name, subject) + entity)})
	}

	invoice := text("Hello Demo Org,\n\nplease pay invoice 4711: 100 EUR to our usual account.\n\nPartner\n")
	signed, err := signedEntity(invoice)
	if err != nil {
		return nil, err
	}
	add("signed", "clear-signed (multipart/signed, SHA-256, certificate included)", "Demo 1: invoice 4711, signed", signed, true)

	secret := text("Hello Demo Org,\n\nthe new price list is attached in spirit: 10% off for you.\n\nPartner\n")
	enc, err := enveloped(secret)
	if err != nil {
		return nil, err
	}
	add("encrypted", "encrypted to the organisation (AES-256-CBC, RSA key transport)", "Demo 2: price list, encrypted", enc, true)

	inner, err := signedEntity(text("Hello Demo Org,\n\nsigned and sealed: our contract offer, valid until Friday.\n\nPartner\n"))
	if err != nil {
		return nil, err
	}
	signEnc, err := enveloped([]byte(inner))
	if err != nil {
		return nil, err
	}
	add("signed-encrypted", "signed, then encrypted", "Demo 3: contract offer, signed and encrypted", signEnc, true)

	add("plain", "plain mail, no S/MIME", "Demo 4: lunch on Thursday?", string(text("Hello Demo Org,\n\nlunch on Thursday? No secrets here.\n\nPartner\n")), false)

	// The signed invoice with its amount changed on the way: the digest
	// no longer matches.
	tampered := strings.Replace(signed, "100 EUR", "900 EUR", 1)
	if tampered == signed {
		return nil, fmt.Errorf("demo: the signed invoice lacks its amount")
	}
	add("tampered", "the signed invoice, its amount changed after signing", "Demo 5: invoice 4711, signed, altered on the way", tampered, true)

	for _, m := range mails {
		if !bytes.HasSuffix(m.raw, []byte("\r\n")) {
			return nil, fmt.Errorf("demo: message %s does not end with CRLF", m.name)
		}
	}
	return mails, nil
}
