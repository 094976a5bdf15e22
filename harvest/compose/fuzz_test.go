package compose

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/smimed/smimed/harvest/cms"
)

// FuzzPrepare feeds any message to the preparation for signing: it must
// not panic, and what it writes must be 7bit (no octet over 127, no NUL,
// CRLF line breaks only, lines of at most 998 octets) and decode, with
// go-message, to the same parts as the input.
func FuzzPrepare(f *testing.F) {
	f.Add(testMessage())
	f.Add([]byte("Subject: x\r\n\r\nplain\n\xff\x00 body"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xc3\xa4\r\n--b--\r\n"))
	f.Add([]byte("Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A4=\r\nlong\xff\r\n"))
	f.Add([]byte("Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\n\xff"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, msg []byte) {
		h, err := readHeader(bufio.NewReader(bytes.NewReader(msg)))
		if err != nil {
			return
		}
		br := bufio.NewReader(bytes.NewReader(msg))
		readHeader(br)
		_, inner := h.split()
		if !inner.has("Content-Type") {
			inner = append(header{newField("Content-Type", "text/plain; charset=us-ascii")}, inner...)
		}
		var in bytes.Buffer
		inner.write(&in)
		rest := bytes.NewBuffer(nil)
		rest.ReadFrom(br)
		in.Write(rest.Bytes())

		var out bytes.Buffer
		p := &preparer{tempDir: dir}
		if err := p.entity(&out, inner, bytes.NewReader(rest.Bytes()), 0); err != nil {
			return // refusals are errors (ErrMalformed, ErrUnsupportedEncoding, ErrSignedEightBit)
		}
		check7bitFuzz(t, out.Bytes())
		want, ok := decodeParts(in.Bytes())
		if !ok {
			return
		}
		got, ok := decodeParts(out.Bytes())
		if !ok {
			t.Fatalf("go-message cannot read the prepared entity:\n%q", out.Bytes())
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("prepared entity decodes to\n%q\nwant\n%q", got, want)
		}
	})
}

func check7bitFuzz(t *testing.T, b []byte) {
	t.Helper()
	for i, line := range bytes.Split(b, []byte("\r\n")) {
		if len(line) > maxLine {
			t.Fatalf("line %d has %d octets", i+1, len(line))
		}
		if j := bytes.IndexFunc(line, func(r rune) bool { return r == 0 || r == '\r' || r == '\n' || r >= 0x80 }); j >= 0 {
			t.Fatalf("line %d: octet %#x at %d:\n%q", i+1, line[j], j, b)
		}
	}
}

// FuzzEncrypt encrypts any message: no panic, and what smimed's own
// decryption gets back decodes (go-message) to the parts the input has.
func FuzzEncrypt(f *testing.F) {
	f.Add(testMessage())
	f.Add([]byte(plainMessage))
	f.Add([]byte("Subject: x\n\nbare\nLF\r\x00"))
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fuzz"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageKeyEncipherment}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		f.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, msg []byte) {
		caps := []string{"aes-256-gcm"}
		if len(msg)%2 == 0 {
			caps = nil
		}
		var out bytes.Buffer
		if _, err := Encrypt(&out, bytes.NewReader(msg), []Recipient{{Cert: cert, Capabilities: caps}}, Options{TempDir: dir}); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Encrypt() = %v", err)
			}
			return
		}
		_, body, _ := bytes.Cut(out.Bytes(), []byte("\r\n\r\n"))
		ci, err := cms.ParseContentInfo(mustBase64(t, body))
		if err != nil {
			t.Fatal(err)
		}
		dec, err := cms.Decrypt(ci, []*cms.Key{{Cert: cert, Private: key}})
		if err != nil {
			t.Fatalf("Decrypt() = %v", err)
		}
		want, ok := decodeParts(msg)
		if !ok {
			return
		}
		got, ok := decodeParts(dec.Content)
		if !ok || !bytes.Equal(got, want) {
			t.Fatalf("decrypted entity decodes to\n%q\nwant\n%q", got, want)
		}
	})
}

func mustBase64(t *testing.T, b []byte) []byte {
	t.Helper()
	out, err := base64.StdEncoding.DecodeString(string(bytes.Join(bytes.Fields(b), nil)))
	if err != nil {
		t.Fatal(err)
	}
	return out
}
