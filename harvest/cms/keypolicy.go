package cms

// Keys from a message are refused before any arithmetic when no real CA or
// mail user has them: a 65,536-bit RSA key with an exponent near 2^31
// costs about 160 ms per signature check on the machines smimed runs on,
// and chain building tries every certificate named like the issuer
// (issue 9, item 4). The limits are the "Limits" section of docs/security.md.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
)

const (
	// MaxRSABits is the largest RSA modulus accepted from a message.
	MaxRSABits = 8192
	// MaxRSAExponent is the largest RSA public exponent accepted from a
	// message; it must also be odd and at least 3.
	MaxRSAExponent = 1<<32 - 1
)

// ErrKeyRefused is returned for a public key outside the limits above, or
// an elliptic curve other than P-256, P-384 and P-521. It wraps
// ErrUnsupported.
var ErrKeyRefused = fmt.Errorf("%w: key refused", ErrUnsupported)

// CheckPublicKey refuses keys no real CA or mail user has, by their size
// alone: RSA moduli over MaxRSABits, RSA exponents that are even, below 3
// or above MaxRSAExponent, elliptic curves other than P-256, P-384 and
// P-521. Other key types pass (see below).
func CheckPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N == nil {
			return fmt.Errorf("%w: RSA key without modulus", ErrKeyRefused)
		}
		if n := k.N.BitLen(); n > MaxRSABits {
			return fmt.Errorf("%w: RSA modulus of %d bits (limit %d)", ErrKeyRefused, n, MaxRSABits)
		}
		if k.E < 3 || k.E%2 == 0 || int64(k.E) > MaxRSAExponent {
			return fmt.Errorf("%w: RSA public exponent %d (an odd number from 3 to 2^32-1 is expected)", ErrKeyRefused, k.E)
		}
		return nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		name := "unknown"
		if k.Curve != nil {
			name = k.Curve.Params().Name
		}
		return fmt.Errorf("%w: elliptic curve %s (only P-256, P-384 and P-521)", ErrKeyRefused, name)
	case nil:
		return fmt.Errorf("%w: no public key", ErrKeyRefused)
	}
	// Ed25519 costs the same for every key; DSA and unknown algorithms
	// are refused by the signature checks themselves, without arithmetic.
	return nil
}

// CheckCertificateKey applies CheckPublicKey to a certificate's key,
// including the RSASSA-PSS keys crypto/x509 leaves unparsed.
func CheckCertificateKey(c *x509.Certificate) error {
	if c == nil {
		return fmt.Errorf("%w: no certificate", ErrKeyRefused)
	}
	if c.PublicKey == nil {
		if pub := sdRSAPublicKey(c); pub != nil {
			return CheckPublicKey(pub)
		}
		return nil // no key crypto/x509 can use: nothing to compute with
	}
	return CheckPublicKey(c.PublicKey)
}
