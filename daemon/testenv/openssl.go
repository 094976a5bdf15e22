package testenv

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestdataPath is the path of a file below the repository's testdata.
func TestdataPath(tb testing.TB, parts ...string) string {
	tb.Helper()
	return filepath.Join(append([]string{RepoRoot(tb), "testdata"}, parts...)...)
}

// OpenSSLFingerprint is the SHA-256 fingerprint of the PEM certificate
// at path as `openssl x509 -fingerprint -sha256` prints it, in the form
// smimed uses: lower-case hex without colons. The tests compare smimed's
// fingerprints against it.
func OpenSSLFingerprint(tb testing.TB, path string) string {
	tb.Helper()
	out, err := exec.Command("openssl", "x509", "-in", path, "-noout", "-fingerprint", "-sha256").Output()
	if err != nil {
		tb.Fatalf("openssl x509 -fingerprint %s: %v", path, err)
	}
	_, fp, ok := strings.Cut(strings.TrimSpace(string(out)), "=")
	if !ok {
		tb.Fatalf("openssl x509 -fingerprint %s: no fingerprint in %q", path, out)
	}
	return strings.ToLower(strings.ReplaceAll(fp, ":", ""))
}
