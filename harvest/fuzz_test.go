package harvest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// FuzzProcess feeds arbitrary bytes through the whole engine: MIME layer
// dispatch, boundary scanning, CMS parsing, decryption attempts with real
// keys and signature verdicts. It must never panic or hang, and the
// plaintext must stay bounded by the input.
func FuzzProcess(f *testing.F) {
	addCorpusSeeds(f)
	f.Add([]byte("From: a@b\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=x\r\n\r\n--x\r\n\r\nhi\r\n--x\r\nContent-Type: application/pkcs7-signature\r\n\r\nMIIB\r\n--x--\r\n"))
	f.Add([]byte("Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQA=\r\n"))
	// The shapes the verdict rules look at: a signed part beside others, a
	// protected header section, opaque signed data inside a container.
	f.Add([]byte("From: a@b.example\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--m\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain; hp=\"clear\"\r\nFrom: c@d.example\r\nSubject: s\r\n\r\nhi\r\n--x\r\nContent-Type: application/pkcs7-signature\r\n\r\nMIIB\r\n--x--\r\n--m--\r\n"))
	f.Add([]byte("From: \"a\uff20b.example\": c@d.example;\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\nContent-Type: application/pkcs7-mime; smime-type=signed-data\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n--m\r\n\r\nfooter\r\n--m--\r\n"))
	f.Add([]byte("From: a@b.example\r\nSubject: x\r\nContent-Type: message/rfc822\r\n\r\nFrom: c@d.example\r\nSubject: y\r\n\r\nbody\r\n"))
	eng := fuzzEngine(f)
	received := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := eng.Process(data, received)
		if err != nil {
			t.Fatalf("Process() error = %v, want only report errors", err)
		}
		if res == nil {
			t.Fatal("Process() = nil result")
		}
		if strings.HasPrefix(res.Report.Error, internalError) {
			t.Fatalf("Process() panicked: %s", res.Report.Error)
		}
		// Decrypted content can be larger than the ciphertext only by a
		// header's worth; anything else means a runaway allocation.
		if len(res.Plaintext) > 2*len(data)+4096 {
			t.Fatalf("plaintext of %d bytes from %d bytes of input", len(res.Plaintext), len(data))
		}
		if len(res.Report.Layers) > MaxDepth+1 {
			t.Fatalf("%d layers reported, limit %d", len(res.Report.Layers), MaxDepth)
		}
	})
}

// FuzzFromField: the From binding rules (group syntax, every address a
// reader could see) on arbitrary field values: no panic, and a field that
// binds shows no address but the bound one.
func FuzzFromField(f *testing.F) {
	for _, s := range []string{
		"alice@partner.example",
		"\"alice@partner.example\": mallory@evil.example;",
		"\"alice\uff20partner.example\" <mallory@evil.example>",
		"=?utf-8?b?YWxpY2XvvKBwYXJ0bmVyLmV4YW1wbGU=?= <m@evil.example>",
		"a (b@c.example) <d@e.example>",
		"\"\\\"(\" <x@y.example>",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		raw := []byte("From: " + v + "\r\n\r\n")
		ent, err := splitEntity(raw)
		if err != nil {
			return
		}
		hi := readHeaderInfo(ent)
		if hi.fromIssue != "" || hi.from == "" {
			return
		}
		// Bound: nothing else in the field may read as an address. Read
		// independently of the engine's tokenizer: NFKC, lower case, no
		// format characters, spaces around at signs closed up, then every
		// run that looks like local@domain.tld must be part of the bound
		// address.
		text := norm.NFKC.String(strings.ToLower(decodedFrom(ent)))
		text = strings.Map(func(r rune) rune {
			if unicode.Is(unicode.Cf, r) {
				return -1
			}
			return r
		}, text)
		text = strings.ToLower(aroundAt.ReplaceAllString(text, "@"))
		for _, m := range addressLike.FindAllString(text, -1) {
			if !strings.Contains(hi.from, m) {
				t.Fatalf("From %q bound to %q, but it shows %q", v, hi.from, m)
			}
		}
	})
}

var (
	aroundAt    = regexp.MustCompile(`\s*@\s*`)
	addressLike = regexp.MustCompile(`[\p{L}\p{N}_%+-]+(\.[\p{L}\p{N}_%+-]+)*@[\p{L}\p{N}-]+(\.[\p{L}\p{N}-]+)+`)
)

func decodedFrom(ent *entity) string {
	if v, err := ent.header.Text("From"); err == nil {
		return v
	}
	return ent.header.Get("From")
}

// addCorpusSeeds seeds a fuzz target with the fixture messages.
func addCorpusSeeds(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("..", "testdata", "msg", "*.eml"))
	for _, s := range seeds {
		if data, err := os.ReadFile(s); err == nil {
			f.Add(data)
		}
	}
}
