package harvest

// Addresses and domains as smimed compares them, wherever they come from
// (a certificate, a header, an SMTP envelope, the configuration).

import (
	"fmt"
	"strings"

	"golang.org/x/net/idna"
)

// ASCIIDomain is the domain d as smimed compares domains: lower case,
// without a trailing dot, with internationalised labels as A-labels (RFC
// 5890; "Bücher.example" is "xn--bcher-kva.example"), the form
// certificates carry (RFC 5280 4.2.1.6) and SMTP without SMTPUTF8 uses. A
// name IDNA refuses (e.g. with "_") is only lower-cased.
func ASCIIDomain(d string) string {
	d = strings.TrimRight(d, ".")
	for i := 0; i < len(d); i++ {
		if d[i] >= 0x80 {
			if a, err := idna.Lookup.ToASCII(d); err == nil {
				// The mapping makes dots of lookalikes ("。"): a
				// trailing one goes too.
				return strings.TrimRight(a, ".")
			}
			return strings.ToLower(d)
		}
	}
	return strings.ToLower(d)
}

// NormalizeAddress is the address addr as smimed compares addresses: the
// local part lower-cased (no mail system smimed meets tells case apart
// there) and the domain as ASCIIDomain gives it.
func NormalizeAddress(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return strings.ToLower(addr)
	}
	return strings.ToLower(addr[:i+1]) + ASCIIDomain(addr[i+1:])
}

func normalizeEmail(email string) (string, error) {
	e := NormalizeAddress(strings.TrimSpace(email))
	if e == "" || !strings.Contains(e, "@") {
		return "", fmt.Errorf("%w: %q", ErrBadAddress, email)
	}
	return e, nil
}
