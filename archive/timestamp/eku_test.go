package timestamp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"
)

// TestCheckEKU: the TSA certificate must carry id-kp-timeStamping alone
// in a critical extension (RFC 3161 section 2.3). OpenSSL's ts -reply
// refuses to sign with any other certificate, so these cases are built
// here.
func TestCheckEKU(t *testing.T) {
	ekuDER := func(oids ...asn1.ObjectIdentifier) []byte {
		b, err := asn1.Marshal(oids)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	mk := func(ext *pkix.Extension) *x509.Certificate {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "t"},
			NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
		if ext != nil {
			tmpl.ExtraExtensions = []pkix.Extension{*ext}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	emailOID := asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 4}
	for _, tc := range []struct {
		name string
		ext  *pkix.Extension
		ok   bool
	}{
		{"critical timeStamping", &pkix.Extension{Id: oidExtKeyUsage, Critical: true, Value: ekuDER(oidKPTimeStamping)}, true},
		{"not critical", &pkix.Extension{Id: oidExtKeyUsage, Value: ekuDER(oidKPTimeStamping)}, false},
		{"also email", &pkix.Extension{Id: oidExtKeyUsage, Critical: true, Value: ekuDER(oidKPTimeStamping, emailOID)}, false},
		{"email only", &pkix.Extension{Id: oidExtKeyUsage, Critical: true, Value: ekuDER(emailOID)}, false},
		{"none", nil, false},
	} {
		err := checkEKU(mk(tc.ext))
		if (err == nil) != tc.ok {
			t.Errorf("%s: checkEKU() = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
