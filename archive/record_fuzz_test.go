package archive

import (
	"strings"
	"testing"
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
			if a != strings.ToLower(a) || !strings.Contains(a, "@") {
				t.Fatalf("indexed address %q is not a lower-cased address", a)
			}
		}
	})
}
