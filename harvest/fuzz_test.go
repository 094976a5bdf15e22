package harvest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzProcess feeds arbitrary bytes through the whole engine: MIME layer
// dispatch, boundary scanning, CMS parsing, decryption attempts with real
// keys and signature verdicts. It must never panic or hang, and the
// plaintext must stay bounded by the input.
func FuzzProcess(f *testing.F) {
	addCorpusSeeds(f)
	f.Add([]byte("From: a@b\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=x\r\n\r\n--x\r\n\r\nhi\r\n--x\r\nContent-Type: application/pkcs7-signature\r\n\r\nMIIB\r\n--x--\r\n"))
	f.Add([]byte("Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQA=\r\n"))
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

// addCorpusSeeds seeds a fuzz target with the fixture messages.
func addCorpusSeeds(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("..", "testdata", "msg", "*.eml"))
	for _, s := range seeds {
		if data, err := os.ReadFile(s); err == nil {
			f.Add(data)
		}
	}
}
