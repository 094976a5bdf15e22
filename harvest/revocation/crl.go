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
	"slices"
	"strings"
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
	scopes     []string          // the issuing distribution point's URIs; none: a CRL of everything the issuer revokes
	onlyUsers  bool              // the issuing distribution point says: end-entity certificates only
	thisUpdate time.Time
	nextUpdate time.Time // thisUpdate + maxNoNextUpdate when the CRL names none
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
	// Until its signature is checked, nothing of the CRL is believed or
	// shown as it is (a plain-HTTP answer is anyone's).
	if !bytes.Equal(rl.RawIssuer, issuer.RawSubject) {
		return nil, fmt.Errorf("%w: issued by %q, not by the certificate's issuer %s", ErrCRL, rl.Issuer.String(), issuer.Subject)
	}
	if err := rl.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("%w: its signature does not verify with the key of %s: %v", ErrCRL, issuer.Subject, err)
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
			scopes, onlyUsers, err := parseIDP(ext.Value)
			if err != nil {
				return nil, err
			}
			c.scopes, c.onlyUsers = scopes, onlyUsers
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
	if c.nextUpdate.IsZero() {
		// RFC 5280 5.1.2.5 makes nextUpdate mandatory; a CRL without it
		// is believed for a week from its issue, then fetched again.
		c.nextUpdate = c.thisUpdate.Add(maxNoNextUpdate)
	}
	return c, nil
}

// maxNoNextUpdate is how long a CRL that names no nextUpdate counts as
// current.
const maxNoNextUpdate = 7 * 24 * time.Hour

// issuingDistributionPoint (RFC 5280 5.2.5), as far as its scope goes.
type issuingDistributionPoint struct {
	DistributionPoint          asn1.RawValue  `asn1:"optional,explicit,tag:0"`
	OnlyContainsUserCerts      bool           `asn1:"optional,tag:1"`
	OnlyContainsCACerts        bool           `asn1:"optional,tag:2"`
	OnlySomeReasons            asn1.BitString `asn1:"optional,tag:3"`
	IndirectCRL                bool           `asn1:"optional,tag:4"`
	OnlyContainsAttributeCerts bool           `asn1:"optional,tag:5"`
}

// parseIDP returns the URIs the issuing distribution point names (none
// when it names no point): the CRL covers the certificates that name one
// of them; onlyUsers says it covers end-entity certificates only. A CRL
// restricted to reasons, to CA or attribute certificates, or indirect, is
// refused: a certificate missing from it may be revoked all the same.
func parseIDP(der []byte) (uris []string, onlyUsers bool, err error) {
	var idp issuingDistributionPoint
	if rest, err := asn1.Unmarshal(der, &idp); err != nil || len(rest) > 0 {
		return nil, false, fmt.Errorf("%w: unreadable issuing distribution point", ErrCRL)
	}
	switch {
	case idp.OnlyContainsCACerts, idp.OnlyContainsAttributeCerts:
		return nil, false, fmt.Errorf("%w: covers only CA or attribute certificates", ErrCRL)
	case idp.OnlySomeReasons.BitLength > 0:
		return nil, false, fmt.Errorf("%w: covers only some revocation reasons", ErrCRL)
	case idp.IndirectCRL:
		return nil, false, fmt.Errorf("%w: an indirect CRL", ErrCRL)
	}
	if len(idp.DistributionPoint.Bytes) == 0 {
		return nil, idp.OnlyContainsUserCerts, nil
	}
	// [0] holds the DistributionPointName (a CHOICE, so explicitly
	// tagged): fullName [0] GeneralNames, where a URI is [6].
	var names asn1.RawValue
	if _, err := asn1.Unmarshal(idp.DistributionPoint.Bytes, &names); err != nil {
		return nil, false, fmt.Errorf("%w: unreadable issuing distribution point name", ErrCRL)
	}
	if names.Class != asn1.ClassContextSpecific || names.Tag != 0 {
		return nil, false, fmt.Errorf("%w: issuing distribution point named relative to the issuer", ErrCRL)
	}
	rest := names.Bytes
	for len(rest) > 0 && len(uris) < 16 {
		var gn asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &gn); err != nil {
			return nil, false, fmt.Errorf("%w: unreadable issuing distribution point name", ErrCRL)
		}
		if gn.Class == asn1.ClassContextSpecific && gn.Tag == 6 {
			uris = append(uris, string(gn.Bytes))
		}
	}
	if len(uris) == 0 {
		return nil, false, fmt.Errorf("%w: issuing distribution point without a URI", ErrCRL)
	}
	return uris, idp.OnlyContainsUserCerts, nil
}

// covers reports whether c is a CRL for cert, which names the
// distribution points dps: the issuer's full CRL, or one whose issuing
// distribution point is among them; never a CRL of end-entity
// certificates only for a CA certificate (RFC 5280 6.3.3).
func (c *crl) covers(cert *x509.Certificate, dps []string) bool {
	if c.onlyUsers && cert.BasicConstraintsValid && cert.IsCA {
		return false
	}
	if len(c.scopes) == 0 {
		return true
	}
	for _, dp := range dps {
		if slices.Contains(c.scopes, dp) {
			return true
		}
	}
	return false
}

// scopeKey is the scope a CRL is kept under: dp (the point it was
// fetched from, one of its scopes), else its first http scope, else "".
func (c *crl) scopeKey(dp string) string {
	if len(c.scopes) == 0 {
		return ""
	}
	if slices.Contains(c.scopes, dp) {
		return dp
	}
	for _, s := range c.scopes {
		if strings.HasPrefix(s, "http://") {
			return s
		}
	}
	return c.scopes[0]
}

// freshAt reports whether c is current at t: issued, and not past its
// nextUpdate.
func (c *crl) freshAt(t time.Time) bool {
	return !t.Before(c.thisUpdate) && t.Before(c.nextUpdate)
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
