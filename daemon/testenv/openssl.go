package testenv

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The tests take their expected values from OpenSSL (the openssl
// command of OpenSSL 3), never from the code under test. These helpers
// run it.

const opensslHint = "the tests take their expected values from OpenSSL 3; install it (Debian/Ubuntu: apt-get install openssl)"

// NeedOpenSSL fails (it does not skip) the test when the openssl command
// is not in PATH.
func NeedOpenSSL(tb testing.TB) {
	tb.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		tb.Fatalf("openssl not found in PATH (%v): %s", err, opensslHint)
	}
}

// OpenSSL runs openssl with args in dir ("" for the test's working
// directory) and returns its standard output. It fails the test, with
// openssl's standard error, when openssl fails.
func OpenSSL(tb testing.TB, dir string, args ...string) []byte {
	tb.Helper()
	return OpenSSLInput(tb, dir, nil, args...)
}

// OpenSSLInput is OpenSSL with stdin as openssl's standard input.
func OpenSSLInput(tb testing.TB, dir string, stdin []byte, args ...string) []byte {
	tb.Helper()
	NeedOpenSSL(tb)
	stdout, stderr, err := runOpenSSL(dir, stdin, args)
	if err != nil {
		tb.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return stdout
}

// OpenSSLCombined is OpenSSL for the commands that report on standard
// error (openssl pkcs12 -info): it returns standard output followed by
// standard error.
func OpenSSLCombined(tb testing.TB, dir string, args ...string) []byte {
	tb.Helper()
	NeedOpenSSL(tb)
	stdout, stderr, err := runOpenSSL(dir, nil, args)
	if err != nil {
		tb.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return append(stdout, stderr...)
}

// OpenSSLTry runs openssl like OpenSSLInput (stdin may be nil) but leaves
// the verdict to the test, for the cases where openssl must refuse: it
// returns standard output followed by standard error, and openssl's error.
func OpenSSLTry(tb testing.TB, dir string, stdin []byte, args ...string) ([]byte, error) {
	tb.Helper()
	NeedOpenSSL(tb)
	stdout, stderr, err := runOpenSSL(dir, stdin, args)
	return append(stdout, stderr...), err
}

func runOpenSSL(dir string, stdin []byte, args []string) (stdout, stderr []byte, err error) {
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.Bytes(), errOut.Bytes(), err
}

// OpenSSLFingerprint is the SHA-256 fingerprint of the PEM certificate
// at path (the first one, if the file holds several) as `openssl x509
// -fingerprint -sha256` prints it, in the form smimed uses: lower-case
// hex without colons. The tests compare smimed's fingerprints against it.
func OpenSSLFingerprint(tb testing.TB, path string) string {
	tb.Helper()
	_, fp := OpenSSLField(tb, path, "-fingerprint", "-sha256")
	return strings.ToLower(strings.ReplaceAll(fp, ":", ""))
}

// OpenSSLField is one field of `openssl x509 -noout` for the PEM
// certificate at path, e.g. OpenSSLField(tb, path, "-enddate"): the line
// openssl prints, cut at its first "=" into name and value (for
// -fingerprint, name is e.g. "sha256 Fingerprint" and value is upper-case
// hex with colons, as openssl prints it).
func OpenSSLField(tb testing.TB, path string, args ...string) (name, value string) {
	tb.Helper()
	out := strings.TrimSpace(string(OpenSSL(tb, "", append([]string{"x509", "-in", path, "-noout"}, args...)...)))
	name, value, ok := strings.Cut(out, "=")
	if !ok {
		tb.Fatalf("openssl x509 %s -in %s: no name=value in %q", strings.Join(args, " "), path, out)
	}
	return name, value
}

// OpenSSLDate is the notBefore (which "startdate") or notAfter ("enddate")
// of the PEM certificate at path as `openssl x509` prints it, in UTC.
func OpenSSLDate(tb testing.TB, path, which string) time.Time {
	tb.Helper()
	_, v := OpenSSLField(tb, path, "-"+which)
	tm, err := time.Parse("Jan _2 15:04:05 2006 MST", v)
	if err != nil {
		tb.Fatalf("openssl x509 -%s -in %s: date %q: %v", which, path, v, err)
	}
	return tm.UTC()
}

// OpenSSLSign signs entity (a MIME entity) as the fixture certificate
// signer (testdata/pki/SIGNER.crt, issued under the intermediate, whose
// certificate goes along) with `openssl cms -sign` and returns the
// multipart/signed entity. The signer's key is copied into dir (mode
// 0600) first.
func OpenSSLSign(tb testing.TB, dir, signer string, entity []byte) []byte {
	tb.Helper()
	CopyPKI(tb, dir, signer+".key")
	return OpenSSLInput(tb, dir, entity, "cms", "-sign", "-signer", TestdataPath(tb, "pki", signer+".crt"),
		"-inkey", filepath.Join(dir, signer+".key"), "-certfile", TestdataPath(tb, "pki", "intermediate.pem"))
}
