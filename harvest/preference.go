package harvest

// Which stored certificate the organisation encrypts to: whether a
// certificate can be encrypted to at all, and which of an address's
// certificates is preferred (the store's layout comment, store.go, says
// how choices are recorded).

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"time"
)

// canEncrypt reports whether c's key and KeyUsage allow encrypting to it.
func canEncrypt(c *x509.Certificate) bool { return encryptProblem(c) == "" }

// MinEncryptionRSABits is the smallest RSA key mail is encrypted to.
const MinEncryptionRSABits = 2048

// encryptProblem says why mail cannot be encrypted to c ("" when it can):
// a key of a kind the gateway encrypts to (RSA of at least
// MinEncryptionRSABits, by key transport; EC on P-256, P-384 or P-521, by
// ECDH key agreement, RFC 5753), a KeyUsage, when present, that allows
// that (keyEncipherment for RSA, keyAgreement for EC; RFC 8550 section
// 4.4.2), and an extended key usage, when present, that allows email
// protection.
func encryptProblem(c *x509.Certificate) string {
	var bit x509.KeyUsage
	var name string
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < MinEncryptionRSABits {
			return fmt.Sprintf("its RSA key has %d bits (at least %d are needed)", k.N.BitLen(), MinEncryptionRSABits)
		}
		bit, name = x509.KeyUsageKeyEncipherment, "keyEncipherment"
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return fmt.Sprintf("its EC key is on an unsupported curve (%s)", k.Curve.Params().Name)
		}
		bit, name = x509.KeyUsageKeyAgreement, "keyAgreement"
	default:
		return fmt.Sprintf("its key (%T) is neither RSA nor EC on a NIST curve", c.PublicKey)
	}
	if c.KeyUsage != 0 && c.KeyUsage&bit == 0 {
		return "its key usage does not include " + name
	}
	if len(c.ExtKeyUsage) > 0 || len(c.UnknownExtKeyUsage) > 0 {
		ok := false
		for _, u := range c.ExtKeyUsage {
			ok = ok || u == x509.ExtKeyUsageEmailProtection || u == x509.ExtKeyUsageAny
		}
		if !ok {
			return "its extended key usage does not allow email protection"
		}
	}
	return ""
}

// EncryptionProblem says why mail cannot be encrypted to c at now ("" when
// it can): the key, KeyUsage and extended key usage as the certificate
// store requires them of a recipient, and the validity period. For
// checking configured certificates (escrow, encryption preference).
func EncryptionProblem(c *x509.Certificate, now time.Time) string {
	if c == nil {
		return "no certificate"
	}
	if p := encryptProblem(c); p != "" {
		return p
	}
	switch {
	case now.Before(c.NotBefore):
		return "it is not valid before " + c.NotBefore.UTC().Format(time.RFC3339)
	case !now.Before(c.NotAfter):
		return "it expired on " + c.NotAfter.UTC().Format(time.RFC3339)
	}
	return ""
}

// preferred picks the address's encryption certificate: among the usable
// certificates that are valid now and whose key and KeyUsage allow
// encryption, the one chosen last (see the layout comment; records
// written before "chosen" existed count the sender's named preference as
// chosen when it was named). Certificates never chosen come after every
// chosen one, the most recently first seen first; expiry never decides.
func preferred(rec *addressRecord, certs map[string]*x509.Certificate, now time.Time) string {
	usable := func(fp string) bool {
		cr, ok := rec.Certs[fp]
		c := certs[fp]
		return ok && !cr.Quarantined && !cr.revokedBy(now) && c != nil && canEncrypt(c) &&
			!now.Before(c.NotBefore) && now.Before(c.NotAfter)
	}
	chosen := func(fp string) time.Time {
		if t := rec.Certs[fp].Chosen; !t.IsZero() {
			return t
		}
		if fp == rec.PreferredEncryption {
			return rec.PreferredSeen
		}
		return time.Time{}
	}
	before := func(a, b string) bool { // a ranks before b
		ca, cb := chosen(a), chosen(b)
		if !ca.Equal(cb) {
			return ca.After(cb)
		}
		fa, fb := rec.Certs[a].FirstSeen, rec.Certs[b].FirstSeen
		if !fa.Equal(fb) {
			return fa.After(fb)
		}
		return a < b
	}
	best := ""
	for fp := range rec.Certs {
		if usable(fp) && (best == "" || before(fp, best)) {
			best = fp
		}
	}
	return best
}

// newer orders certificates by not_after, then not_before, then
// fingerprint, latest first.
func newer(a *x509.Certificate, afp string, b *x509.Certificate, bfp string) bool {
	if !a.NotAfter.Equal(b.NotAfter) {
		return a.NotAfter.After(b.NotAfter)
	}
	if !a.NotBefore.Equal(b.NotBefore) {
		return a.NotBefore.After(b.NotBefore)
	}
	return afp < bfp
}
