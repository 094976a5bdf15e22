package compose

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"testing"

	"github.com/smimed/smimed/harvest/cms"
)

// The choice rules of RFC 8551 section 2.7 as docs/outgoing-crypto.md
// states them.
func TestChoose(t *testing.T) {
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaCert := &x509.Certificate{PublicKey: &rk.PublicKey}
	ecCert := &x509.Certificate{PublicKey: &ek.PublicKey}
	escrow := Own(rsaCert)
	for _, c := range []struct {
		name   string
		recips []Recipient
		cipher string
		kms    string
	}{
		{"nothing announced", []Recipient{{Cert: rsaCert}}, cms.CipherAES256CBC, "[rsa-pkcs1v15]"},
		{"gcm and oaep", []Recipient{{Cert: rsaCert, Capabilities: []string{"aes-256-gcm", "rsaes-oaep"}}}, cms.CipherAES256GCM, "[rsa-oaep]"},
		{"gcm 128 only", []Recipient{{Cert: rsaCert, Capabilities: []string{"aes-128-gcm"}}}, cms.CipherAES256CBC, "[rsa-pkcs1v15]"},
		{"one without gcm", []Recipient{{Cert: rsaCert, Capabilities: []string{"aes-256-gcm"}}, {Cert: ecCert}}, cms.CipherAES256CBC, "[rsa-pkcs1v15 ecdh]"},
		{"escrow holds nothing back", []Recipient{{Cert: ecCert, Capabilities: []string{"aes-256-gcm"}}, escrow}, cms.CipherAES256GCM, "[ecdh rsa-oaep]"},
		{"none", nil, cms.CipherAES256CBC, "[]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := Choose(c.recips)
			if a.Cipher != c.cipher || fmt.Sprint(a.KeyManagement) != c.kms {
				t.Fatalf("Choose() = %s %v, want %s %s", a.Cipher, a.KeyManagement, c.cipher, c.kms)
			}
		})
	}
}
