package cms

// Historic organisation keys: RSA keys of 512 or 768 bits (Thunderbird 3
// era) that old mail was encrypted to. Go's crypto/rsa refuses keys under
// 1,024 bits in every operation, so without this file that mail could
// never be read again. LegacyRSAKey does the RSA private operation (RFC
// 8017 section 5.1.2, RSADP) with math/big, for such keys only and for
// decryption only: it is a crypto.Decrypter, never a crypto.Signer, and
// NewLegacyRSAKey refuses keys of 1,024 bits and more, which crypto/rsa
// handles. A key this small can be factored by a determined attacker; it
// is kept to read the past, not to protect anything new.

import (
	"crypto"
	"crypto/rsa"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/big"
)

// LegacyBits is the size below which an RSA key is a LegacyRSAKey.
const LegacyBits = 1024

// ErrNotLegacy is returned by NewLegacyRSAKey for a key crypto/rsa
// handles itself.
var ErrNotLegacy = errors.New("cms: RSA key of 1024 bits or more is not a legacy key")

// LegacyRSAKey is an RSA private key under LegacyBits bits, usable only to
// decrypt (key transport). It implements crypto.Decrypter.
type LegacyRSAKey struct {
	priv *rsa.PrivateKey
}

var _ crypto.Decrypter = (*LegacyRSAKey)(nil)

// NewLegacyRSAKey wraps k, which must have fewer than LegacyBits bits and
// be consistent (d·e ≡ 1 modulo λ(n) is checked on a test value).
func NewLegacyRSAKey(k *rsa.PrivateKey) (*LegacyRSAKey, error) {
	if k == nil || k.N == nil || k.D == nil || k.E < 3 || k.E%2 == 0 {
		return nil, errors.New("cms: malformed RSA key")
	}
	if k.N.BitLen() >= LegacyBits {
		return nil, ErrNotLegacy
	}
	if k.N.BitLen() < 256 {
		return nil, fmt.Errorf("cms: %d-bit RSA key is too small even to read old mail", k.N.BitLen())
	}
	l := &LegacyRSAKey{priv: k}
	// A key whose d does not invert e would turn every ciphertext into
	// noise: refuse it at load time.
	m := big.NewInt(0x5a5a5a5a)
	c := new(big.Int).Exp(m, big.NewInt(int64(k.E)), k.N)
	if l.exp(c).Cmp(m) != 0 {
		return nil, errors.New("cms: RSA key is inconsistent (private exponent does not match)")
	}
	return l, nil
}

// Bits is the modulus size.
func (l *LegacyRSAKey) Bits() int { return l.priv.N.BitLen() }

// Public returns the *rsa.PublicKey.
func (l *LegacyRSAKey) Public() crypto.PublicKey { return &l.priv.PublicKey }

func (l *LegacyRSAKey) exp(c *big.Int) *big.Int { return new(big.Int).Exp(c, l.priv.D, l.priv.N) }

// decryptRaw is RSADP with blinding (so the time math/big takes does not
// depend on the ciphertext) and a check of the result against the public
// key; the result is left-padded to the modulus size.
func (l *LegacyRSAKey) decryptRaw(random io.Reader, ciphertext []byte) ([]byte, error) {
	n, size := l.priv.N, (l.priv.N.BitLen()+7)/8
	if len(ciphertext) != size {
		return nil, fmt.Errorf("cms: RSA ciphertext is %d bytes, the modulus %d", len(ciphertext), size)
	}
	c := new(big.Int).SetBytes(ciphertext)
	if c.Cmp(n) >= 0 {
		return nil, errors.New("cms: RSA ciphertext out of range")
	}
	e := big.NewInt(int64(l.priv.E))
	var r, rInv *big.Int
	for range 16 {
		b := make([]byte, size)
		if _, err := io.ReadFull(random, b); err != nil {
			return nil, fmt.Errorf("cms: blinding: %w", err)
		}
		r = new(big.Int).Mod(new(big.Int).SetBytes(b), n)
		if r.Sign() > 0 {
			if rInv = new(big.Int).ModInverse(r, n); rInv != nil {
				break
			}
		}
	}
	if rInv == nil {
		return nil, errors.New("cms: blinding: no invertible value found")
	}
	blinded := new(big.Int).Mul(c, new(big.Int).Exp(r, e, n))
	m := l.exp(blinded.Mod(blinded, n))
	m.Mul(m, rInv).Mod(m, n)
	if new(big.Int).Exp(m, e, n).Cmp(c) != 0 {
		return nil, errors.New("cms: RSA private operation failed its check")
	}
	return m.FillBytes(make([]byte, size)), nil
}

// Decrypt decrypts ciphertext with PKCS #1 v1.5 padding (opts nil or
// *rsa.PKCS1v15DecryptOptions) or RSAES-OAEP (*rsa.OAEPOptions), as
// crypto/rsa does for larger keys. With SessionKeyLen set, a padding
// failure yields random bytes of that length instead of an error (RFC
// 3218 section 2.3.2), as rsa.DecryptPKCS1v15SessionKey does.
func (l *LegacyRSAKey) Decrypt(random io.Reader, ciphertext []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	switch o := opts.(type) {
	case nil:
		return l.decryptPKCS1v15(random, ciphertext, 0)
	case *rsa.PKCS1v15DecryptOptions:
		return l.decryptPKCS1v15(random, ciphertext, o.SessionKeyLen)
	case *rsa.OAEPOptions:
		return l.decryptOAEP(random, ciphertext, o)
	}
	return nil, fmt.Errorf("cms: unsupported RSA decryption options %T", opts)
}

var errLegacyDecrypt = errors.New("cms: RSA decryption error")

func (l *LegacyRSAKey) decryptPKCS1v15(random io.Reader, ciphertext []byte, sessionKeyLen int) ([]byte, error) {
	var session []byte
	if sessionKeyLen > 0 {
		// Drawn before the private operation, so that its cost does
		// not depend on whether the padding is good.
		session = make([]byte, sessionKeyLen)
		if _, err := io.ReadFull(random, session); err != nil {
			return nil, err
		}
	}
	em, err := l.decryptRaw(random, ciphertext)
	if err != nil {
		if session != nil {
			return session, nil
		}
		return nil, err
	}
	valid, index := unpadPKCS1v15(em)
	if session != nil {
		if sessionKeyLen > len(em)-11 {
			return session, nil
		}
		// Take the message only if the padding is good and it has the
		// expected length, without branching on either.
		ok := valid & subtle.ConstantTimeEq(int32(len(em)-index), int32(sessionKeyLen))
		src := em[len(em)-sessionKeyLen:]
		subtle.ConstantTimeCopy(ok, session, src)
		return session, nil
	}
	if valid == 0 {
		return nil, errLegacyDecrypt
	}
	return em[index:], nil
}

// unpadPKCS1v15 checks EME-PKCS1-v1_5 (RFC 8017 section 7.2.2):
// 0x00 0x02, at least eight non-zero padding bytes, 0x00, the message. It
// returns 1 and the message's index when the padding is good, in time
// that depends only on len(em).
func unpadPKCS1v15(em []byte) (valid int, index int) {
	if len(em) < 11 {
		return 0, 0
	}
	first := subtle.ConstantTimeByteEq(em[0], 0)
	second := subtle.ConstantTimeByteEq(em[1], 2)
	lookingForZero, zeroIndex := 1, 0
	for i := 2; i < len(em); i++ {
		isZero := subtle.ConstantTimeByteEq(em[i], 0)
		zeroIndex = subtle.ConstantTimeSelect(lookingForZero&isZero, i, zeroIndex)
		lookingForZero = subtle.ConstantTimeSelect(isZero, 0, lookingForZero)
	}
	// zeroIndex-2 padding bytes: at least 8, so zeroIndex >= 10.
	validPS := subtle.ConstantTimeLessOrEq(2+8, zeroIndex)
	valid = first & second & (^lookingForZero & 1) & validPS
	index = subtle.ConstantTimeSelect(valid, zeroIndex+1, 0)
	return valid, index
}

// decryptOAEP is EME-OAEP decoding (RFC 8017 section 7.1.2).
func (l *LegacyRSAKey) decryptOAEP(random io.Reader, ciphertext []byte, o *rsa.OAEPOptions) ([]byte, error) {
	mgfHash := o.MGFHash
	if mgfHash == 0 {
		mgfHash = o.Hash
	}
	if !o.Hash.Available() || !mgfHash.Available() {
		return nil, fmt.Errorf("cms: RSA-OAEP hash not available")
	}
	h, mh := o.Hash.New(), mgfHash.New()
	k := (l.priv.N.BitLen() + 7) / 8
	hLen := h.Size()
	if k < 2*hLen+2 {
		return nil, fmt.Errorf("cms: %d-bit RSA key is too small for RSA-OAEP with this hash", l.priv.N.BitLen())
	}
	em, err := l.decryptRaw(random, ciphertext)
	if err != nil {
		return nil, err
	}
	h.Write(o.Label)
	lHash := h.Sum(nil)

	firstByteIsZero := subtle.ConstantTimeByteEq(em[0], 0)
	seed, db := em[1:1+hLen], em[1+hLen:]
	mgf1XOR(seed, mh, db)
	mgf1XOR(db, mh, seed)
	lHash2Good := subtle.ConstantTimeCompare(lHash, db[:hLen])

	// db = lHash' || PS (zeros) || 0x01 || M
	lookingForIndex, index, invalid := 1, 0, 0
	rest := db[hLen:]
	for i := 0; i < len(rest); i++ {
		equals0 := subtle.ConstantTimeByteEq(rest[i], 0)
		equals1 := subtle.ConstantTimeByteEq(rest[i], 1)
		index = subtle.ConstantTimeSelect(lookingForIndex&equals1, i, index)
		lookingForIndex = subtle.ConstantTimeSelect(equals1, 0, lookingForIndex)
		invalid = subtle.ConstantTimeSelect(lookingForIndex&^equals0, 1, invalid)
	}
	if firstByteIsZero&lHash2Good&^invalid&^lookingForIndex != 1 {
		return nil, errLegacyDecrypt
	}
	return rest[index+1:], nil
}

// mgf1XOR XORs out with MGF1(seed) (RFC 8017 appendix B.2.1).
func mgf1XOR(out []byte, h hash.Hash, seed []byte) {
	var counter [4]byte
	done := 0
	for done < len(out) {
		h.Reset()
		h.Write(seed)
		h.Write(counter[:])
		digest := h.Sum(nil)
		for i := 0; i < len(digest) && done < len(out); i++ {
			out[done] ^= digest[i]
			done++
		}
		for i := 3; i >= 0; i-- {
			counter[i]++
			if counter[i] != 0 {
				break
			}
		}
	}
}
