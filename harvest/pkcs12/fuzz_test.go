package pkcs12

import (
	"encoding/asn1"
	"os"
	"path/filepath"
	"testing"

	"github.com/smimed/smimed/harvest/cms"
)

// seedPassword is the password of the files testdata/gen-seeds.sh writes.
const seedPassword = "fuzz"

// fuzzLimits keep each input cheap: the seeds use 1 iteration and the RFC
// 9579 vectors 2048, so mutated counts are capped near that.
var fuzzLimits = limits{maxIter: 2048, budget: 8192}

// FuzzDecode feeds mutated PKCS#12 files to the decoder. Seeds: the files
// of testdata/seeds (OpenSSL, every supported scheme), their BER
// re-encodings, and the RFC 9579 PBMAC1 vectors. Invariants: no panic, no
// hang, every error matches a sentinel, success means a key.
func FuzzDecode(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "seeds", "*.p12"))
	if len(seeds) == 0 {
		f.Fatal("no seeds in testdata/seeds; run testdata/gen-seeds.sh")
	}
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, seedPassword)
		f.Add(berOuter(f, data), seedPassword)
	}
	rfc, _ := filepath.Glob(filepath.Join("testdata", "rfc9579", "a[13].p12"))
	for _, s := range rfc {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, "1234")
	}
	f.Fuzz(func(t *testing.T, data []byte, password string) {
		checkFuzzResult(t, data, password)
		// A mutation behind the MAC only ever reaches the MAC check;
		// without it the parser sees the mutated AuthenticatedSafe too.
		if stripped := stripMAC(data); stripped != nil {
			checkFuzzResult(t, stripped, password)
		}
	})
}

func checkFuzzResult(t *testing.T, data []byte, password string) {
	key, certs, err := decode(data, password, fuzzLimits)
	if err != nil {
		if !isSentinel(err) {
			t.Fatalf("error %q matches no sentinel", err)
		}
		if key != nil || certs != nil {
			t.Fatal("key or certificates returned with an error")
		}
		return
	}
	if key == nil {
		t.Fatal("success without a key")
	}
}

// stripMAC returns the PFX without its macData, or nil if data is not a
// PFX with one.
func stripMAC(data []byte) []byte {
	der, err := cms.ToDER(data)
	if err != nil {
		return nil
	}
	var pfx struct {
		Version  int
		AuthSafe asn1.RawValue
		MacData  asn1.RawValue `asn1:"optional"`
	}
	if _, err := asn1.Unmarshal(der, &pfx); err != nil || pfx.MacData.FullBytes == nil {
		return nil
	}
	out, err := asn1.Marshal(struct {
		Version  int
		AuthSafe asn1.RawValue
	}{pfx.Version, pfx.AuthSafe})
	if err != nil {
		return nil
	}
	return out
}
