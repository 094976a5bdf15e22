package compose

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// Inputs the preparation must refuse with a clear error, not a panic, a
// hang or unbounded memory.
func TestSignRefuses(t *testing.T) {
	p := testPKI(t)
	s := p.signer("sign-rsa", false)
	deep := strings.Repeat("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n", maxDepth+2)
	for _, c := range []struct {
		name string
		msg  string
		want error
	}{
		{"header over 1 MiB", "Subject: " + strings.Repeat("x", maxHeaderBytes+10) + "\r\n\r\nbody", ErrMalformed},
		{"no header", "this is not a header line\r\n\r\nbody", ErrMalformed},
		{"nested too deep", deep, ErrMalformed},
		{"unknown encoding, 8bit data", "Content-Type: application/x-thing\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n\xff\xfe", ErrUnsupportedEncoding},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Sign(&out, strings.NewReader(c.msg), s, Options{TempDir: t.TempDir()})
			if !errors.Is(err, c.want) {
				t.Fatalf("Sign() = %v, want %v", err, c.want)
			}
		})
	}
}
