package harvest

import (
	"bytes"
	"encoding/base64"
	"math/rand/v2"
	"testing"
)

// TestDecodeBase64Forms checks the streaming decoder against the standard
// library's encoder, for every wrapping width and without padding.
func TestDecodeBase64Forms(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 300; n++ {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		enc := base64.StdEncoding.EncodeToString(data)
		for _, w := range []int{76, 64, 5, 7, 1, 1000} {
			var b bytes.Buffer
			for i := 0; i < len(enc); i += w {
				b.WriteString(enc[i:min(i+w, len(enc))])
				b.WriteString("\r\n")
			}
			if got, err := decodeBase64(b.Bytes()); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("decodeBase64(%d bytes wrapped at %d) = %v", n, w, err)
			}
		}
		raw := base64.RawStdEncoding.EncodeToString(data)
		if got, err := decodeBase64([]byte(raw + "\n")); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("decodeBase64(%d bytes unpadded) = %v", n, err)
		}
	}
	for _, bad := range []string{"ab=c\n", "a", "abc$\n"} {
		if _, err := decodeBase64([]byte(bad)); err == nil {
			t.Errorf("decodeBase64(%q) accepted", bad)
		}
	}
}
