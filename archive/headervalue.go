package archive

import (
	"strings"
	"unicode/utf8"
)

// maxField bounds the header values a record keeps (the message itself is
// kept whole): a sender's 100 KiB Subject must not make every record
// batch of a query huge.
const maxField = 2048

// headerValue is the one sanitising step for every header value that goes
// into a record and its indexes (Message-ID, From, To/Cc addresses,
// Subject), and for the query values compared with them, so that what is
// stored, what is indexed and what an admin asks for are the same string:
//
//   - invalid UTF-8 becomes U+FFFD, one per byte, as encoding/json would
//     store it anyway (index keys built from the raw bytes would name
//     values no record holds);
//   - NUL, CR, LF, TAB, the other C0 and C1 controls and U+2028/U+2029
//     become a space; leading and trailing spaces go;
//   - a value longer than maxField bytes is cut at a character boundary
//     and ends in "…".
//
// It is idempotent: a value as list shows it is its own result.
func headerValue(s string) string {
	cut := len(s) > maxField
	if cut {
		i := maxField
		for i > 0 && !utf8.RuneStart(s[i]) {
			i--
		}
		s = s[:i]
	}
	s = sanitize(s, false, maxField)
	if cut {
		s += "…"
	}
	return s
}

// addressValue is an address as the To/Cc index and the address filters
// compare it: lower-cased, then headerValue.
func addressValue(s string) string {
	return headerValue(strings.ToLower(strings.TrimSpace(s)))
}

// clean returns q with every header value through the record's
// sanitising step (headerValue), so that a filter given the raw value from
// the message, or the value as list shows it, finds what was stored.
func (q Query) clean() Query {
	q.From, q.To = addressValue(q.From), addressValue(q.To)
	q.Subject, q.MessageID = headerValue(q.Subject), headerValue(q.MessageID)
	return q
}
