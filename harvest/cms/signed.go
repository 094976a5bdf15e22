package cms

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Errors returned by SignedData.Verify, besides ErrMalformed and
// ErrUnsupported.
var (
	ErrDigestMismatch = errors.New("cms: message digest mismatch")
	ErrBadSignature   = errors.New("cms: signature does not verify")
	ErrBadAttributes  = errors.New("cms: bad signed attributes")
)

// SignedData is a parsed RFC 5652 section 5 SignedData.
type SignedData struct {
	EContentType asn1.ObjectIdentifier
	// EContent is the encapsulated content, nil when the signature is
	// detached (no eContent). Chunked OCTET STRINGs are joined.
	EContent []byte
	// Certificates holds every CertificateChoices.certificate that
	// x509.ParseCertificate accepts; BadCertificates counts the ones it
	// rejected. Attribute certificates and other choices are skipped.
	Certificates    []*x509.Certificate
	BadCertificates int
	// CRLs and OCSPResponses are the revocation information the signer
	// enclosed (RevocationInfoChoices, RFC 5652 10.2.1): CertificateLists,
	// and OCSPResponses as RFC 5940 section 3 encloses them
	// (id-ri-ocsp-response), as DER, unchecked. Other formats, and what
	// lies beyond MaxRevocationInfos or MaxRevocationInfoBytes, are
	// skipped: they are not needed to verify the signature.
	CRLs          [][]byte
	OCSPResponses [][]byte
	Signers       []*SignerInfo

	cache *sdDigestCache
}

// SignerInfo is one signer of a SignedData (RFC 5652 section 5.3).
type SignerInfo struct {
	ID         Identifier
	Digest     crypto.Hash // 0 if unknown or unsupported
	DigestName string      // "sha-256", "md5", ... or the OID string
	Algorithm  string      // "rsa-pkcs1v15", "rsa-pss", "ecdsa", "dsa", "ed25519", ... or the OID string

	HasSignedAttrs bool
	SigningTime    time.Time // zero when absent
	// SMIMECapabilities lists the sender's capabilities (RFC 8551 2.5.2)
	// in the sender's order, by name where known ("aes-256-cbc",
	// "aes-128-gcm", "des-ede3-cbc", "rc2-cbc", "rsaes-oaep", ...), else
	// as OID strings.
	SMIMECapabilities []string
	// EncryptionKeyPreference names the certificate the sender wants to be
	// encrypted to: RFC 8551 2.5.3 SMIMEEncryptionKeyPreference, or
	// Microsoft's 1.3.6.1.4.1.311.16.4. Nil when absent or unparsable.
	EncryptionKeyPreference *Identifier

	parseErr error // the SignerInfo itself is malformed
	attrErr  error // the signed attributes are malformed or incomplete

	digestOID   asn1.ObjectIdentifier
	sigAlgOID   asn1.ObjectIdentifier
	sigAlgParam asn1.RawValue // FullBytes nil when absent
	signature   []byte

	signedAttrs   []byte // exact received [0] IMPLICIT SET, with its tag
	attrCT        asn1.ObjectIdentifier
	messageDigest []byte
}

// ParseSignedData parses the SignedData inside ci, which must have type
// OIDSignedData. The structure must be well-formed; a SignerInfo whose
// inside is broken is still returned (with an empty ID) and Verify reports
// its error, so that other signers keep their own verdict. Broken signed
// attributes are likewise reported by Verify, as ErrBadAttributes.
func ParseSignedData(ci *ContentInfo) (*SignedData, error) {
	return ParseSignedDataWith(ci, x509.ParseCertificate)
}

// ParseSignedDataWith is ParseSignedData with parseCert reading each of the
// certificates, for example through a cache of parsed certificates; it is
// called with the DER of one certificate and must act as
// x509.ParseCertificate does.
func ParseSignedDataWith(ci *ContentInfo, parseCert func(der []byte) (*x509.Certificate, error)) (*SignedData, error) {
	if ci == nil || !ci.Type.Equal(OIDSignedData) {
		return nil, fmt.Errorf("%w: content is not signed-data", ErrMalformed)
	}
	seq, rest, err := sdNext(ci.Content)
	if err != nil {
		return nil, fmt.Errorf("%w: SignedData: %v", ErrMalformed, err)
	}
	if len(rest) != 0 || !sdIsUniversal(seq, asn1.TagSequence, true) {
		return nil, fmt.Errorf("%w: SignedData is not a single SEQUENCE", ErrMalformed)
	}
	body := seq.Bytes
	var v asn1.RawValue

	// version
	if v, body, err = sdNext(body); err != nil || !sdIsUniversal(v, asn1.TagInteger, false) {
		return nil, fmt.Errorf("%w: SignedData version", ErrMalformed)
	}
	// digestAlgorithms: only the SignerInfos' own digestAlgorithm counts.
	if v, body, err = sdNext(body); err != nil || !sdIsUniversal(v, asn1.TagSet, true) {
		return nil, fmt.Errorf("%w: SignedData digestAlgorithms", ErrMalformed)
	}

	sd := &SignedData{cache: new(sdDigestCache)}

	// encapContentInfo
	if v, body, err = sdNext(body); err != nil || !sdIsUniversal(v, asn1.TagSequence, true) {
		return nil, fmt.Errorf("%w: SignedData encapContentInfo", ErrMalformed)
	}
	if err := sd.parseEncap(v.Bytes); err != nil {
		return nil, err
	}

	// certificates [0] IMPLICIT, crls [1] IMPLICIT, then signerInfos SET.
	if v, body, err = sdNext(body); err != nil {
		return nil, fmt.Errorf("%w: SignedData: %v", ErrMalformed, err)
	}
	if v.Class == asn1.ClassContextSpecific && v.Tag == 0 {
		if !v.IsCompound {
			return nil, fmt.Errorf("%w: SignedData certificates not constructed", ErrMalformed)
		}
		if err := sd.parseCertificates(v.Bytes, parseCert); err != nil {
			return nil, err
		}
		if v, body, err = sdNext(body); err != nil {
			return nil, fmt.Errorf("%w: SignedData: %v", ErrMalformed, err)
		}
	}
	if v.Class == asn1.ClassContextSpecific && v.Tag == 1 {
		if !v.IsCompound {
			return nil, fmt.Errorf("%w: SignedData crls not constructed", ErrMalformed)
		}
		sd.parseRevocationInfo(v.Bytes)
		if v, body, err = sdNext(body); err != nil {
			return nil, fmt.Errorf("%w: SignedData: %v", ErrMalformed, err)
		}
	}
	if !sdIsUniversal(v, asn1.TagSet, true) {
		return nil, fmt.Errorf("%w: SignedData signerInfos is not a SET", ErrMalformed)
	}
	if len(body) != 0 {
		return nil, fmt.Errorf("%w: trailing data in SignedData", ErrMalformed)
	}
	infos := v.Bytes
	for len(infos) > 0 {
		if len(sd.Signers) == MaxSignerInfos {
			return nil, fmt.Errorf("%w: more than %d SignerInfos", ErrTooMany, MaxSignerInfos)
		}
		var s asn1.RawValue
		if s, infos, err = sdNext(infos); err != nil {
			return nil, fmt.Errorf("%w: signerInfos: %v", ErrMalformed, err)
		}
		sd.Signers = append(sd.Signers, sdParseSignerInfo(s))
	}
	return sd, nil
}

func (sd *SignedData) parseEncap(b []byte) error {
	v, rest, err := sdNext(b)
	if err != nil || !sdIsUniversal(v, asn1.TagOID, false) {
		return fmt.Errorf("%w: eContentType", ErrMalformed)
	}
	if _, err := asn1.Unmarshal(v.FullBytes, &sd.EContentType); err != nil {
		return fmt.Errorf("%w: eContentType: %v", ErrMalformed, err)
	}
	if len(rest) == 0 {
		return nil // detached
	}
	if v, rest, err = sdNext(rest); err != nil {
		return fmt.Errorf("%w: eContent: %v", ErrMalformed, err)
	}
	if len(rest) != 0 || v.Class != asn1.ClassContextSpecific || v.Tag != 0 || !v.IsCompound {
		return fmt.Errorf("%w: eContent is not [0] EXPLICIT", ErrMalformed)
	}
	inner, rest, err := sdNext(v.Bytes)
	if err != nil || len(rest) != 0 {
		return fmt.Errorf("%w: eContent", ErrMalformed)
	}
	if inner.Class != asn1.ClassUniversal || inner.Tag != asn1.TagOctetString {
		// PKCS #7 v1.5 allowed "content ANY" for non-data types.
		return fmt.Errorf("%w: eContent is not an OCTET STRING (PKCS #7 ANY content)", ErrUnsupported)
	}
	content := inner.Bytes
	if inner.IsCompound {
		if content, err = JoinImplicitOctets(inner.FullBytes); err != nil {
			return err
		}
	}
	if content == nil {
		content = []byte{} // present but empty: not detached
	}
	sd.EContent = content
	return nil
}

func (sd *SignedData) parseCertificates(b []byte, parseCert func([]byte) (*x509.Certificate, error)) error {
	if len(b) > MaxCertificateBytes {
		return fmt.Errorf("%w: certificates of %d bytes (limit %d)", ErrTooMany, len(b), MaxCertificateBytes)
	}
	for n := 0; len(b) > 0; n++ {
		if n == MaxCertificates {
			return fmt.Errorf("%w: more than %d certificates", ErrTooMany, MaxCertificates)
		}
		v, rest, err := sdNext(b)
		if err != nil {
			return fmt.Errorf("%w: certificates: %v", ErrMalformed, err)
		}
		b = rest
		switch {
		case v.Class == asn1.ClassContextSpecific && v.Tag <= 3:
			// extendedCertificate, v1/v2 attribute certificate, other.
		case sdIsUniversal(v, asn1.TagSequence, true):
			c, err := parseCert(v.FullBytes)
			if err != nil {
				sd.BadCertificates++
				continue
			}
			sd.Certificates = append(sd.Certificates, c)
		default:
			sd.BadCertificates++
		}
	}
	return nil
}

// OIDOCSPResponse is id-ri-ocsp-response (RFC 5940 section 3), the
// OtherRevocationInfoFormat of an enclosed OCSPResponse.
var OIDOCSPResponse = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 16, 2}

// parseRevocationInfo reads the RevocationInfoChoices in b: a
// CertificateList is a SEQUENCE, other [1] IMPLICIT
// OtherRevocationInfoFormat { OID, ANY }. A choice that does not parse is
// skipped.
func (sd *SignedData) parseRevocationInfo(b []byte) {
	if len(b) > MaxRevocationInfoBytes {
		return
	}
	for n := 0; len(b) > 0 && n < MaxRevocationInfos; n++ {
		v, rest, err := sdNext(b)
		if err != nil {
			return
		}
		b = rest
		switch {
		case sdIsUniversal(v, asn1.TagSequence, true):
			sd.CRLs = append(sd.CRLs, v.FullBytes)
		case v.Class == asn1.ClassContextSpecific && v.Tag == 1 && v.IsCompound:
			oid, inner, err := sdNext(v.Bytes)
			if err != nil || !sdIsUniversal(oid, asn1.TagOID, false) {
				continue
			}
			var format asn1.ObjectIdentifier
			if _, err := asn1.Unmarshal(oid.FullBytes, &format); err != nil || !format.Equal(OIDOCSPResponse) {
				continue
			}
			if resp, rest, err := sdNext(inner); err == nil && len(rest) == 0 && sdIsUniversal(resp, asn1.TagSequence, true) {
				sd.OCSPResponses = append(sd.OCSPResponses, resp.FullBytes)
			}
		}
	}
}

func sdParseSignerInfo(s asn1.RawValue) *SignerInfo {
	si := &SignerInfo{}
	if err := si.parse(s); err != nil {
		si.parseErr = err
	}
	return si
}

func (si *SignerInfo) parse(s asn1.RawValue) error {
	if !sdIsUniversal(s, asn1.TagSequence, true) {
		return fmt.Errorf("%w: SignerInfo is not a SEQUENCE", ErrMalformed)
	}
	b := s.Bytes
	v, b, err := sdNext(b)
	if err != nil || !sdIsUniversal(v, asn1.TagInteger, false) {
		return fmt.Errorf("%w: SignerInfo version", ErrMalformed)
	}
	if v, b, err = sdNext(b); err != nil {
		return fmt.Errorf("%w: SignerInfo sid: %v", ErrMalformed, err)
	}
	if si.ID, err = parseIdentifier(v.FullBytes); err != nil {
		return err
	}
	var alg sdAlgorithm
	if alg, b, err = sdNextAlgorithm(b); err != nil {
		return fmt.Errorf("%w: SignerInfo digestAlgorithm: %v", ErrMalformed, err)
	}
	si.digestOID = alg.oid
	si.Digest, si.DigestName = sdDigestByOID(alg.oid)

	if v, b, err = sdNext(b); err != nil {
		return fmt.Errorf("%w: SignerInfo: %v", ErrMalformed, err)
	}
	if v.Class == asn1.ClassContextSpecific && v.Tag == 0 {
		if !v.IsCompound {
			return fmt.Errorf("%w: signedAttrs not constructed", ErrMalformed)
		}
		si.HasSignedAttrs = true
		si.signedAttrs = v.FullBytes
		si.readSignedAttrs(v.Bytes)
		if v, b, err = sdNext(b); err != nil {
			return fmt.Errorf("%w: SignerInfo: %v", ErrMalformed, err)
		}
	}
	if alg, err = sdParseAlgorithm(v); err != nil {
		return fmt.Errorf("%w: SignerInfo signatureAlgorithm: %v", ErrMalformed, err)
	}
	si.sigAlgOID, si.sigAlgParam = alg.oid, alg.params
	si.Algorithm = sdSigAlgName(alg.oid)

	if v, b, err = sdNext(b); err != nil || v.Class != asn1.ClassUniversal || v.Tag != asn1.TagOctetString {
		return fmt.Errorf("%w: SignerInfo signature", ErrMalformed)
	}
	si.signature = v.Bytes
	if v.IsCompound {
		if si.signature, err = JoinImplicitOctets(v.FullBytes); err != nil {
			return err
		}
	}
	if len(b) > 0 {
		if v, b, err = sdNext(b); err != nil || v.Class != asn1.ClassContextSpecific || v.Tag != 1 || !v.IsCompound {
			return fmt.Errorf("%w: SignerInfo unsignedAttrs", ErrMalformed)
		}
		si.checkUnsignedAttrs(v.Bytes)
	}
	if len(b) != 0 {
		return fmt.Errorf("%w: trailing data in SignerInfo", ErrMalformed)
	}
	return nil
}

// FindCertificate returns the signer's certificate from sd.Certificates,
// else from extra (e.g. the certificate store), else nil.
func (sd *SignedData) FindCertificate(si *SignerInfo, extra []*x509.Certificate) *x509.Certificate {
	if si == nil || si.parseErr != nil {
		return nil
	}
	for _, c := range sd.Certificates {
		if si.ID.Matches(c) {
			return c
		}
	}
	for _, c := range extra {
		if si.ID.Matches(c) {
			return c
		}
	}
	return nil
}

// Verify checks one signer: its signed attributes, the message digest of
// content and the signature with cert's public key. content is the
// detached content (for multipart/signed, the exact raw first part) or
// sd.EContent; it is used as given (nil is empty content, not EContent, so
// that an embedded eContent never stands in for a MIME body the caller
// failed to find). Verify does not check that
// cert is the one si names, nor anything about the certificate itself
// (validity, chain, key usage): that is the caller's job.
//
// Errors: ErrMalformed (broken SignerInfo), ErrBadAttributes,
// ErrUnsupported (md5/md4 digest, DSA, unknown algorithms, RSA keys below
// 1024 bits), ErrKeyRefused (a signer key outside the limits of
// CheckPublicKey, refused before any arithmetic), ErrDigestMismatch,
// ErrBadSignature. Each call is
// independent of the other signers' results.
//
// Content digests are cached per (content buffer, length) and computed for
// all signers in one pass, so content must not be modified in place between
// Verify calls on the same SignedData.
func (sd *SignedData) Verify(si *SignerInfo, cert *x509.Certificate, content []byte) error {
	if si == nil {
		return errors.New("cms: no signer")
	}
	if si.parseErr != nil {
		return si.parseErr
	}
	if si.attrErr != nil {
		return si.attrErr
	}
	if si.HasSignedAttrs {
		if !si.attrCT.Equal(sd.EContentType) {
			return fmt.Errorf("%w: contentType attribute %s differs from eContentType %s",
				ErrBadAttributes, si.attrCT, sd.EContentType)
		}
	} else if !sd.EContentType.Equal(OIDData) {
		return fmt.Errorf("%w: no signed attributes with eContentType %s", ErrBadAttributes, sd.EContentType)
	}
	if si.Digest == 0 || !si.Digest.Available() {
		return fmt.Errorf("%w: digest algorithm %s", ErrUnsupported, si.DigestName)
	}
	sig, err := sdParseSigAlg(si)
	if err != nil {
		return err
	}
	if cert == nil {
		return fmt.Errorf("cms: no certificate for signer %s", si.ID)
	}

	digest := sd.contentDigest(si.Digest, content)
	if !si.HasSignedAttrs {
		return sig.verify(cert, si.Digest, digest, si.signature)
	}
	if !bytes.Equal(digest, si.messageDigest) {
		return ErrDigestMismatch
	}
	// The signature covers the DER of the attributes with the [0] IMPLICIT
	// tag replaced by SET OF, over the exact received bytes.
	h := si.Digest.New()
	h.Write([]byte{0x31})
	h.Write(si.signedAttrs[1:])
	return sig.verify(cert, si.Digest, h.Sum(nil), si.signature)
}

// sdDigestCache remembers the content digests of the last content buffer
// seen, for all digest algorithms the signers use.
type sdDigestCache struct {
	mu   sync.Mutex
	ptr  *byte
	n    int
	sums map[crypto.Hash][]byte
}

func (sd *SignedData) contentDigest(h crypto.Hash, content []byte) []byte {
	if sd.cache == nil {
		d := h.New()
		d.Write(content)
		return d.Sum(nil)
	}
	c := sd.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	var ptr *byte
	if len(content) > 0 {
		ptr = &content[0]
	}
	if c.sums == nil || c.ptr != ptr || c.n != len(content) {
		c.ptr, c.n, c.sums = ptr, len(content), map[crypto.Hash][]byte{}
	}
	if sum, ok := c.sums[h]; ok {
		return sum
	}
	// Hash the content once for every algorithm still missing.
	want := []crypto.Hash{h}
	for _, s := range sd.Signers {
		if s.Digest != 0 && s.Digest.Available() && s.Digest != h {
			if _, ok := c.sums[s.Digest]; !ok {
				dup := false
				for _, w := range want {
					dup = dup || w == s.Digest
				}
				if !dup {
					want = append(want, s.Digest)
				}
			}
		}
	}
	ws := make([]io.Writer, len(want))
	hs := make([]interface{ Sum([]byte) []byte }, len(want))
	for i, w := range want {
		d := w.New()
		ws[i], hs[i] = d, d
	}
	io.MultiWriter(ws...).Write(content)
	for i, w := range want {
		c.sums[w] = hs[i].Sum(nil)
	}
	return c.sums[h]
}

// sdNext reads one DER value off b.
func sdNext(b []byte) (asn1.RawValue, []byte, error) {
	var v asn1.RawValue
	rest, err := asn1.Unmarshal(b, &v)
	return v, rest, err
}

func sdIsUniversal(v asn1.RawValue, tag int, compound bool) bool {
	return v.Class == asn1.ClassUniversal && v.Tag == tag && v.IsCompound == compound
}
