package harvest

import (
	"fmt"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// This file decides whether a From field can be bound to a certificate
// (RFC 8550 section 3). A signature binds one address; a reader sees the
// whole field. So the field must name exactly one mailbox, and nothing else
// in it — display name, comment, group name — may show another address,
// however it is spelled: a full-width at sign (U+FF20), a small at sign
// (U+FE6B), zero-width characters, spaces around the at sign, lookalike
// dots, or any other form that NFKC normalisation turns into an at sign.
// Every word with an at sign must be the mailbox itself, and no
// bidirectional control may reorder what is drawn.

// fromIssue returns why the From field cannot be bound to addr, its parsed
// mailbox, or "". raw is the field's value as transmitted, text the same
// with encoded words decoded.
func fromIssue(raw, text, addr string) string {
	if hasGroupSyntax(raw) {
		return "From uses group syntax (a group name is shown but not bound; RFC 5322 allows only mailboxes in From)"
	}
	for _, r := range text {
		if isBidiControl(r) {
			// A reader draws the text in another order than it is
			// stored: "elpmaxe.rentrap@ecila" under U+202E reads as an
			// address that no comparison of the stored text finds.
			return fmt.Sprintf("the From field holds a bidirectional control character (U+%04X), which can make it show another address", r)
		}
	}
	for _, shown := range shownAddresses(text) {
		if shown != addr {
			return fmt.Sprintf("the From field shows another address (%q) beside the mailbox %q", shown, addr)
		}
	}
	return ""
}

// shownAddresses returns, lower-cased, every address a reader could see in
// a header field's decoded text after NFKC normalisation, with format
// characters (zero-width joiners and the like) removed and whitespace
// around an at sign closed up.
func shownAddresses(text string) []string {
	var b strings.Builder
	for _, r := range norm.NFKC.String(text) {
		if unicode.Is(unicode.Cf, r) {
			continue
		}
		b.WriteRune(unicode.ToLower(r))
	}
	s := b.String()
	// Close up whitespace around each at sign: "alice @ partner.example".
	var c strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '@' {
			out := strings.TrimRightFunc(c.String(), unicode.IsSpace)
			c.Reset()
			c.WriteString(out)
			c.WriteByte('@')
			j := i + 1
			for j < len(s) && (s[j] == ' ' || s[j] == '\t' || s[j] == '\r' || s[j] == '\n') {
				j++
			}
			i = j - 1
			continue
		}
		c.WriteByte(s[i])
	}
	var out []string
	for _, f := range strings.FieldsFunc(c.String(), func(r rune) bool {
		return unicode.IsSpace(r) || strings.ContainsRune("<>\"(),;:'[]{}|\\", r)
	}) {
		f = strings.Trim(f, ".")
		// Anything with an at sign: a lookalike dot (U+3002, U+A4F8)
		// that NFKC keeps would hide "alice@partner。example" from a
		// rule that wanted a real dot. A display name such as
		// "Sales @ ACME" is refused too, the price of that rule.
		if strings.IndexByte(f, '@') >= 0 {
			if !contains(out, f) {
				out = append(out, f)
			}
		}
	}
	return out
}

// hasGroupSyntax reports whether an address field uses RFC 5322 group
// syntax ("name: member, member;"): a colon outside quoted strings,
// comments, domain literals and angle brackets.
func hasGroupSyntax(v string) bool {
	depth, quoted, angle, literal := 0, false, false, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case quoted:
			if c == '\\' {
				i++
			} else if c == '"' {
				quoted = false
			}
		case depth > 0:
			switch c {
			case '\\':
				i++
			case '(':
				depth++
			case ')':
				depth--
			}
		case literal:
			if c == ']' {
				literal = false
			}
		case c == '"':
			quoted = true
		case c == '(':
			depth++
		case c == '[':
			literal = true
		case c == '<':
			angle = true
		case c == '>':
			angle = false
		case c == ':' && !angle:
			return true
		}
	}
	return false
}

// isBidiControl tells the Unicode characters that change the order in
// which text is drawn (UAX #9): the marks, embeddings, overrides and
// isolates.
func isBidiControl(r rune) bool {
	switch {
	case r == 0x061C, r == 0x200E, r == 0x200F:
		return true
	case r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}
