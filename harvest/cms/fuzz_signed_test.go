package cms

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// fuzzSignedContent is the detached content of the seeds made by
// testdata/gen-signed-seeds.sh.
const fuzzSignedContent = "Content-Type: text/plain\r\n\r\nfuzz seed\r\n"

// FuzzParseSignedData parses a ContentInfo and verifies every signer with
// its own certificate and with the first included one. Verification must
// never panic or hang, and must fail only with the package's errors.
//
//	go test -run x -fuzz FuzzParseSignedData -fuzztime 2m ./harvest/cms
func FuzzParseSignedData(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "signed-seeds", "*.der"))
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seeds in testdata/signed-seeds (run testdata/gen-signed-seeds.sh): %v", err)
	}
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	enclosing, _, _ := enclosingSeeds(f)
	for _, b := range enclosing {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ci, err := ParseContentInfo(data)
		if err != nil {
			return
		}
		sd, err := ParseSignedData(ci)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("ParseSignedData: unexpected error %v", err)
			}
			return
		}
		content := sd.EContent
		if content == nil {
			content = []byte(fuzzSignedContent)
		}
		for _, si := range sd.Signers {
			_ = si.ID.String()
			if si.EncryptionKeyPreference != nil {
				_ = si.EncryptionKeyPreference.String()
			}
			var certs []*x509.Certificate
			if len(sd.Certificates) > 0 {
				certs = append(certs, sd.Certificates[0])
			}
			if c := sd.FindCertificate(si, nil); c != nil {
				certs = append(certs, c)
			}
			for _, c := range certs {
				if err := sd.Verify(si, c, content); err != nil && !isSignedError(err) {
					t.Fatalf("Verify: unexpected error %v", err)
				}
			}
		}
	})
}

// TestSignedSeedsVerify makes sure the fuzz seeds (OpenSSL output) reach
// the end of Verify: every signer of every seed verifies.
func TestSignedSeedsVerify(t *testing.T) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "signed-seeds", "*.der"))
	if len(seeds) == 0 {
		t.Fatal("no seeds in testdata/signed-seeds")
	}
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		sd := parseSignedFile(t, b)
		content := sd.EContent
		if content == nil {
			content = []byte(fuzzSignedContent)
		}
		for i, si := range sd.Signers {
			if err := sd.Verify(si, sd.FindCertificate(si, nil), content); err != nil {
				t.Errorf("%s: signer %d: %v", s, i, err)
			}
		}
	}
}
