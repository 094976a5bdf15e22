package cms

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"testing"
)

// An RSA ciphertext whose integer has a leading zero byte may arrive one
// byte short (some encoders drop it); like OpenSSL, the key must still be
// recovered.
func TestKTRIShortCiphertext(t *testing.T) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	cek := bytes.Repeat([]byte{0x42}, 32)
	var ct []byte
	for i := 0; i < 5000 && (ct == nil || ct[0] != 0); i++ {
		if ct, err = rsa.EncryptPKCS1v15(rand.Reader, &priv.PublicKey, cek); err != nil {
			t.Fatal(err)
		}
	}
	if ct[0] != 0 {
		t.Fatal("no ciphertext with a leading zero byte in 5000 tries")
	}
	ri := &envRecipientInfo{keyAlg: envAlgID{OID: envOIDRSAEncryption}, encryptedKey: ct[1:]}
	got, err := envKTRICEK(ri, &Key{Private: priv}, 32)
	if err != nil || !bytes.Equal(got, cek) {
		t.Fatalf("envKTRICEK(short ciphertext) = %x, %v; want the content key", got, err)
	}
	ri.encryptedKey = append([]byte{1}, ct...)
	if _, err := envKTRICEK(ri, &Key{Private: priv}, 32); err == nil {
		t.Fatal("envKTRICEK accepted a ciphertext longer than the modulus")
	}
}
