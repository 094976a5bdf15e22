package archive

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzHeaderFields: the index fields are read from mail as it came; any
// bytes must give a bounded result without panic.
func FuzzHeaderFields(f *testing.F) {
	f.Add([]byte("To: a@b.example, \"C\" <c@d.example>\r\nCc: e@f.example\r\nDate: Mon, 2 Mar 2026 10:00:00 +0100\r\n\r\nbody"))
	f.Add([]byte("To: undisclosed-recipients:;\nDate: yesterday\n\n"))
	f.Add([]byte("To: =?utf-8?q?x?= <x@y.example>,,,<@>\n"))
	f.Add([]byte("To:" + strings.Repeat(" a@b.example,", 300) + "\n\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		to, _ := headerFields(msg)
		if len(to) > maxIndexedAddresses {
			t.Fatalf("%d addresses, bound is %d", len(to), maxIndexedAddresses)
		}
		for _, a := range to {
			if a != strings.ToLower(a) || !(strings.Contains(a, "@") || strings.HasSuffix(a, "…")) {
				t.Fatalf("indexed address %q is not a lower-cased address", a)
			}
			if addressValue(a) != a {
				t.Fatalf("indexed address %q is not its own addressValue (%q)", a, addressValue(a))
			}
		}
	})
}

// FuzzHeaderValue: the sanitising step gives valid UTF-8 without control
// characters, at most maxField bytes plus the cut marker, and is its own
// result (a value as list shows it finds the record).
func FuzzHeaderValue(f *testing.F) {
	f.Add("<\xff\xfe@evil.example>")
	f.Add("a\x00b\r\nc\u2028d")
	f.Add(strings.Repeat("\xff", maxField+5))
	f.Add(strings.Repeat("é", maxField))
	f.Fuzz(func(t *testing.T, s string) {
		v := headerValue(s)
		if !utf8.ValidString(v) || strings.IndexFunc(v, func(r rune) bool { return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' }) >= 0 {
			t.Fatalf("headerValue(%q) = %q: invalid UTF-8 or a control character", s, v)
		}
		if len(v) > maxField+len("…") {
			t.Fatalf("headerValue(%q) is %d bytes", s, len(v))
		}
		if again := headerValue(v); again != v {
			t.Fatalf("headerValue(%q) = %q, but headerValue of that = %q", s, v, again)
		}
	})
}
