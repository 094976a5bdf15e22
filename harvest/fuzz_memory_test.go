package harvest

import (
	"bytes"
	"path/filepath"
	"testing"
)

// FuzzProcessMemory feeds arbitrary bytes through the whole engine and
// measures what each input makes it allocate (runtime.MemStats.TotalAlloc
// before and after Process, which bounds the peak): at most
// memoryBound(len(input)) = 16 × size + 32 MiB, whatever the input; and the
// report's JSON, which the archive stores, at most MaxReportJSON. Seeded
// with the corpus and with the hostile shapes of issue 9 (item 4's fake
// CAs, item 5's empty RecipientInfos, nested signed layers).
func FuzzProcessMemory(f *testing.F) {
	addCorpusSeeds(f)
	f.Add(envelopedMessage(bytes.Repeat([]byte{0xa2, 0x00}, 2000), 64))
	f.Add(buildCostAttack(f, costAttack{fakes: 4, bits: 16384, exponent: 1<<31 - 1, signers: 4}))
	entity := []byte("Content-Type: text/plain\r\n\r\nhi\r\n")
	for i := 0; i < 3; i++ {
		entity = signedDataEntity(entity, nil, pemCert(f, filepath.Join(testdataDir, "pki", "alice.crt")),
			rsaSigner(f, testRSAKey(f, "alice.key")), 2)
	}
	f.Add(append([]byte("From: alice@partner.example\r\n"), entity...))
	eng := fuzzEngine(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		res, n := allocated(t, eng, data)
		if bound := memoryBound(len(data)); n > bound {
			t.Fatalf("Process() allocated %d bytes for %d bytes of input, bound %d", n, len(data), bound)
		}
		if j := reportJSON(t, res.Report); len(j) > MaxReportJSON {
			t.Fatalf("report JSON of %d bytes, bound %d", len(j), MaxReportJSON)
		}
	})
}
