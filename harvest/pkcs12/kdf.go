package pkcs12

// Key derivation: the PKCS#12 KDF (RFC 7292 appendix B.2) used by the
// classic MAC and by the PKCS#12 PBES1 schemes, and PBKDF2 (RFC 8018) used
// by PBES2 and PBMAC1.

import (
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"fmt"
	"hash"
	"unicode/utf16"
)

// Purpose bytes (ID) of the PKCS#12 KDF.
const (
	kdfKey = 1 // encryption key
	kdfIV  = 2 // initialisation vector
	kdfMAC = 3 // MAC key
)

// hashAlg is a hash function with the sizes the PKCS#12 KDF needs.
type hashAlg struct {
	name string
	new  func() hash.Hash
	u    int // output size in bytes
	v    int // block size in bytes
}

var (
	hashSHA1   = hashAlg{"SHA-1", sha1.New, sha1.Size, sha1.BlockSize}
	hashSHA224 = hashAlg{"SHA-224", sha256.New224, sha256.Size224, sha256.BlockSize}
	hashSHA256 = hashAlg{"SHA-256", sha256.New, sha256.Size, sha256.BlockSize}
	hashSHA384 = hashAlg{"SHA-384", sha512.New384, sha512.Size384, sha512.BlockSize}
	hashSHA512 = hashAlg{"SHA-512", sha512.New, sha512.Size, sha512.BlockSize}
)

// Digest algorithm OIDs, as named in MacData.
var (
	oidSHA1   = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA224 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 4}
	oidSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
)

// HMAC OIDs, the PBKDF2 PRFs and PBMAC1 message authentication schemes.
var (
	oidHMACWithSHA1   = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
	oidHMACWithSHA224 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 8}
	oidHMACWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidHMACWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 10}
	oidHMACWithSHA512 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 11}
)

func digestByOID(oid asn1.ObjectIdentifier) (hashAlg, bool) {
	switch {
	case oid.Equal(oidSHA1):
		return hashSHA1, true
	case oid.Equal(oidSHA224):
		return hashSHA224, true
	case oid.Equal(oidSHA256):
		return hashSHA256, true
	case oid.Equal(oidSHA384):
		return hashSHA384, true
	case oid.Equal(oidSHA512):
		return hashSHA512, true
	}
	return hashAlg{}, false
}

func hmacByOID(oid asn1.ObjectIdentifier) (hashAlg, bool) {
	switch {
	case oid.Equal(oidHMACWithSHA1):
		return hashSHA1, true
	case oid.Equal(oidHMACWithSHA224):
		return hashSHA224, true
	case oid.Equal(oidHMACWithSHA256):
		return hashSHA256, true
	case oid.Equal(oidHMACWithSHA384):
		return hashSHA384, true
	case oid.Equal(oidHMACWithSHA512):
		return hashSHA512, true
	}
	return hashAlg{}, false
}

// bmpPassword is the password as the PKCS#12 KDF takes it (RFC 7292
// appendix B.1): UTF-16 big-endian followed by two zero bytes. Characters
// outside the BMP become surrogate pairs, as OpenSSL writes them.
func bmpPassword(password string) []byte {
	u := utf16.Encode([]rune(password))
	out := make([]byte, 0, 2*len(u)+2)
	for _, c := range u {
		out = append(out, byte(c>>8), byte(c))
	}
	return append(out, 0, 0)
}

// repeatTo returns x repeated to the smallest multiple of v bytes that holds
// it, or nil for an empty x (steps 2 and 3 of RFC 7292 appendix B.2).
func repeatTo(x []byte, v int) []byte {
	if len(x) == 0 {
		return nil
	}
	out := make([]byte, v*((len(x)+v-1)/v))
	for i := range out {
		out[i] = x[i%len(x)]
	}
	return out
}

// pkcs12KDF derives n bytes for purpose id from the BMPString password
// (already encoded, terminator included or not) and salt with r iterations,
// following RFC 7292 appendix B.2.
func pkcs12KDF(h hashAlg, password, salt []byte, r int, id byte, n int) []byte {
	u, v := h.u, h.v
	d := make([]byte, v)
	for i := range d {
		d[i] = id
	}
	in := append(repeatTo(salt, v), repeatTo(password, v)...) // I = S || P
	c := (n + u - 1) / u
	out := make([]byte, 0, c*u)
	b := make([]byte, v)
	hh := h.new()
	for i := 0; i < c; i++ {
		hh.Reset()
		hh.Write(d)
		hh.Write(in)
		a := hh.Sum(nil)
		for range r - 1 {
			hh.Reset()
			hh.Write(a)
			a = hh.Sum(a[:0])
		}
		out = append(out, a...)
		if i == c-1 {
			break
		}
		// B = A repeated to v bytes; every v-byte block of I becomes
		// (I_j + B + 1) mod 2^(8v).
		for k := range b {
			b[k] = a[k%u]
		}
		for j := 0; j+v <= len(in); j += v {
			blk := in[j : j+v]
			carry := uint16(1)
			for k := v - 1; k >= 0; k-- {
				s := uint16(blk[k]) + uint16(b[k]) + carry
				blk[k] = byte(s)
				carry = s >> 8
			}
		}
	}
	return out[:n]
}

// pbkdf2Key runs PBKDF2 with HMAC over h.
func pbkdf2Key(h hashAlg, password string, salt []byte, iter, keyLen int) ([]byte, error) {
	k, err := pbkdf2.Key(h.new, password, salt, iter, keyLen)
	if err != nil {
		return nil, fmt.Errorf("%w: PBKDF2: %v", ErrUnsupported, err)
	}
	return k, nil
}
