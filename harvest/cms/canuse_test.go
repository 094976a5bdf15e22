package cms

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"
)

// useCert makes a self-signed certificate for key with the given usages.
func useCert(t *testing.T, key crypto.Signer, ku x509.KeyUsage, eku []x509.ExtKeyUsage) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "use"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: ku, ExtKeyUsage: eku}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// RFC 8550 section 4.4: key usage and extended key usage decide what a
// certificate may do in S/MIME.
func TestCanEncryptToCanSign(t *testing.T) {
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mail := []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}
	server := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	sig, enc, agree := x509.KeyUsageDigitalSignature, x509.KeyUsageKeyEncipherment, x509.KeyUsageKeyAgreement
	for _, c := range []struct {
		name          string
		key           crypto.Signer
		ku            x509.KeyUsage
		eku           []x509.ExtKeyUsage
		encOK, signOK bool
	}{
		{"rsa both", rk, sig | enc, mail, true, true},
		{"rsa no key usage", rk, 0, nil, true, true},
		{"rsa sign only", rk, sig, mail, false, true},
		{"rsa nonRepudiation only", rk, x509.KeyUsageContentCommitment, mail, false, true},
		{"rsa encipher only", rk, enc, mail, true, false},
		{"rsa server auth", rk, sig | enc, server, false, false},
		{"rsa any", rk, sig | enc, []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, true, true},
		{"rsa 1024", small, sig | enc, mail, false, false},
		{"ec agreement", ek, sig | agree, mail, true, true},
		{"ec encipherment", ek, sig | enc, mail, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cert := useCert(t, c.key, c.ku, c.eku)
			if err := CanEncryptTo(cert); (err == nil) != c.encOK || (err != nil && !errors.Is(err, ErrCannotEncrypt)) {
				t.Errorf("CanEncryptTo() = %v, want ok=%v", err, c.encOK)
			}
			if err := CanSign(cert, c.key); (err == nil) != c.signOK || (err != nil && !errors.Is(err, ErrCannotSign)) {
				t.Errorf("CanSign() = %v, want ok=%v", err, c.signOK)
			}
		})
	}
	// A key that is not the certificate's cannot sign for it.
	if err := CanSign(useCert(t, rk, sig, mail), ek); !errors.Is(err, ErrCannotSign) {
		t.Errorf("CanSign(other key) = %v", err)
	}
}
