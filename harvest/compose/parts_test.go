package compose

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-message"
)

// canonicalParts decodes a message or entity with go-message (an
// independent MIME reader) and returns its leaf parts' media types and
// decoded bodies, line breaks made LF, one after the other. A signed
// entity must give what its input gives.
func canonicalParts(t testing.TB, raw []byte) []byte {
	t.Helper()
	out, ok := decodeParts(raw)
	if !ok {
		t.Fatalf("go-message cannot read the message")
	}
	return out
}

// decodeParts is canonicalParts' work; ok is false when go-message fails
// to read some of it.
func decodeParts(raw []byte) (_ []byte, ok bool) {
	ok = true
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return nil, false
	}
	var out bytes.Buffer
	var walk func(e *message.Entity, depth int)
	walk = func(e *message.Entity, depth int) {
		if depth > 40 {
			return
		}
		mt, _, err := e.Header.ContentType()
		if err != nil && e.Header.Get("Content-Type") != "" {
			mt = "?" // unreadable, however it is written
		}
		if mr := e.MultipartReader(); mr != nil {
			for {
				p, err := mr.NextPart()
				if errors.Is(err, io.EOF) {
					return
				}
				if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
					ok = false
					return
				}
				walk(p, depth+1)
			}
		}
		if mt == "message/rfc822" || mt == "message/global" {
			if inner, err := message.Read(e.Body); err == nil || message.IsUnknownCharset(err) || message.IsUnknownEncoding(err) {
				out.WriteString(mt + "\n")
				walk(inner, depth+1)
				return
			}
			ok = false
			return
		}
		body, err := io.ReadAll(e.Body)
		if err != nil {
			ok = false
		}
		s := strings.ReplaceAll(strings.ReplaceAll(string(body), "\r\n", "\n"), "\r", "\n")
		if mt == "" {
			mt = "text/plain"
		}
		out.WriteString(mt + "\n" + s + "\n\x00\n")
	}
	walk(e, 0)
	return out.Bytes(), ok
}
