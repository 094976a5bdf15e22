package cms

// Writing SignedData (RFC 5652 section 5) for outgoing mail: one signer,
// detached content (multipart/signed, RFC 8551 section 3.5), SHA-256,
// signed attributes as RFC 8551 section 2.5 lists them. The signer key is
// any crypto.Signer (software key or HSM): RSA PKCS #1 v1.5, RSASSA-PSS
// (RFC 4056) or ECDSA (RFC 5753).

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ErrCannotSign is returned when a key or certificate is not fit to sign
// mail (CanSign).
var ErrCannotSign = errors.New("cms: cannot sign with this certificate")

// SignParams is what SignDetached needs besides the content's digest.
type SignParams struct {
	Cert  *x509.Certificate   // the signer's certificate
	Chain []*x509.Certificate // intermediates to include (the root only if the caller wants it)
	Key   crypto.Signer       // the private key of Cert
	// PSS signs an RSA key with RSASSA-PSS (SHA-256, MGF1-SHA-256, salt
	// 32) instead of PKCS #1 v1.5.
	PSS bool
	// SigningTime is the signingTime attribute (UTC); zero means now.
	SigningTime time.Time
	// EncryptionCert is the certificate others should encrypt to
	// (SMIMEEncryptionKeyPreference and Microsoft's attribute); nil names
	// Cert itself when it can encrypt, else no preference is sent.
	EncryptionCert *x509.Certificate
	// Capabilities are the SMIMECapabilities to announce, strongest first;
	// nil means DefaultCapabilities.
	Capabilities []Capability
}

// Capability is one SMIMECapability (RFC 8551 section 2.5.2).
type Capability struct {
	OID    asn1.ObjectIdentifier
	Params []byte // DER of the parameters; nil when absent
}

// OIDs of the algorithms this package writes.
var (
	OIDAES256CBC = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	OIDAES192CBC = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	OIDAES128CBC = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	OIDAES256GCM = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 46}
	OIDAES128GCM = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 6}
	OIDRSAESOAEP = envOIDRSAESOAEP

	oidSHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDHSHA256KDF   = asn1.ObjectIdentifier{1, 3, 132, 1, 11, 1} // dhSinglePass-stdDH-sha256kdf-scheme
)

// DefaultCapabilities is what smimed can decrypt, strongest first: the
// content ciphers of ciphers.go (AES-GCM before AES-CBC, 256 before 128),
// then RSAES-OAEP with SHA-256 (RFC 8551 2.5.2 lists key transport
// algorithms after the ciphers), then ECDH with the SHA-256 KDF and AES-256
// key wrap. Triple-DES is left out: a sender should not pick it for us.
func DefaultCapabilities() []Capability {
	wrap := algID(envOIDAES256Wrap, nil)
	return []Capability{
		{OID: OIDAES256GCM},
		{OID: OIDAES128GCM},
		{OID: OIDAES256CBC},
		{OID: OIDAES192CBC},
		{OID: OIDAES128CBC},
		{OID: OIDRSAESOAEP, Params: oaepSHA256Params()},
		{OID: oidECDHSHA256KDF, Params: wrap},
	}
}

// CanSign checks that cert, with a key of key's type, may sign mail: a
// supported key (CheckCertificateKey; RSA of at least 2048 bits), KeyUsage (when present) with
// digitalSignature or nonRepudiation, ExtKeyUsage (when present) with
// emailProtection or any, and the key pair matching the certificate.
func CanSign(cert *x509.Certificate, key crypto.Signer) error {
	if cert == nil {
		return fmt.Errorf("%w: no certificate", ErrCannotSign)
	}
	if key == nil {
		return fmt.Errorf("%w: no private key", ErrCannotSign)
	}
	if err := CheckCertificateKey(cert); err != nil {
		return fmt.Errorf("%w: %v", ErrCannotSign, err)
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if e, ok := key.Public().(equaler); !ok || !e.Equal(cert.PublicKey) {
		return fmt.Errorf("%w: the private key does not belong to the certificate", ErrCannotSign)
	}
	switch k := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("%w: %d-bit RSA key (at least 2048 bits, RFC 8551 section 4.1)", ErrCannotSign, k.N.BitLen())
		}
	case *ecdsa.PublicKey:
	default:
		return fmt.Errorf("%w: %s keys are not supported", ErrCannotSign, cert.PublicKeyAlgorithm)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		return fmt.Errorf("%w: key usage has neither digitalSignature nor nonRepudiation", ErrCannotSign)
	}
	if !emailEKU(cert) {
		return fmt.Errorf("%w: extended key usage does not allow emailProtection", ErrCannotSign)
	}
	return nil
}

// emailEKU reports whether cert's extended key usage, when present, allows
// emailProtection.
func emailEKU(cert *x509.Certificate) bool {
	if len(cert.ExtKeyUsage) == 0 && len(cert.UnknownExtKeyUsage) == 0 {
		return true
	}
	for _, u := range cert.ExtKeyUsage {
		if u == x509.ExtKeyUsageEmailProtection || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

// SignDetached returns a DER ContentInfo holding a SignedData over
// content whose SHA-256 digest is digest, without the content (detached),
// signed by p.Key with the signed attributes contentType (id-data),
// messageDigest, signingTime, SMIMECapabilities and, when there is an
// encryption certificate, SMIMEEncryptionKeyPreference and Microsoft's
// encryption key preference. The certificates are p.Cert and p.Chain.
func SignDetached(digest []byte, p SignParams) ([]byte, error) {
	if len(digest) != sha256.Size {
		return nil, fmt.Errorf("cms: sign: digest is %d bytes, SHA-256 needs %d", len(digest), sha256.Size)
	}
	if err := CanSign(p.Cert, p.Key); err != nil {
		return nil, err
	}
	_, isRSA := p.Cert.PublicKey.(*rsa.PublicKey)
	if p.PSS && !isRSA {
		return nil, fmt.Errorf("%w: RSASSA-PSS needs an RSA key", ErrCannotSign)
	}
	now := p.SigningTime
	if now.IsZero() {
		now = time.Now()
	}
	enc := p.EncryptionCert
	if enc == nil && CanEncryptTo(p.Cert) == nil {
		enc = p.Cert
	}
	caps := p.Capabilities
	if caps == nil {
		caps = DefaultCapabilities()
	}
	attrs, err := signedAttributes(digest, now, caps, enc)
	if err != nil {
		return nil, err
	}

	// The signature is over the DER of the attributes as a SET OF.
	h := sha256.Sum256(attrs)
	var sigAlg []byte
	var opts crypto.SignerOpts = crypto.SHA256
	switch {
	case p.PSS:
		sigAlg = algID(sdOIDRSAPSS, pssSHA256Params())
		opts = &rsa.PSSOptions{SaltLength: sha256.Size, Hash: crypto.SHA256}
	case isRSA:
		sigAlg = algID(oidSHA256WithRSA, []byte{0x05, 0x00})
	default:
		sigAlg = algID(oidECDSAWithSHA256, nil)
	}
	sig, err := p.Key.Sign(rand.Reader, h[:], opts)
	if err != nil {
		return nil, fmt.Errorf("cms: sign: %w", err)
	}

	certs := [][]byte{p.Cert.Raw}
	for _, c := range p.Chain {
		if c != nil && !c.Equal(p.Cert) {
			certs = append(certs, c.Raw)
		}
	}
	digestAlg := algID(sdOIDSHA256, nil)
	var b cryptobyte.Builder
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) { // ContentInfo
		b.AddASN1ObjectIdentifier(OIDSignedData)
		b.AddASN1(envTagCons0, func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) { // SignedData
				b.AddASN1Int64(1)
				b.AddASN1(casn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(digestAlg) })
				b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(OIDData) })
				b.AddASN1(envTagCons0, func(b *cryptobyte.Builder) { // certificates, a DER SET OF
					set := derSetOf(certs)
					b.AddBytes(set[2+lenOfLen(set):])
				})
				b.AddASN1(casn1.SET, func(b *cryptobyte.Builder) { // signerInfos
					b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1Int64(1)
						b.AddBytes(issuerAndSerialDER(p.Cert))
						b.AddBytes(digestAlg)
						b.AddASN1(envTagCons0, func(b *cryptobyte.Builder) { b.AddBytes(attrs[2+lenOfLen(attrs):]) })
						b.AddBytes(sigAlg)
						b.AddASN1OctetString(sig)
					})
				})
			})
		})
	})
	return b.Bytes()
}

// signedAttributes returns the DER SET OF Attribute, sorted as DER wants.
func signedAttributes(digest []byte, now time.Time, caps []Capability, enc *x509.Certificate) ([]byte, error) {
	var list [][]byte
	add := func(oid asn1.ObjectIdentifier, value func(*cryptobyte.Builder)) error {
		var b cryptobyte.Builder
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
			b.AddASN1(casn1.SET, value)
		})
		der, err := b.Bytes()
		if err != nil {
			return fmt.Errorf("cms: sign: attribute %s: %w", oid, err)
		}
		list = append(list, der)
		return nil
	}
	steps := []struct {
		oid asn1.ObjectIdentifier
		val func(*cryptobyte.Builder)
	}{
		{sdOIDAttrContentType, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(OIDData) }},
		{sdOIDAttrMessageDigest, func(b *cryptobyte.Builder) { b.AddASN1OctetString(digest) }},
		{sdOIDAttrSigningTime, func(b *cryptobyte.Builder) { addTime(b, now) }},
		{sdOIDAttrSMIMECaps, func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, c := range caps {
					b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(c.OID)
						b.AddBytes(c.Params)
					})
				}
			})
		}},
	}
	if enc != nil {
		ias := issuerAndSerialDER(enc)
		steps = append(steps,
			struct {
				oid asn1.ObjectIdentifier
				val func(*cryptobyte.Builder)
			}{sdOIDAttrEncKeyPref, func(b *cryptobyte.Builder) {
				// issuerAndSerialNumber [0] IMPLICIT IssuerAndSerialNumber
				b.AddASN1(envTagCons0, func(b *cryptobyte.Builder) { b.AddBytes(ias[2+lenOfLen(ias):]) })
			}},
			struct {
				oid asn1.ObjectIdentifier
				val func(*cryptobyte.Builder)
			}{sdOIDAttrMSEncKeyPref, func(b *cryptobyte.Builder) { b.AddBytes(ias) }})
	}
	for _, s := range steps {
		if err := add(s.oid, s.val); err != nil {
			return nil, err
		}
	}
	return derSetOf(list), nil
}

// addTime writes a Time: UTCTime for 1950 to 2049, else GeneralizedTime
// (RFC 5652 section 11.3).
func addTime(b *cryptobyte.Builder, t time.Time) {
	t = t.UTC().Truncate(time.Second)
	if y := t.Year(); y >= 1950 && y < 2050 {
		b.AddASN1(casn1.UTCTime, func(b *cryptobyte.Builder) { b.AddBytes([]byte(t.Format("060102150405Z"))) })
		return
	}
	b.AddASN1GeneralizedTime(t)
}

// derSetOf encodes a SET OF from the DER of its elements, sorted by their
// encodings as X.690 section 11.6 requires.
func derSetOf(elems [][]byte) []byte {
	sorted := slices.Clone(elems)
	slices.SortFunc(sorted, derCompare)
	var b cryptobyte.Builder
	b.AddASN1(casn1.SET, func(b *cryptobyte.Builder) {
		for _, e := range sorted {
			b.AddBytes(e)
		}
	})
	return b.BytesOrPanic()
}

// derCompare orders encodings as octet strings, the shorter one padded
// with zero octets at its end.
func derCompare(a, b []byte) int {
	n := min(len(a), len(b))
	if c := bytes.Compare(a[:n], b[:n]); c != 0 {
		return c
	}
	rest, sign := b[n:], -1
	if len(a) > len(b) {
		rest, sign = a[n:], 1
	}
	for _, x := range rest {
		if x != 0 {
			return sign
		}
	}
	return 0
}

// lenOfLen is the number of length octets after the first length octet of
// the DER value der (0 for the short form).
func lenOfLen(der []byte) int {
	if der[1] < 0x80 {
		return 0
	}
	return int(der[1] & 0x7f)
}

// algID encodes an AlgorithmIdentifier; params is the DER of the
// parameters, nil for absent.
func algID(oid asn1.ObjectIdentifier, params []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		b.AddBytes(params)
	})
	return b.BytesOrPanic()
}

// issuerAndSerialDER encodes the IssuerAndSerialNumber naming c.
func issuerAndSerialDER(c *x509.Certificate) []byte {
	var b cryptobyte.Builder
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(c.RawIssuer)
		b.AddASN1BigInt(c.SerialNumber)
	})
	return b.BytesOrPanic()
}

// sha256NullID is the SHA-256 AlgorithmIdentifier with NULL parameters, as
// RFC 4055 section 2.1 writes it inside RSASSA-PSS and RSAES-OAEP
// parameters.
func sha256NullID() []byte { return algID(sdOIDSHA256, []byte{0x05, 0x00}) }

// mgf1SHA256 is the MGF1 AlgorithmIdentifier with SHA-256.
func mgf1SHA256() []byte { return algID(sdOIDMGF1, sha256NullID()) }

// pssSHA256Params encodes RSASSA-PSS-params (RFC 4055 section 3.1) for
// SHA-256, MGF1-SHA-256, a 32-byte salt and the default trailer, every
// field but the trailer explicit.
func pssSHA256Params() []byte {
	var b cryptobyte.Builder
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(envTagCons0, func(b *cryptobyte.Builder) { b.AddBytes(sha256NullID()) })
		b.AddASN1(envTagCons1, func(b *cryptobyte.Builder) { b.AddBytes(mgf1SHA256()) })
		b.AddASN1(envTagCons2, func(b *cryptobyte.Builder) { b.AddASN1Int64(sha256.Size) })
	})
	return b.BytesOrPanic()
}

// oaepSHA256Params encodes RSAES-OAEP-params (RFC 4055 section 4.1) for
// SHA-256 and MGF1-SHA-256 with the empty label (the default pSourceFunc,
// so left out as DER requires).
func oaepSHA256Params() []byte {
	var b cryptobyte.Builder
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(envTagCons0, func(b *cryptobyte.Builder) { b.AddBytes(sha256NullID()) })
		b.AddASN1(envTagCons1, func(b *cryptobyte.Builder) { b.AddBytes(mgf1SHA256()) })
	})
	return b.BytesOrPanic()
}

// CapabilityNames gives the names ParseSignedData reports for caps
// (SignerInfo.SMIMECapabilities), e.g. DefaultCapabilities as a partner
// sees them.
func CapabilityNames(caps []Capability) []string {
	out := make([]string, len(caps))
	for i, c := range caps {
		out[i] = sdCapName(c.OID)
	}
	return out
}
