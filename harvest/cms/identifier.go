package cms

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"math/big"
)

// Identifier names a certificate the way CMS does (SignerIdentifier and
// RecipientIdentifier, RFC 5652 sections 5.3 and 6.2.1): either by issuer
// and serial number, or by subject key identifier.
type Identifier struct {
	IssuerRaw []byte   // DER of the issuer Name; nil when SKI is used
	Serial    *big.Int // nil when SKI is used
	SKI       []byte   // nil when issuer and serial are used
}

type issuerAndSerial struct {
	Issuer asn1.RawValue
	Serial *big.Int
}

// parseIdentifier reads the CHOICE { issuerAndSerialNumber, [0] IMPLICIT
// SubjectKeyIdentifier } from its full DER encoding.
func parseIdentifier(full []byte) (Identifier, error) {
	var rv asn1.RawValue
	if _, err := asn1.Unmarshal(full, &rv); err != nil {
		return Identifier{}, fmt.Errorf("%w: identifier: %v", ErrMalformed, err)
	}
	switch {
	case rv.Class == asn1.ClassUniversal && rv.Tag == asn1.TagSequence:
		var ias issuerAndSerial
		if rest, err := asn1.Unmarshal(full, &ias); err != nil || len(rest) != 0 {
			return Identifier{}, fmt.Errorf("%w: issuerAndSerialNumber", ErrMalformed)
		}
		if ias.Serial == nil {
			return Identifier{}, fmt.Errorf("%w: issuerAndSerialNumber without serial", ErrMalformed)
		}
		return Identifier{IssuerRaw: ias.Issuer.FullBytes, Serial: ias.Serial}, nil
	case rv.Class == asn1.ClassContextSpecific && rv.Tag == 0:
		b, err := JoinImplicitOctets(full)
		if err != nil {
			return Identifier{}, err
		}
		return Identifier{SKI: b}, nil
	}
	return Identifier{}, fmt.Errorf("%w: unknown identifier choice [%d:%d]", ErrMalformed, rv.Class, rv.Tag)
}

// Matches reports whether c is the certificate named by id.
func (id Identifier) Matches(c *x509.Certificate) bool {
	if c == nil {
		return false
	}
	if id.SKI != nil {
		return len(c.SubjectKeyId) > 0 && bytes.Equal(id.SKI, c.SubjectKeyId)
	}
	return id.Serial != nil && c.SerialNumber != nil && id.Serial.Cmp(c.SerialNumber) == 0 &&
		bytes.Equal(id.IssuerRaw, c.RawIssuer)
}

// IssuerName renders the issuer as an RFC 4514-style string, or "" when the
// identifier is a subject key identifier.
func (id Identifier) IssuerName() string {
	if id.IssuerRaw == nil {
		return ""
	}
	var rdn pkix.RDNSequence
	if _, err := asn1.Unmarshal(id.IssuerRaw, &rdn); err != nil {
		return "<unparsable name>"
	}
	var n pkix.Name
	n.FillFromRDNSequence(&rdn)
	return n.String()
}

// String gives a one-line form for error messages and reports, e.g.
// `issuer="CN=Test CA" serial=0x1e` or `ski=0a1b…`.
func (id Identifier) String() string {
	if id.SKI != nil {
		return "ski=" + hex.EncodeToString(id.SKI)
	}
	if id.Serial == nil {
		return "unknown"
	}
	return fmt.Sprintf("issuer=%q serial=0x%s", id.IssuerName(), id.Serial.Text(16))
}
