package harvest

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"
)

// TestReadHeaderBufferSize: a header section reads the same through the
// small reader splitEntity sizes to it as through bufio's default 4 KiB:
// the fixture messages' headers, and headers of long, folded and broken
// lines with every kind of line end.
func TestReadHeaderBufferSize(t *testing.T) {
	var blocks [][]byte
	files, err := filepath.Glob(filepath.Join(testdataDir, "msg", "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if e, err := splitEntity(raw); err == nil {
			blocks = append(blocks, e.rawHeader)
		}
	}
	r := rand.New(rand.NewPCG(5, 6))
	ends := []string{"\r\n", "\n", "\r", ""}
	for i := 0; i < 3000; i++ {
		var b strings.Builder
		for n := r.IntN(6); n >= 0; n-- {
			switch r.IntN(5) {
			case 0:
				b.WriteString(" folded")
			case 1:
				b.WriteString("no colon here")
			default:
				b.WriteString("X-F" + strings.Repeat("x", r.IntN(3)) + ": ")
			}
			b.WriteString(strings.Repeat("v", []int{0, 1, 14, 15, 16, 17, 100, 5000}[r.IntN(8)]))
			b.WriteString(ends[r.IntN(len(ends))])
		}
		blocks = append(blocks, []byte(b.String()))
	}
	for _, block := range blocks {
		want, werr := readHeader(block, 4096)
		got, err := readHeader(block, min(len(block)+2, 4096))
		if (err == nil) != (werr == nil) || !reflect.DeepEqual(fieldsOf(got), fieldsOf(want)) {
			t.Fatalf("readHeader(%q) = %q, %v; with 4 KiB %q, %v", block, fieldsOf(got), err, fieldsOf(want), werr)
		}
	}
}

func fieldsOf(h textproto.Header) [][2]string {
	var out [][2]string
	for f := h.Fields(); f.Next(); {
		raw, _ := f.Raw()
		out = append(out, [2]string{f.Key(), string(raw)})
	}
	return out
}
