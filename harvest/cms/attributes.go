package cms

import (
	"encoding/asn1"
	"fmt"
	"time"
)

// Attribute OIDs (RFC 5652 section 11, RFC 8551 section 2.5).
var (
	sdOIDAttrContentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	sdOIDAttrMessageDigest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	sdOIDAttrSigningTime   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 5}
	sdOIDAttrCounterSig    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 6}
	sdOIDAttrSMIMECaps     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 15}
	sdOIDAttrEncKeyPref    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 11}
	sdOIDAttrMSEncKeyPref  = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 16, 4}
)

type sdAttribute struct {
	oid    asn1.ObjectIdentifier
	values []asn1.RawValue
}

// sdParseAttributes reads the content of a SET OF Attribute.
func sdParseAttributes(b []byte) ([]sdAttribute, error) {
	var attrs []sdAttribute
	for len(b) > 0 {
		if len(attrs) == MaxAttributes {
			return nil, fmt.Errorf("%w: more than %d attributes", ErrTooMany, MaxAttributes)
		}
		v, rest, err := sdNext(b)
		if err != nil {
			return nil, err
		}
		b = rest
		if !sdIsUniversal(v, asn1.TagSequence, true) {
			return nil, fmt.Errorf("attribute is not a SEQUENCE")
		}
		o, vals, err := sdNext(v.Bytes)
		if err != nil || !sdIsUniversal(o, asn1.TagOID, false) {
			return nil, fmt.Errorf("attribute type")
		}
		var a sdAttribute
		if _, err := asn1.Unmarshal(o.FullBytes, &a.oid); err != nil {
			return nil, fmt.Errorf("attribute type: %v", err)
		}
		set, rest, err := sdNext(vals)
		if err != nil || len(rest) != 0 || !sdIsUniversal(set, asn1.TagSet, true) {
			return nil, fmt.Errorf("attribute %s: values are not a SET", a.oid)
		}
		for s := set.Bytes; len(s) > 0; {
			if len(a.values) == MaxAttrValues {
				return nil, fmt.Errorf("%w: attribute %s has more than %d values", ErrTooMany, a.oid, MaxAttrValues)
			}
			var val asn1.RawValue
			if val, s, err = sdNext(s); err != nil {
				return nil, fmt.Errorf("attribute %s: %v", a.oid, err)
			}
			a.values = append(a.values, val)
		}
		attrs = append(attrs, a)
	}
	return attrs, nil
}

// readSignedAttrs extracts what Verify needs from the signed attributes
// (recording any defect in si.attrErr) and the informational attributes,
// whose defects are ignored.
func (si *SignerInfo) readSignedAttrs(b []byte) {
	attrs, err := sdParseAttributes(b)
	if err != nil {
		si.attrErr = fmt.Errorf("%w: %v", ErrBadAttributes, err)
		return
	}
	var nCT, nMD, nST int
	bad := func(format string, args ...any) {
		if si.attrErr == nil {
			si.attrErr = fmt.Errorf("%w: "+format, append([]any{ErrBadAttributes}, args...)...)
		}
	}
	var capsDone, prefDone bool
	for _, a := range attrs {
		switch {
		case a.oid.Equal(sdOIDAttrContentType):
			nCT++
			if len(a.values) != 1 || !sdIsUniversal(a.values[0], asn1.TagOID, false) {
				bad("contentType attribute must hold one OID")
				continue
			}
			if _, err := asn1.Unmarshal(a.values[0].FullBytes, &si.attrCT); err != nil {
				bad("contentType attribute: %v", err)
			}
		case a.oid.Equal(sdOIDAttrMessageDigest):
			nMD++
			if len(a.values) != 1 || !sdIsUniversal(a.values[0], asn1.TagOctetString, false) {
				bad("messageDigest attribute must hold one OCTET STRING")
				continue
			}
			si.messageDigest = a.values[0].Bytes
		case a.oid.Equal(sdOIDAttrSigningTime):
			nST++
			if len(a.values) != 1 {
				bad("signingTime attribute must hold one value")
				continue
			}
			t, err := sdParseTime(a.values[0])
			if err != nil {
				bad("signingTime: %v", err)
				continue
			}
			si.SigningTime = t
		case a.oid.Equal(sdOIDAttrCounterSig):
			bad("countersignature among the signed attributes")
		case a.oid.Equal(sdOIDAttrSMIMECaps):
			if !capsDone && len(a.values) > 0 {
				capsDone = true
				si.SMIMECapabilities = sdParseCapabilities(a.values[0])
			}
		case a.oid.Equal(sdOIDAttrEncKeyPref):
			if !prefDone && len(a.values) > 0 {
				if id, err := sdParseEncKeyPref(a.values[0]); err == nil {
					si.EncryptionKeyPreference, prefDone = id, true
				}
			}
		case a.oid.Equal(sdOIDAttrMSEncKeyPref):
			if si.EncryptionKeyPreference == nil && len(a.values) > 0 {
				if id, err := parseIdentifier(a.values[0].FullBytes); err == nil && id.Serial != nil {
					si.EncryptionKeyPreference = &id
				}
			}
		}
	}
	switch {
	case nCT != 1:
		bad("%d contentType attributes", nCT)
	case nMD != 1:
		bad("%d messageDigest attributes", nMD)
	case nST > 1:
		bad("%d signingTime attributes", nST)
	}
	if si.attrErr != nil {
		si.SigningTime = time.Time{}
	}
}

// checkUnsignedAttrs applies RFC 5652 section 11: contentType,
// messageDigest and signingTime must not be unsigned attributes (OpenSSL
// rejects such messages too).
func (si *SignerInfo) checkUnsignedAttrs(b []byte) {
	if si.attrErr != nil {
		return
	}
	attrs, err := sdParseAttributes(b)
	if err != nil {
		si.attrErr = fmt.Errorf("%w: unsigned attributes: %v", ErrBadAttributes, err)
		return
	}
	for _, a := range attrs {
		if a.oid.Equal(sdOIDAttrContentType) || a.oid.Equal(sdOIDAttrMessageDigest) || a.oid.Equal(sdOIDAttrSigningTime) {
			si.attrErr = fmt.Errorf("%w: %s attribute is unsigned", ErrBadAttributes, a.oid)
			return
		}
	}
}

// sdParseTime reads a Time (CHOICE UTCTime, GeneralizedTime).
func sdParseTime(v asn1.RawValue) (time.Time, error) {
	if v.Class != asn1.ClassUniversal || v.IsCompound ||
		(v.Tag != asn1.TagUTCTime && v.Tag != asn1.TagGeneralizedTime) {
		return time.Time{}, fmt.Errorf("not a UTCTime or GeneralizedTime")
	}
	var t time.Time
	rest, err := asn1.Unmarshal(v.FullBytes, &t)
	if err != nil {
		return time.Time{}, err
	}
	if len(rest) != 0 {
		return time.Time{}, fmt.Errorf("trailing data")
	}
	return t, nil
}

// sdParseCapabilities reads SMIMECapabilities ::= SEQUENCE OF
// SMIMECapability { capabilityID OID, parameters ANY OPTIONAL }. It returns
// what it could read before any defect.
func sdParseCapabilities(v asn1.RawValue) []string {
	if !sdIsUniversal(v, asn1.TagSequence, true) {
		return nil
	}
	var out []string
	for b := v.Bytes; len(b) > 0 && len(out) < MaxCapabilities; {
		c, rest, err := sdNext(b)
		if err != nil || !sdIsUniversal(c, asn1.TagSequence, true) {
			break
		}
		b = rest
		o, _, err := sdNext(c.Bytes)
		if err != nil || !sdIsUniversal(o, asn1.TagOID, false) {
			break
		}
		var oid asn1.ObjectIdentifier
		if _, err := asn1.Unmarshal(o.FullBytes, &oid); err != nil {
			break
		}
		out = append(out, sdCapName(oid))
	}
	return out
}

// sdParseEncKeyPref reads SMIMEEncryptionKeyPreference ::= CHOICE {
// issuerAndSerialNumber [0] IMPLICIT, receipentKeyId [1] IMPLICIT
// RecipientKeyIdentifier, subjectAltKeyIdentifier [2] IMPLICIT
// SubjectKeyIdentifier }.
func sdParseEncKeyPref(v asn1.RawValue) (*Identifier, error) {
	if v.Class != asn1.ClassContextSpecific {
		return nil, fmt.Errorf("%w: SMIMEEncryptionKeyPreference", ErrMalformed)
	}
	switch v.Tag {
	case 0:
		if !v.IsCompound {
			break
		}
		ias := make([]byte, len(v.FullBytes))
		copy(ias, v.FullBytes)
		ias[0] = 0x30 // [0] IMPLICIT -> SEQUENCE
		id, err := parseIdentifier(ias)
		if err != nil || id.Serial == nil {
			break
		}
		return &id, nil
	case 1:
		// RecipientKeyIdentifier { subjectKeyIdentifier, date OPTIONAL, other OPTIONAL }
		if !v.IsCompound {
			break
		}
		ski, _, err := sdNext(v.Bytes)
		if err != nil || !sdIsUniversal(ski, asn1.TagOctetString, false) || len(ski.Bytes) == 0 {
			break
		}
		return &Identifier{SKI: ski.Bytes}, nil
	case 2:
		ski, err := JoinImplicitOctets(v.FullBytes)
		if err != nil || len(ski) == 0 {
			break
		}
		return &Identifier{SKI: ski}, nil
	}
	return nil, fmt.Errorf("%w: SMIMEEncryptionKeyPreference", ErrMalformed)
}

// SignedAttribute returns the values (each one DER value) of the signed
// attribute oid, nil when the signer has no such attribute. It is for
// attributes this package does not read itself, such as the ESS
// signingCertificate of an RFC 3161 timestamp token.
func (si *SignerInfo) SignedAttribute(oid asn1.ObjectIdentifier) ([][]byte, error) {
	if si == nil || !si.HasSignedAttrs {
		return nil, nil
	}
	set, _, err := sdNext(si.signedAttrs)
	if err != nil {
		return nil, fmt.Errorf("%w: signed attributes: %v", ErrBadAttributes, err)
	}
	attrs, err := sdParseAttributes(set.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadAttributes, err)
	}
	var out [][]byte
	for _, a := range attrs {
		if a.oid.Equal(oid) {
			for _, v := range a.values {
				out = append(out, v.FullBytes)
			}
		}
	}
	return out, nil
}
