package cms

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"math/big"
	"strings"
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

// String gives a one-line form for error messages and reports, as
// `openssl x509 -noout -issuer -serial -ext subjectKeyIdentifier` prints
// a certificate's: `issuer=O = Example, CN = Test CA serial=1E` or
// `ski=0A:1B:…`, so that an administrator finds the key by comparing.
func (id Identifier) String() string {
	if id.SKI != nil {
		return "ski=" + HexColons(id.SKI)
	}
	if id.Serial == nil {
		return "unknown"
	}
	return "issuer=" + OpenSSLName(id.IssuerRaw) + " serial=" + OpenSSLSerial(id.Serial)
}

// HexColons is b in upper-case hex, a colon between bytes, as OpenSSL
// prints key identifiers.
func HexColons(b []byte) string {
	h := strings.ToUpper(hex.EncodeToString(b))
	var out strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			out.WriteByte(':')
		}
		out.WriteString(h[i : i+2])
	}
	return out.String()
}

// OpenSSLSerial is a serial number as `openssl x509 -serial` prints it:
// upper-case hex of its bytes (an even number of digits).
func OpenSSLSerial(n *big.Int) string {
	sign := ""
	if n.Sign() < 0 {
		sign, n = "-", new(big.Int).Neg(n)
	}
	b := n.Bytes()
	if len(b) == 0 {
		b = []byte{0}
	}
	return sign + strings.ToUpper(hex.EncodeToString(b))
}

// opensslShort are the short names OpenSSL prints for name attributes.
var opensslShort = map[string]string{
	"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.9": "street", "2.5.4.10": "O", "2.5.4.11": "OU",
	"2.5.4.5": "serialNumber", "2.5.4.4": "SN", "2.5.4.42": "GN", "2.5.4.12": "title", "2.5.4.13": "description",
	"2.5.4.17": "postalCode", "2.5.4.18": "postOfficeBox", "2.5.4.43": "initials", "2.5.4.44": "generationQualifier",
	"2.5.4.46": "dnQualifier", "2.5.4.65": "pseudonym", "2.5.4.97": "organizationIdentifier",
	"0.9.2342.19200300.100.1.25": "DC", "0.9.2342.19200300.100.1.1": "UID", "1.2.840.113549.1.9.1": "emailAddress",
}

// OpenSSLName renders a DER Name as `openssl x509 -issuer` prints it by
// default (OpenSSL 3): the attributes in their order in the certificate,
// "TYPE = value", joined by ", " (" + " within one RDN).
func OpenSSLName(der []byte) string {
	var rdns pkix.RDNSequence
	if rest, err := asn1.Unmarshal(der, &rdns); err != nil || len(rest) != 0 {
		return "<unparsable name>"
	}
	var parts []string
	for _, rdn := range rdns {
		var attrs []string
		for _, a := range rdn {
			name, ok := opensslShort[a.Type.String()]
			if !ok {
				name = a.Type.String()
			}
			attrs = append(attrs, name+" = "+opensslEscape(fmt.Sprint(a.Value)))
		}
		parts = append(parts, strings.Join(attrs, " + "))
	}
	return strings.Join(parts, ", ")
}

// opensslEscape escapes a name's value as OpenSSL's default name printing
// does (RFC 2253 escapes, control characters and every byte of a non-ASCII
// character as \XX): `O = Klar\C3\A4lvdalens`. It also keeps a stranger's
// name on one line.
func opensslEscape(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 0x80 || c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, "\\%02X", c)
		case strings.IndexByte(`,+"\<>;`, c) >= 0,
			(c == '#' || c == ' ') && i == 0,
			c == ' ' && i == len(v)-1:
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
