package harvest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime/quotedprintable"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// entity is one MIME entity as raw bytes: its header block and its body,
// both slices of the bytes it was read from.
type entity struct {
	rawHeader []byte // header lines including the final line break, excluding the blank line
	body      []byte
	header    message.Header
}

// stripMboxLine drops the "From sender date" line that starts a message
// taken from an mbox file. The obsolete header syntax "From : addr" is a
// header field, not an mbox line, and stays.
func stripMboxLine(raw []byte) []byte {
	if !bytes.HasPrefix(raw, []byte("From ")) {
		return raw
	}
	i := bytes.IndexByte(raw, '\n')
	if i < 0 {
		return raw
	}
	if f := bytes.Fields(raw[5:i]); len(f) == 0 || bytes.HasPrefix(f[0], []byte(":")) {
		return raw
	}
	return raw[i+1:]
}

// splitEntity separates header and body at the first empty line (RFC 5322
// section 2.1). A message without an empty line is all header.
func splitEntity(raw []byte) (*entity, error) {
	var e entity
	end, bodyStart := len(raw), len(raw)
	if bytes.HasPrefix(raw, []byte("\r\n")) {
		end, bodyStart = 0, 2
	} else if bytes.HasPrefix(raw, []byte("\n")) {
		end, bodyStart = 0, 1
	} else {
		for i := 0; i < len(raw); {
			j := bytes.IndexByte(raw[i:], '\n')
			if j < 0 {
				break
			}
			next := i + j + 1
			if bytes.HasPrefix(raw[next:], []byte("\r\n")) {
				end, bodyStart = next, next+2
				break
			}
			if bytes.HasPrefix(raw[next:], []byte("\n")) {
				end, bodyStart = next, next+1
				break
			}
			i = next
		}
	}
	e.rawHeader = raw[:end]
	e.body = raw[bodyStart:]
	h, err := readHeader(e.rawHeader, min(len(e.rawHeader)+2, 4096))
	if err != nil {
		// The parser's error quotes the offending line, which may be body
		// text: report a fixed message instead.
		return nil, errMalformedHeader
	}
	e.header = message.Header{Header: h}
	return &e, nil
}

// readHeader parses a header section (without its empty line) through a
// bufio.Reader of the given size: the header's own size for most (bufio's
// default of 4 KiB, allocated for every entity, was most of what a small
// message cost); bufio.Reader.ReadLine reads longer lines in pieces.
func readHeader(block []byte, size int) (textproto.Header, error) {
	return textproto.ReadHeader(bufio.NewReaderSize(io.MultiReader(bytes.NewReader(block), strings.NewReader("\r\n")), size))
}

// mediaType returns the lower-cased media type and its parameters. A
// missing Content-Type is text/plain (RFC 2045 section 5.2); an unparsable
// one is reported as such.
func (e *entity) mediaType() (string, map[string]string, error) {
	if !e.header.Has("Content-Type") {
		return "text/plain", map[string]string{}, nil
	}
	t, params, err := e.header.ContentType()
	if err != nil {
		return "", nil, fmt.Errorf("Content-Type: %v", err)
	}
	lower := make(map[string]string, len(params))
	for k, v := range params {
		lower[strings.ToLower(k)] = v
	}
	return strings.ToLower(t), lower, nil
}

// fileName is the attachment name from Content-Disposition or the
// Content-Type name parameter.
func (e *entity) fileName(ctParams map[string]string) string {
	if _, p, err := e.header.ContentDisposition(); err == nil {
		if n := p["filename"]; n != "" {
			return n
		}
	}
	return ctParams["name"]
}

// decodedBody undoes the Content-Transfer-Encoding. base64 tolerates line
// breaks and other whitespace; unknown encodings are an error.
func (e *entity) decodedBody() ([]byte, error) {
	body, _, err := e.decodedBodyRoom(0)
	return body, err
}

// decodedBodyRoom is decodedBody that also returns the buffer a decoded
// body was written into, with (for base64) room free bytes before the
// body; nil when the body is the entity's own bytes (identity encodings),
// which belong to the caller's message.
func (e *entity) decodedBodyRoom(room int) (body, buf []byte, err error) {
	enc := strings.ToLower(strings.TrimSpace(e.header.Get("Content-Transfer-Encoding")))
	switch enc {
	case "", "7bit", "8bit", "binary":
		return e.body, nil, nil
	case "base64":
		buf, err := decodeBase64Room(e.body, room)
		if err != nil {
			return nil, nil, err
		}
		return buf[room:], buf, nil
	case "quoted-printable":
		out, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(e.body)))
		if err != nil {
			return nil, nil, fmt.Errorf("quoted-printable body: %v", err)
		}
		return out, out, nil
	}
	return nil, nil, fmt.Errorf("unknown Content-Transfer-Encoding %q", enc)
}

var (
	errNoBoundary      = errors.New("multipart: boundary not found")
	errMalformedHeader = errors.New("header: malformed (a line is neither a header field nor its continuation)")
)

// splitSigned finds the two parts of a multipart/signed body with the
// boundary scanner (RFC 1847, RFC 2046 section 5.1.1). The first part is
// returned exactly as transmitted: from the line after the first delimiter
// up to, not including, the line break before the next delimiter.
// go-message cannot be used for this because it never exposes a part's raw
// bytes. sig is nil when the signature part is missing; extra counts the
// parts after the two RFC 1847 allows.
func splitSigned(body []byte, boundary string) (signed, sig []byte, extra int, err error) {
	if boundary == "" || len(boundary) > 200 {
		return nil, nil, 0, fmt.Errorf("%w: bad boundary parameter", errNoBoundary)
	}
	parts := splitParts(body, boundary)
	if len(parts) == 0 {
		return nil, nil, 0, errNoBoundary
	}
	if len(parts) > 1 {
		sig = parts[1]
	}
	return parts[0], sig, max(0, len(parts)-2), nil
}

// afterDelimiterLine skips transport padding (spaces, tabs) and the line
// break after a delimiter, returning the index where the part starts.
func afterDelimiterLine(body []byte, i int) (int, bool) {
	for i < len(body) && (body[i] == ' ' || body[i] == '\t') {
		i++
	}
	if i < len(body) && body[i] == '\r' {
		i++
	}
	if i < len(body) && body[i] == '\n' {
		return i + 1, true
	}
	return i, false
}

// nextPart returns the part running from start to the line break before the
// next delimiter line, and the index of that delimiter.
func nextPart(body []byte, start int, delim []byte) ([]byte, int, bool) {
	for i := start; i < len(body); {
		j := bytes.Index(body[i:], delim)
		if j < 0 {
			return nil, 0, false
		}
		pos := i + j
		i = pos + 1
		if !isDelimiterLine(body[pos+len(delim):]) {
			continue // a longer boundary that starts with ours
		}
		if pos > start && body[pos-1] == '\n' {
			end := pos - 1
			if end > start && body[end-1] == '\r' {
				end--
			}
			return body[start:end], pos, true
		}
		if pos == start {
			return body[start:start], pos, true // empty part
		}
	}
	return nil, 0, false
}

// isDelimiterLine reports whether what follows "--boundary" ends a
// delimiter line: "--" (the close delimiter), or transport padding and a
// line break, or the end of the body.
func isDelimiterLine(rest []byte) bool {
	// The close delimiter too is followed only by transport padding and
	// the line break (RFC 2046 section 5.1.1): "--b--x" is no delimiter,
	// or whatever follows it would be hidden from the coverage rule while
	// readers show it.
	rest = bytes.TrimPrefix(rest, []byte("--"))
	rest = bytes.TrimLeft(rest, " \t")
	return len(rest) == 0 || rest[0] == '\r' || rest[0] == '\n'
}

// canonicalCRLF turns every bare LF into CRLF (RFC 8551 section 3.1.1).
// It returns the input itself when nothing needs to change.
func canonicalCRLF(in []byte) []byte {
	bare := 0
	for i, c := range in {
		if c == '\n' && (i == 0 || in[i-1] != '\r') {
			bare++
		}
	}
	if bare == 0 {
		return in
	}
	out := make([]byte, 0, len(in)+bare)
	for i, c := range in {
		if c == '\n' && (i == 0 || in[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

// crlfToLF turns every CRLF into LF; it returns the input itself when there
// is none.
func crlfToLF(in []byte) []byte {
	if !bytes.Contains(in, []byte("\r\n")) {
		return in
	}
	return bytes.ReplaceAll(in, []byte("\r\n"), []byte("\n"))
}

// splitParts returns the raw body parts of a multipart body, each as
// transmitted (header and body): from the line after a delimiter up to, not
// including, the line break before the next one. A missing close delimiter
// ends the last part at the end of the body. At most maxParts+1 parts.
func splitParts(body []byte, boundary string) [][]byte {
	if boundary == "" || len(boundary) > 200 {
		return nil
	}
	delim := []byte("--" + boundary)
	var parts [][]byte
	start := -1
	for i := 0; i <= len(body); {
		j := bytes.Index(body[i:], delim)
		if j < 0 {
			break
		}
		pos := i + j
		if (pos == 0 || body[pos-1] == '\n') && isDelimiterLine(body[pos+len(delim):]) {
			start = pos
			break
		}
		i = pos + 1
	}
	for start >= 0 && len(parts) <= maxParts {
		if bytes.HasPrefix(body[start+len(delim):], []byte("--")) {
			break
		}
		partStart, ok := afterDelimiterLine(body, start+len(delim))
		if !ok {
			break
		}
		part, next, ok := nextPart(body, partStart, delim)
		if !ok {
			parts = append(parts, body[partStart:])
			break
		}
		parts = append(parts, part)
		start = next
	}
	return parts
}
