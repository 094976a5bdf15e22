package harvest

import (
	"bytes"
	"slices"
	"strings"
)

// unprotectedPrefix starts the (lower-cased) name of the fields that keep
// an outer header value differing from the protected one.
const unprotectedPrefix = "x-smimed-unprotected-"

// UnprotectedField is the name of the field that keeps the outer value of
// the header field name where it differs from the protected header
// section's, e.g. X-Smimed-Unprotected-Subject.
func UnprotectedField(name string) string { return "X-Smimed-Unprotected-" + name }

// rawField is one header field as transmitted, continuation lines included.
type rawField struct {
	name string // lower-cased
	raw  []byte
}

// rawFields splits a raw header block into fields, keeping their bytes.
func rawFields(block []byte) []rawField {
	var fields []rawField
	for len(block) > 0 {
		end := 0
		for {
			j := bytes.IndexByte(block[end:], '\n')
			if j < 0 {
				end = len(block)
				break
			}
			end += j + 1
			if end >= len(block) || (block[end] != ' ' && block[end] != '\t') {
				break
			}
		}
		f := block[:end]
		block = block[end:]
		name, _, ok := bytes.Cut(f, []byte(":"))
		if !ok {
			continue
		}
		fields = append(fields, rawField{name: strings.ToLower(string(bytes.TrimSpace(name))), raw: f})
	}
	return fields
}

// isContentField tells the fields that describe an entity's body; in a
// plaintext copy they come from the innermost entity, never the envelope.
func isContentField(name string) bool {
	return strings.HasPrefix(name, "content-") || name == "mime-version"
}

// appendCRLF appends a header field with every line ending made CRLF and
// every lone CR made a space, so no parser can see a field break that the
// engine did not.
func appendCRLF(out, line []byte) []byte {
	line = bytes.TrimRight(line, "\r\n")
	for i, c := range line {
		switch {
		case c == '\n':
			out = append(out, '\r', '\n')
		case c == '\r' && i+1 < len(line) && line[i+1] == '\n':
			// the LF writes the line end
		case c == '\r':
			out = append(out, ' ')
		default:
			out = append(out, c)
		}
	}
	return append(out, '\r', '\n')
}

// buildPlaintext makes a complete, readable message out of the outer
// message's header and the innermost entity: the outer header fields
// (From, To, Date, Subject, Message-ID, Received, …) without its Content-*
// fields, then the inner entity's Content-* fields and body. Other fields
// of the inner entity are not taken: the sender controls them, and the
// verdicts are bound to the outer From — unless the payload carries a
// protected header section (RFC 9788, or a message/rfc822 wrapper): then
// the protectable fields (protectedFields) come from that section, and the
// outer values that differ follow as X-Smimed-Unprotected-<Name> fields
// (unprotected). Outer fields of that name are never passed on, so that
// only the engine's own can appear.
//
// When the inner entity's body lies in scratch (a buffer of the engine's
// own whose other bytes are no longer needed) with room enough before it,
// the header is written into that room and the plaintext is a part of
// scratch: a big message is then not copied once more.
func buildPlaintext(outerHeader []byte, inner []byte, protected *protectedHeader, unprotected []HeaderField, scratch []byte) []byte {
	head, body := plaintextParts(outerHeader, inner, protected, unprotected)
	if off, ok := offsetIn(scratch, body); ok && off >= len(head) {
		start, end := off-len(head), off+len(body)
		copy(scratch[start:], head)
		return scratch[start:end:end]
	}
	out := make([]byte, 0, len(head)+len(body))
	return append(append(out, head...), body...)
}

// plaintextParts returns the plaintext's header section (with the empty
// line after it) and its body, a part of inner.
func plaintextParts(outerHeader []byte, inner []byte, protected *protectedHeader, unprotected []HeaderField) (head, body []byte) {
	out := make([]byte, 0, len(outerHeader)+256)
	for _, f := range rawFields(outerHeader) {
		if isContentField(f.name) || strings.HasPrefix(f.name, unprotectedPrefix) {
			continue
		}
		if protected != nil && slices.Contains(protectedFields, f.name) {
			continue
		}
		out = appendCRLF(out, f.raw)
	}
	if protected != nil {
		for _, f := range rawFields(protected.raw) {
			if slices.Contains(protectedFields, f.name) {
				out = appendCRLF(out, f.raw)
			}
		}
		for _, f := range unprotected {
			out = appendCRLF(out, []byte(UnprotectedField(f.Name)+": "+f.Value))
		}
	}
	out = append(out, "MIME-Version: 1.0\r\n"...)
	in, err := splitEntity(inner)
	if err != nil {
		// Not a MIME entity: keep it whole as an opaque body.
		return append(out, "Content-Type: application/octet-stream\r\n\r\n"...), inner
	}
	for _, f := range rawFields(in.rawHeader) {
		if isContentField(f.name) && f.name != "mime-version" {
			out = appendCRLF(out, f.raw)
		}
	}
	return append(out, '\r', '\n'), in.body
}

// plaintextHeadroom is the room kept free before a decoded pkcs7-mime
// body, so that the plaintext's header fits in front of its body
// (buildPlaintext) in most messages: the outer header, with every line
// end possibly made CRLF, and the inner entity's Content-* fields, which
// mostly fit where the inner header was. Every layer reserves it, so it
// is bounded: a message with a longer header is copied.
func plaintextHeadroom(outerHeader []byte) int {
	return min(2*len(outerHeader)+256, maxHeadroom)
}

const maxHeadroom = 64 << 10

// offsetIn returns where s starts in buf when s is a part of buf's
// memory (both slices of the same array, s within buf).
func offsetIn(buf, s []byte) (int, bool) {
	if len(s) == 0 || len(buf) == 0 {
		return 0, false
	}
	off := cap(buf) - cap(s)
	if off < 0 || off >= len(buf) || len(s) > len(buf)-off || &buf[off] != &s[0] {
		return 0, false
	}
	return off, true
}
