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
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil && !message.IsUnknownCharset(err) {
		t.Fatalf("go-message: %v", err)
	}
	var out bytes.Buffer
	var walk func(e *message.Entity, depth int)
	walk = func(e *message.Entity, depth int) {
		if depth > 40 {
			return
		}
		mt, _, _ := e.Header.ContentType()
		if mr := e.MultipartReader(); mr != nil {
			for {
				p, err := mr.NextPart()
				if errors.Is(err, io.EOF) {
					return
				}
				if err != nil && !message.IsUnknownCharset(err) {
					out.WriteString("!error\n")
					return
				}
				walk(p, depth+1)
			}
		}
		body, _ := io.ReadAll(e.Body)
		s := strings.ReplaceAll(string(body), "\r\n", "\n")
		if mt == "" {
			mt = "text/plain"
		}
		out.WriteString(mt + "\n" + s + "\n\x00\n")
	}
	walk(e, 0)
	return out.Bytes()
}
