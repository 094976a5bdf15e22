package compose

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/smimed/smimed/daemon/testenv"
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

// A message the user's client signed already is signed again around it,
// its own signature left intact (OpenSSL verifies both).
func TestSignSignedMessage(t *testing.T) {
	p := testPKI(t)
	dir := t.TempDir()
	inner := p.signTest(t, "sign-p256", false, dir)
	var out bytes.Buffer
	if err := Sign(&out, bytes.NewReader(inner), p.signer("sign-rsa", false), Options{TempDir: dir}); err != nil {
		t.Fatalf("Sign() = %v", err)
	}
	got := testenv.OpenSSL(t, dir, "cms", "-verify", "-in", write(t, dir, "outer.eml", out.Bytes()), "-CAfile", p.root.Cert)
	testenv.OpenSSL(t, dir, "cms", "-verify", "-in", write(t, dir, "inner.eml", got), "-CAfile", p.root.Cert)

	bad := []byte("Content-Type: multipart/signed; boundary=b; protocol=\"application/pkcs7-signature\"\r\n\r\n--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xc3\xa4\r\n--b--\r\n")
	if err := Sign(&out, bytes.NewReader(bad), p.signer("sign-rsa", false), Options{TempDir: dir}); !errors.Is(err, ErrSignedEightBit) {
		t.Fatalf("Sign(8bit signed part) = %v, want ErrSignedEightBit", err)
	}
}
