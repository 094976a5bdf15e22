package harvest

// Addresses and domains as smimed compares them, wherever they come from
// (a certificate, a header, an SMTP envelope, the configuration), and the
// addresses a certificate names or a verified chain vouches for.

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"strings"

	"golang.org/x/net/idna"
)

// ASCIIDomain is the domain d as smimed compares domains: lower case,
// without a trailing dot, with internationalised labels as A-labels (RFC
// 5890; "Bücher.example" is "xn--bcher-kva.example"), the form
// certificates carry (RFC 5280 4.2.1.6) and SMTP without SMTPUTF8 uses.
//
// Only a domain already written in canonical U-labels is converted: IDNA's
// lookup mapping would also fold lookalikes into another domain (fullwidth
// "ｏｒｇ", an invisible soft hyphen, "。" for a dot), and a sender written so
// must not compare equal to the one an MTA checked under its real
// spelling. Such a name, and one IDNA refuses (e.g. with "_"), is only
// lower-cased.
func ASCIIDomain(d string) string {
	d = strings.TrimRight(d, ".")
	for i := 0; i < len(d); i++ {
		if d[i] >= 0x80 {
			lower := strings.ToLower(d)
			a, err := idna.Lookup.ToASCII(lower)
			if err != nil {
				return lower
			}
			if u, err := idna.Lookup.ToUnicode(a); err != nil || u != lower {
				return lower // IDNA had to map it: another string than written
			}
			return a
		}
	}
	return strings.ToLower(d)
}

// AddressDomain is the domain of the address addr as ASCIIDomain gives
// it, "" when addr has no "@".
func AddressDomain(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return ASCIIDomain(addr[i+1:])
}

// NormalizeAddress is the address addr as smimed compares addresses: the
// local part lower-cased (no mail system smimed meets tells case apart
// there) and the domain as ASCIIDomain gives it.
func NormalizeAddress(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return strings.ToLower(addr)
	}
	return strings.ToLower(addr[:i+1]) + AddressDomain(addr)
}

func normalizeEmail(email string) (string, error) {
	e := NormalizeAddress(strings.TrimSpace(email))
	if e == "" || !strings.Contains(e, "@") {
		return "", fmt.Errorf("%w: %q", ErrBadAddress, email)
	}
	return e, nil
}

// Fingerprint is the lower-case hex SHA-256 of a certificate's DER.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// CertEmails lists a certificate's addresses (NormalizeAddress): SAN rfc822Name
// entries and subject emailAddress attributes (RFC 8550 section 3).
func CertEmails(c *x509.Certificate) []string {
	var out []string
	seen := map[string]bool{}
	add := func(s string) {
		s = NormalizeAddress(strings.TrimSpace(s))
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, e := range firstAddresses(c.EmailAddresses) {
		add(e)
	}
	for _, n := range firstNames(c.Subject.Names) {
		if n.Type.Equal(oidEmailAddress) {
			if s, ok := n.Value.(string); ok {
				add(s)
			}
		}
	}
	return out
}

var oidEmailAddress = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}

// BoundEmails lists the addresses a verified chain vouches for
// (NormalizeAddress):
// the SAN rfc822Names; only when there are none, the subject emailAddress
// attributes (RFC 8550 section 3) — and not even those when a CA in the
// chain has email name constraints, which Go (like RFC 5280) applies to
// SANs only.
func BoundEmails(c *x509.Certificate, chain []*x509.Certificate) []string {
	if len(c.EmailAddresses) > 0 {
		var out []string
		for _, e := range firstAddresses(c.EmailAddresses) {
			if e = NormalizeAddress(strings.TrimSpace(e)); e != "" && !contains(out, e) {
				out = append(out, e)
			}
		}
		return out
	}
	for _, ca := range chain {
		if len(ca.PermittedEmailAddresses) > 0 || len(ca.ExcludedEmailAddresses) > 0 {
			return nil
		}
	}
	return CertEmails(c)
}

func contains(list []string, s string) bool {
	if s == "" {
		return false
	}
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
