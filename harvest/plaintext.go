package harvest

import (
	"bytes"
	"strings"
)

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

// contentFields are the header fields that describe an entity's body; in a
// plaintext copy they come from the innermost entity, never the envelope.
var contentFields = map[string]bool{
	"content-type":              true,
	"content-transfer-encoding": true,
	"content-disposition":       true,
	"content-description":       true,
	"content-id":                true,
	"content-md5":               true,
	"mime-version":              true,
}

// appendCRLF appends a header field with every line ending made CRLF.
func appendCRLF(out, line []byte) []byte {
	line = bytes.TrimRight(line, "\r\n")
	for {
		i := bytes.IndexByte(line, '\n')
		if i < 0 {
			break
		}
		out = append(out, bytes.TrimRight(line[:i], "\r")...)
		out = append(out, '\r', '\n')
		line = line[i+1:]
	}
	out = append(out, line...)
	return append(out, '\r', '\n')
}

// buildPlaintext makes a complete, readable message out of the outer
// message's header and the innermost entity: the outer header fields
// (From, To, Date, Subject, Message-ID, Received, …) without its
// Content-* fields, then the inner entity's own fields and body. A field the
// inner entity carries itself (a protected header, RFC 8551 section 3.1)
// wins over the outer one.
func buildPlaintext(outerHeader []byte, inner []byte) []byte {
	in, err := splitEntity(inner)
	if err != nil {
		// Not a MIME entity: keep it whole as a text body.
		out := make([]byte, 0, len(outerHeader)+len(inner)+64)
		for _, f := range rawFields(outerHeader) {
			if !contentFields[f.name] {
				out = appendCRLF(out, f.raw)
			}
		}
		out = append(out, "MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n\r\n"...)
		return append(out, inner...)
	}
	innerFields := rawFields(in.rawHeader)
	has := make(map[string]bool, len(innerFields))
	for _, f := range innerFields {
		has[f.name] = true
	}
	out := make([]byte, 0, len(outerHeader)+len(inner)+64)
	for _, f := range rawFields(outerHeader) {
		if contentFields[f.name] || has[f.name] {
			continue
		}
		out = appendCRLF(out, f.raw)
	}
	if !has["mime-version"] {
		out = append(out, "MIME-Version: 1.0\r\n"...)
	}
	for _, f := range innerFields {
		out = appendCRLF(out, f.raw)
	}
	out = append(out, '\r', '\n')
	return append(out, in.body...)
}
