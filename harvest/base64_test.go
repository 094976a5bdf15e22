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

// decodeBase64Runs is the run-by-run reading decodeBase64 implements,
// written plainly with the standard decoder: the reference for its fast
// path.
func decodeBase64Runs(in []byte) ([]byte, error) {
	var out []byte
	var carry []byte
	for _, run := range bytes.FieldsFunc(in, func(r rune) bool { return r < 0x80 && isB64Space(byte(r)) }) {
		for len(carry) > 0 && len(carry) < 4 && len(run) > 0 {
			carry, run = append(carry, run[0]), run[1:]
		}
		if len(carry) == 4 {
			d, err := base64.StdEncoding.DecodeString(string(carry))
			if err != nil {
				return nil, err
			}
			out, carry = append(out, d...), nil
		}
		whole := len(run) / 4 * 4
		d, err := base64.StdEncoding.DecodeString(string(run[:whole]))
		if err != nil {
			return nil, err
		}
		out = append(out, d...)
		carry = append(carry, run[whole:]...)
	}
	if len(carry) > 0 {
		if len(carry) >= 2 {
			carry = append(carry, "=="[:4-len(carry)]...)
		}
		d, err := base64.StdEncoding.DecodeString(string(carry))
		if err != nil {
			return nil, err
		}
		out = append(out, d...)
	}
	return out, nil
}

// TestDecodeBase64Runs compares decodeBase64 with the plain reading on
// base64 with stray padding, bad characters and odd wrapping.
func TestDecodeBase64Runs(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := 0; i < 20000; i++ {
		n := r.IntN(80)
		in := make([]byte, n)
		for j := range in {
			switch k := r.IntN(100); {
			case k < 3:
				in[j] = "\r\n \t"[r.IntN(4)]
			case k < 5:
				in[j] = '='
			case k < 6:
				in[j] = byte(r.IntN(256))
			default:
				in[j] = chars[r.IntN(64)]
			}
		}
		checkDecodeBase64(t, in)
	}
}

// FuzzDecodeBase64 compares decodeBase64 with the plain reading.
func FuzzDecodeBase64(f *testing.F) {
	f.Add([]byte("QUJD\r\nREVG\r\n"))
	f.Add([]byte("QQ==QQ==\nQUI"))
	f.Fuzz(func(t *testing.T, in []byte) { checkDecodeBase64(t, in) })
}

func checkDecodeBase64(t *testing.T, in []byte) {
	t.Helper()
	got, err := decodeBase64(in)
	want, werr := decodeBase64Runs(in)
	if (err == nil) != (werr == nil) || !bytes.Equal(got, want) {
		t.Fatalf("decodeBase64(%q) = %x, %v; want %x, %v", in, got, err, want, werr)
	}
}
