package testenv

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The helpers are checked against what Go's crypto/x509 and Dovecot's own
// numbering say, so that a broken helper cannot make the tests that use it
// pass.

func fixtureCert(t *testing.T, name string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(Testdata(t, "pki", name))
	if block == nil {
		t.Fatalf("%s: no PEM", name)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestOpenSSLFingerprint(t *testing.T) {
	t.Parallel()
	c := fixtureCert(t, "alice.crt")
	sum := sha256.Sum256(c.Raw)
	if got, want := OpenSSLFingerprint(t, TestdataPath(t, "pki", "alice.crt")), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("OpenSSLFingerprint() = %s, want %s", got, want)
	}
}

func TestOpenSSLDate(t *testing.T) {
	t.Parallel()
	c := fixtureCert(t, "alice.crt")
	path := TestdataPath(t, "pki", "alice.crt")
	if got := OpenSSLDate(t, path, "startdate"); !got.Equal(c.NotBefore) {
		t.Errorf("OpenSSLDate(startdate) = %v, want %v", got, c.NotBefore)
	}
	if got := OpenSSLDate(t, path, "enddate"); !got.Equal(c.NotAfter) {
		t.Errorf("OpenSSLDate(enddate) = %v, want %v", got, c.NotAfter)
	}
}

func TestOpenSSLRunners(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// The standard input reaches openssl, the output comes back, and
	// the command runs in dir.
	in := []byte("hello, openssl\n")
	if got := OpenSSLInput(t, dir, in, "base64", "-out", "b64.txt"); len(got) != 0 {
		t.Errorf("OpenSSLInput(base64 -out) printed %q", got)
	}
	if got := OpenSSL(t, dir, "base64", "-d", "-in", "b64.txt"); string(got) != string(in) {
		t.Errorf("OpenSSL(base64 -d) = %q, want %q", got, in)
	}
	// A refusal is returned, with openssl's words on standard error.
	out, err := OpenSSLTry(t, dir, nil, "x509", "-in", "missing.pem", "-noout")
	if err == nil || !strings.Contains(string(out), "missing.pem") {
		t.Errorf("OpenSSLTry(x509 -in missing.pem) = %q, %v; want an error naming the file", out, err)
	}
}

func TestDovecotUIDs(t *testing.T) {
	d := StartDovecot(t)
	d.AddUser(t, "u", "pw-u")
	msg := func(id string) []byte {
		return []byte("From: a@example.org\r\nTo: u@example.org\r\nMessage-ID: <" + id + "@example.org>\r\n\r\nbody\r\n")
	}
	d.Deliver(t, "u", "Other", msg("other"))
	if got := d.UIDs(t, "u", "INBOX"); len(got) != 0 {
		t.Errorf("UIDs(empty INBOX) = %v, want none", got)
	}
	for _, id := range []string{"a", "b", "c"} {
		d.Deliver(t, "u", "INBOX", msg(id))
	}
	// Dovecot numbers a new mailbox's messages from 1.
	if got, want := d.UIDs(t, "u", "INBOX"), []uint32{1, 2, 3}; !slices.Equal(got, want) {
		t.Errorf("UIDs(INBOX) = %v, want %v", got, want)
	}
	d.Doveadm(t, "mailbox", "update", "-u", "u", "--uid-validity", "4242", "INBOX")
	if got := d.UIDValidity(t, "u", "INBOX"); got != 4242 {
		t.Errorf("UIDValidity() = %d, want 4242 (set with doveadm mailbox update)", got)
	}
}

// TestVersityGWPinned: CI installs the versitygw StartS3 wants.
func TestVersityGWPinned(t *testing.T) {
	deps, err := os.ReadFile(filepath.Join(RepoRoot(t), ".ci", "test-deps"))
	if err != nil {
		t.Fatal(err)
	}
	want := "github.com/versity/versitygw/cmd/versitygw  " + VersityGWVersion
	if !strings.Contains(string(deps), want) {
		t.Fatalf(".ci/test-deps does not install %q (testenv.VersityGWVersion)", want)
	}
}
