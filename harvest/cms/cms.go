// Package cms reads the parts of the Cryptographic Message Syntax that
// S/MIME mail uses: ContentInfo, SignedData (RFC 5652 section 5),
// EnvelopedData (RFC 5652 section 6, with RSA key transport and the ECDH key
// agreement of RFC 5753) and AuthEnvelopedData (RFC 5083, AES-GCM per RFC
// 5084). It is written with encoding/asn1 and the standard library's crypto
// because github.com/smallstep/pkcs7 lacks AuthEnvelopedData, AES-192,
// KeyAgreeRecipientInfo, subjectKeyIdentifier identifiers, RSA-PSS and
// SHA-224, and panics on bad CBC padding.
//
// All input is treated as hostile: every length is checked, nesting is
// bounded, and errors wrap ErrMalformed, ErrUnsupported or a more specific
// sentinel.
package cms

import (
	"encoding/asn1"
	"errors"
	"fmt"
)

// ErrUnsupported is returned for valid CMS that uses an algorithm or
// structure this package does not implement.
var ErrUnsupported = errors.New("cms: unsupported")

// Bounds on what is parsed out of one CMS object, so that memory stays
// proportional to the input whatever it holds (issue 9, item 5: a million
// two-byte RecipientInfos cost 858 MB). No real message comes near them;
// beyond them the object is refused with ErrTooMany.
const (
	MaxRecipientInfos = 1024 // RecipientInfos (counting each key of a kari)
	MaxCertificates   = 256  // SignedData certificates
	// MaxCertificateBytes bounds the DER of a SignedData's certificates
	// together: crypto/x509 allocates up to 15 times a certificate's
	// size (a certificate of tiny SAN entries).
	MaxCertificateBytes = 256 << 10
	MaxSignerInfos      = 64 // SignedData signerInfos
	MaxAttributes       = 64 // attributes in one signed or unsigned set
	MaxAttrValues       = 16 // values of one attribute
	MaxCapabilities     = 64 // SMIMECapabilities kept per signer (the rest is dropped)
	// MaxRevocationInfoBytes and MaxRevocationInfos bound the CRLs and
	// OCSP responses a SignedData encloses that are looked at; beyond
	// them the enclosed revocation information is ignored.
	MaxRevocationInfoBytes = 1 << 20
	MaxRevocationInfos     = 16
)

// ErrTooMany is returned when a CMS object lists more of something than the
// bounds above. It wraps ErrUnsupported.
var ErrTooMany = fmt.Errorf("%w: too many elements", ErrUnsupported)

// Content type OIDs (RFC 5652 section 14, RFC 5083).
var (
	OIDData               = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	OIDSignedData         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	OIDEnvelopedData      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3}
	OIDAuthEnvelopedData  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 23}
	OIDSignedAndEnveloped = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 4}
	OIDEncryptedData      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 6}
	OIDCompressedData     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 9}
)

// ContentInfo is the outer wrapper of every CMS object.
type ContentInfo struct {
	Type asn1.ObjectIdentifier
	// Content is the DER of the value inside the [0] EXPLICIT wrapper
	// (e.g. the SignedData SEQUENCE), after BER normalisation. It may
	// share memory with the input of ParseContentInfo.
	Content []byte
}

type rawContentInfo struct {
	Type    asn1.ObjectIdentifier
	Content asn1.RawValue `asn1:"explicit,optional,tag:0"`
}

// ParseContentInfo normalises BER input to DER and splits off the content
// type. It accepts a DER or BER ContentInfo, as found in the body of an
// application/pkcs7-mime part or a .p7s/.p7m file. When the input is DER
// already, the result shares its memory.
func ParseContentInfo(ber []byte) (*ContentInfo, error) {
	der, err := normalize(ber)
	if err != nil {
		return nil, err
	}
	var raw rawContentInfo
	rest, err := asn1.Unmarshal(der, &raw)
	if err != nil {
		return nil, fmt.Errorf("%w: ContentInfo: %v", ErrMalformed, err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: trailing data after ContentInfo", ErrMalformed)
	}
	// encoding/asn1 leaves the EXPLICIT [0] wrapper on a RawValue: unwrap it.
	var content []byte
	if len(raw.Content.FullBytes) > 0 {
		var inner asn1.RawValue
		rest, err := asn1.Unmarshal(raw.Content.Bytes, &inner)
		if err != nil || len(rest) != 0 {
			return nil, fmt.Errorf("%w: ContentInfo content is not one value", ErrMalformed)
		}
		content = inner.FullBytes
	}
	return &ContentInfo{Type: raw.Type, Content: content}, nil
}

// TypeName gives a short name for a content type, for reports.
func TypeName(oid asn1.ObjectIdentifier) string {
	switch {
	case oid.Equal(OIDData):
		return "data"
	case oid.Equal(OIDSignedData):
		return "signed-data"
	case oid.Equal(OIDEnvelopedData):
		return "enveloped-data"
	case oid.Equal(OIDAuthEnvelopedData):
		return "authEnveloped-data"
	case oid.Equal(OIDSignedAndEnveloped):
		return "signedAndEnveloped-data"
	case oid.Equal(OIDEncryptedData):
		return "encrypted-data"
	case oid.Equal(OIDCompressedData):
		return "compressed-data"
	}
	return oid.String()
}
