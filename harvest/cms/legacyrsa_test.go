package cms

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"testing"

	"github.com/smimed/smimed/daemon/testenv"
)

// legacy512 is a 512-bit key made by OpenSSL.
func legacy512(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	out := testenv.OpenSSL(t, "", "genrsa", "512")
	block, _ := pem.Decode(out)
	if block == nil {
		t.Fatal("openssl genrsa wrote no PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*rsa.PrivateKey)
}

// encryptRaw is textbook RSA (RSAEP), for building padded blocks by hand.
func encryptRaw(pub *rsa.PublicKey, em []byte) []byte {
	c := new(big.Int).Exp(new(big.Int).SetBytes(em), big.NewInt(int64(pub.E)), pub.N)
	return c.FillBytes(make([]byte, (pub.N.BitLen()+7)/8))
}

// Hand-built PKCS #1 v1.5 blocks (RFC 8017 section 7.2.1): a good one
// decrypts to its message; each broken one is an error, or, with a
// session key length, random bytes of that length (never the message).
func TestLegacyRSAPKCS1v15Padding(t *testing.T) {
	k := legacy512(t)
	lk, err := NewLegacyRSAKey(k)
	if err != nil {
		t.Fatal(err)
	}
	size := (k.N.BitLen() + 7) / 8
	msg := bytes.Repeat([]byte{0xAB}, 16)
	block := func(mutate func([]byte)) []byte {
		em := make([]byte, size)
		em[1] = 2
		for i := 2; i < size-len(msg)-1; i++ {
			em[i] = 0x11
		}
		copy(em[size-len(msg):], msg)
		if mutate != nil {
			mutate(em)
		}
		return encryptRaw(&k.PublicKey, em)
	}
	if got, err := lk.Decrypt(rand.Reader, block(nil), nil); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("Decrypt(good) = %x, %v; want %x", got, err, msg)
	}
	if got, err := lk.Decrypt(rand.Reader, block(nil), &rsa.PKCS1v15DecryptOptions{SessionKeyLen: 16}); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("Decrypt(good, session 16) = %x, %v; want %x", got, err, msg)
	}
	for name, mutate := range map[string]func([]byte){
		"first byte":    func(em []byte) { em[0] = 1 },
		"block type 1":  func(em []byte) { em[1] = 1 },
		"no separator":  func(em []byte) { em[size-len(msg)-1] = 0x11 },
		"short padding": func(em []byte) { em[5] = 0 },
	} {
		if _, err := lk.Decrypt(rand.Reader, block(mutate), nil); err == nil {
			t.Errorf("%s: Decrypt() accepted a broken block", name)
		}
		got, err := lk.Decrypt(rand.Reader, block(mutate), &rsa.PKCS1v15DecryptOptions{SessionKeyLen: 16})
		if err != nil || len(got) != 16 || bytes.Equal(got, msg) {
			t.Errorf("%s: Decrypt(session 16) = %x, %v; want 16 random bytes", name, got, err)
		}
	}
	// The right padding, the wrong length: random, not the message.
	if got, _ := lk.Decrypt(rand.Reader, block(nil), &rsa.PKCS1v15DecryptOptions{SessionKeyLen: 24}); len(got) != 24 {
		t.Errorf("Decrypt(session 24) of a 16-byte key = %d bytes, want 24 random", len(got))
	}
	for _, c := range [][]byte{make([]byte, size-1), bytes.Repeat([]byte{0xff}, size)} {
		if _, err := lk.Decrypt(rand.Reader, c, nil); err == nil {
			t.Errorf("Decrypt(%d bytes, out of range or short) = nil error", len(c))
		}
	}
	if _, ok := any(lk).(crypto.Signer); ok {
		t.Error("LegacyRSAKey can sign")
	}
}

func TestNewLegacyRSAKeyRefuses(t *testing.T) {
	k := legacy512(t)
	bad := *k
	bad.D = new(big.Int).Add(k.D, big.NewInt(2))
	if _, err := NewLegacyRSAKey(&bad); err == nil {
		t.Error("NewLegacyRSAKey(inconsistent key) = nil error")
	}
	big1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewLegacyRSAKey(big1024); err != ErrNotLegacy {
		t.Errorf("NewLegacyRSAKey(1024 bits) = %v, want ErrNotLegacy", err)
	}
}
