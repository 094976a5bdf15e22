// Package revocation answers whether a certificate was revoked when a
// message arrived, from certificate revocation lists (RFC 5280 section 5):
// fetched over HTTP from the certificate's CRL distribution points on
// first need, or imported by an administrator, kept in the state file with
// their validity and refreshed before they run out.
//
// What is checked of a CRL before it is believed: its signature by the
// certificate's issuer (the CA certificate of the verified chain), its
// issuer name, its time window, and its scope. A CRL that covers only part
// of what its issuer revokes (an issuing distribution point restricted to
// some reasons or to some kinds of certificate, or an indirect CRL) is not
// used; delta CRLs (RFC 5280 5.2.4) are not used either, so a revocation is
// seen once the CA publishes its next full CRL.
package revocation

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// RFC 5280 object identifiers.
var (
	oidIssuingDistributionPoint = asn1.ObjectIdentifier{2, 5, 29, 28}
	oidDeltaCRLIndicator        = asn1.ObjectIdentifier{2, 5, 29, 27}
	oidFreshestCRL              = asn1.ObjectIdentifier{2, 5, 29, 46}
	oidInvalidityDate           = asn1.ObjectIdentifier{2, 5, 29, 24}
	oidCertificateIssuer        = asn1.ObjectIdentifier{2, 5, 29, 29}
)

// Reason codes (RFC 5280 5.3.1).
var reasonNames = map[int]string{
	0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged",
	4: "superseded", 5: "cessationOfOperation", 6: "certificateHold",
	8: "removeFromCRL", 9: "privilegeWithdrawn", 10: "aACompromise",
}

// ReasonName is RFC 5280's name of a reason code.
func ReasonName(code int) string {
	if n, ok := reasonNames[code]; ok {
		return n
	}
	return fmt.Sprintf("reason %d", code)
}

// ErrCRL is wrapped by every error about a CRL's content.
var ErrCRL = errors.New("revocation: unusable CRL")

// revoked is one entry of a CRL.
type revoked struct {
	at         time.Time // revocationDate
	invalidity time.Time // invalidityDate, zero when absent
	reason     int
}

// crl is a parsed, checked CRL.
type crl struct {
	der        []byte
	issuerCert *x509.Certificate // that signed it
	issuer     string            // issuerKey of issuerCert
	issuerName string            // RFC 4514, for messages
	scope      string            // the issuing distribution point's URI, "" for a CRL of everything the issuer revokes
	thisUpdate time.Time
	nextUpdate time.Time // zero when the CRL names none
	number     *big.Int
	entries    map[string]revoked // by serial (hex)
}

// issuerKey identifies a CA by its name and its key: two CAs with the same
// name (a re-keyed CA, or an impostor's) never share their CRLs.
func issuerKey(ca *x509.Certificate) string {
	h := sha256.New()
	h.Write(ca.RawSubject)
	h.Write(ca.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(h.Sum(nil))
}

// Decode reads a CRL in DER or PEM ("X509 CRL").
func Decode(data []byte) ([]byte, error) {
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN")) {
		block, _ := pem.Decode(bytes.TrimSpace(data))
		if block == nil || block.Type != "X509 CRL" {
			return nil, fmt.Errorf("%w: PEM without an X509 CRL block", ErrCRL)
		}
		return block.Bytes, nil
	}
	return data, nil
}

// parseCRL parses der and checks that issuer signed it. It does not look
// at the time.
func parseCRL(der []byte, issuer *x509.Certificate) (*crl, error) {
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCRL, err)
	}
	if !bytes.Equal(rl.RawIssuer, issuer.RawSubject) {
		return nil, fmt.Errorf("%w: issued by %s, not by the certificate's issuer %s", ErrCRL, rl.Issuer, issuer.Subject)
	}
	if err := rl.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("%w: signature of %s does not verify: %v", ErrCRL, rl.Issuer, err)
	}
	c := &crl{
		der: der, issuerCert: issuer, issuer: issuerKey(issuer), issuerName: rl.Issuer.String(),
		thisUpdate: rl.ThisUpdate, nextUpdate: rl.NextUpdate, number: rl.Number,
		entries: make(map[string]revoked, len(rl.RevokedCertificateEntries)),
	}
	for _, ext := range rl.Extensions {
		switch {
		case ext.Id.Equal(oidDeltaCRLIndicator):
			return nil, fmt.Errorf("%w: a delta CRL (only full CRLs are used)", ErrCRL)
		case ext.Id.Equal(oidIssuingDistributionPoint):
			scope, err := parseIDP(ext.Value)
			if err != nil {
				return nil, err
			}
			c.scope = scope
		case ext.Id.Equal(oidFreshestCRL):
			// Points to delta CRLs, which are not used.
		case ext.Critical:
			return nil, fmt.Errorf("%w: unknown critical extension %s", ErrCRL, ext.Id)
		}
	}
	for _, e := range rl.RevokedCertificateEntries {
		r := revoked{at: e.RevocationTime, reason: e.ReasonCode}
		for _, ext := range e.Extensions {
			switch {
			case ext.Id.Equal(oidInvalidityDate):
				var t time.Time
				if _, err := asn1.UnmarshalWithParams(ext.Value, &t, "generalized"); err == nil {
					r.invalidity = t
				}
			case ext.Id.Equal(oidCertificateIssuer):
				return nil, fmt.Errorf("%w: an indirect CRL (entries of other issuers)", ErrCRL)
			case ext.Critical:
				return nil, fmt.Errorf("%w: unknown critical entry extension %s", ErrCRL, ext.Id)
			}
		}
		if e.SerialNumber != nil && r.reason != 8 {
			// removeFromCRL (8) belongs in delta CRLs: it un-revokes.
			c.entries[e.SerialNumber.Text(16)] = r
		}
	}
	return c, nil
}

// issuingDistributionPoint (RFC 5280 5.2.5), as far as its scope goes.
type issuingDistributionPoint struct {
	DistributionPoint          asn1.RawValue  `asn1:"optional,explicit,tag:0"`
	OnlyContainsUserCerts      bool           `asn1:"optional,tag:1"`
	OnlyContainsCACerts        bool           `asn1:"optional,tag:2"`
	OnlySomeReasons            asn1.BitString `asn1:"optional,tag:3"`
	IndirectCRL                bool           `asn1:"optional,tag:4"`
	OnlyContainsAttributeCerts bool           `asn1:"optional,tag:5"`
}

// parseIDP returns the URI the issuing distribution point names ("" when
// none): the CRL covers the certificates that name that distribution
// point. A CRL restricted to reasons, to CA or attribute certificates, or
// indirect, is refused: a certificate missing from it may be revoked all
// the same.
func parseIDP(der []byte) (string, error) {
	var idp issuingDistributionPoint
	if rest, err := asn1.Unmarshal(der, &idp); err != nil || len(rest) > 0 {
		return "", fmt.Errorf("%w: unreadable issuing distribution point", ErrCRL)
	}
	switch {
	case idp.OnlyContainsCACerts, idp.OnlyContainsAttributeCerts:
		return "", fmt.Errorf("%w: covers only CA or attribute certificates", ErrCRL)
	case idp.OnlySomeReasons.BitLength > 0:
		return "", fmt.Errorf("%w: covers only some revocation reasons", ErrCRL)
	case idp.IndirectCRL:
		return "", fmt.Errorf("%w: an indirect CRL", ErrCRL)
	}
	if len(idp.DistributionPoint.Bytes) == 0 {
		return "", nil
	}
	// [0] holds the DistributionPointName (a CHOICE, so explicitly
	// tagged): fullName [0] GeneralNames, where a URI is [6].
	var names asn1.RawValue
	if _, err := asn1.Unmarshal(idp.DistributionPoint.Bytes, &names); err != nil {
		return "", fmt.Errorf("%w: unreadable issuing distribution point name", ErrCRL)
	}
	if names.Class != asn1.ClassContextSpecific || names.Tag != 0 {
		return "", fmt.Errorf("%w: issuing distribution point named relative to the issuer", ErrCRL)
	}
	rest := names.Bytes
	for len(rest) > 0 {
		var gn asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &gn); err != nil {
			return "", fmt.Errorf("%w: unreadable issuing distribution point name", ErrCRL)
		}
		if gn.Class == asn1.ClassContextSpecific && gn.Tag == 6 {
			return string(gn.Bytes), nil
		}
	}
	return "", fmt.Errorf("%w: issuing distribution point without a URI", ErrCRL)
}

// covers reports whether c is a CRL for certificates that name the
// distribution points dps.
func (c *crl) covers(dps []string) bool {
	if c.scope == "" {
		return true
	}
	for _, dp := range dps {
		if dp == c.scope {
			return true
		}
	}
	return false
}

// freshAt reports whether c is current at t: issued, and not past its
// nextUpdate.
func (c *crl) freshAt(t time.Time) bool {
	return !t.Before(c.thisUpdate) && (c.nextUpdate.IsZero() || t.Before(c.nextUpdate))
}

// lookup judges serial at time at: revoked when the CRL lists it with a
// revocation date (or, for a compromised key, an earlier invalidity date)
// not after at.
func (c *crl) lookup(serial *big.Int, at time.Time) (revoked, bool) {
	r, ok := c.entries[serial.Text(16)]
	if !ok {
		return revoked{}, false
	}
	return r, !effective(r).After(at)
}

// effective is when a revocation takes effect for the messages it judges:
// its date, or, when the key was compromised (keyCompromise,
// cACompromise, aACompromise) and the CA names an earlier invalidity date
// (RFC 5280 5.3.2: when the key is known or suspected to have been
// compromised), that date. A key revoked for another reason (superseded,
// affiliation changed, …) signed validly until it was revoked.
func effective(r revoked) time.Time {
	switch r.reason {
	case 1, 2, 10:
		if !r.invalidity.IsZero() && r.invalidity.Before(r.at) {
			return r.invalidity
		}
	}
	return r.at
}
