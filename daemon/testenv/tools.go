package testenv

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// NeedTool skips the test when the command name is not installed, naming
// the Debian package that has it, or fails it when SMIMED_REQUIRE_SERVERS=1
// (as CI sets), so that a missing tool never passes silently there.
func NeedTool(tb testing.TB, name, debianPackage string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	Unavailable(tb, "%s not installed (Debian package %s; .ci/test-deps installs it)", name, debianPackage)
	return ""
}

// Unavailable skips the test because what it needs (a tool, a server)
// cannot run here, saying why, or fails it when SMIMED_REQUIRE_SERVERS=1
// (as CI sets), so that nothing missing passes silently there.
func Unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("SMIMED_REQUIRE_SERVERS") == "1" {
		tb.Fatalf("%s; SMIMED_REQUIRE_SERVERS=1 makes this a failure", msg)
	}
	tb.Skipf("%s: skipped (SMIMED_REQUIRE_SERVERS=1 makes this a failure)", msg)
}

// run runs a command and returns stdout followed by stderr, and its error.
func run(dir string, env []string, stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// NSSDB is an NSS certificate database (the engine of Thunderbird) in a
// directory of its own, driven by certutil, pk12util and cmsutil
// (Debian package libnss3-tools).
type NSSDB struct {
	Dir string
}

// NewNSSDB makes an empty database trusting the PEM CA certificates at
// roots for e-mail.
func NewNSSDB(tb testing.TB, roots ...string) *NSSDB {
	tb.Helper()
	NeedTool(tb, "certutil", "libnss3-tools")
	NeedTool(tb, "cmsutil", "libnss3-tools")
	NeedTool(tb, "pk12util", "libnss3-tools")
	d := &NSSDB{Dir: tb.TempDir()}
	d.must(tb, "certutil", "-N", "-d", "sql:"+d.Dir, "--empty-password")
	for i, r := range roots {
		d.must(tb, "certutil", "-A", "-d", "sql:"+d.Dir, "-n", fmt.Sprintf("root%d", i), "-t", "C,C,C", "-i", r)
	}
	return d
}

func (d *NSSDB) must(tb testing.TB, name string, args ...string) {
	tb.Helper()
	if out, err := run(d.Dir, nil, nil, name, args...); err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// ImportKey imports a certificate and its private key (PEM files), made
// into a PKCS #12 file by openssl.
func (d *NSSDB) ImportKey(tb testing.TB, cert, key string) {
	tb.Helper()
	p12 := filepath.Join(d.Dir, filepath.Base(cert)+".p12")
	OpenSSL(tb, "", "pkcs12", "-export", "-in", cert, "-inkey", key, "-out", p12, "-passout", "pass:nss", "-name", filepath.Base(cert))
	d.must(tb, "pk12util", "-i", p12, "-d", "sql:"+d.Dir, "-W", "nss")
}

// Decode runs cmsutil -D on the DER CMS object der (decrypting and
// verifying what it can) and returns the content it wrote, and its
// messages with the error when it failed. With detached, der is a
// detached signature over the content in that file.
func (d *NSSDB) Decode(tb testing.TB, der []byte, detached string) (content, log []byte, err error) {
	tb.Helper()
	in := filepath.Join(d.Dir, "in.der")
	out := filepath.Join(d.Dir, "out")
	os.Remove(out)
	if err := os.WriteFile(in, der, 0o600); err != nil {
		tb.Fatal(err)
	}
	args := []string{"-D", "-i", in, "-d", "sql:" + d.Dir, "-o", out}
	if detached != "" {
		args = append(args, "-c", detached)
	}
	log, err = run(d.Dir, nil, nil, "cmsutil", args...)
	content, _ = os.ReadFile(out)
	return content, log, err
}

// GPGSM is a gpgsm (GnuPG's S/MIME tool) home of its own, trusting some
// roots, without CRL checks or dirmngr.
type GPGSM struct {
	Home string
}

// NewGPGSM makes a GNUPGHOME that trusts the PEM root certificates at
// roots and knows the intermediates. Cleanup stops its agent.
func NewGPGSM(tb testing.TB, roots []string, intermediates ...string) *GPGSM {
	tb.Helper()
	NeedTool(tb, "gpgsm", "gpgsm")
	home, err := os.MkdirTemp("", "gpgsm")
	if err != nil {
		tb.Fatal(err)
	}
	g := &GPGSM{Home: home}
	tb.Cleanup(func() {
		run(home, g.env(), nil, "gpgconf", "--kill", "all")
		os.RemoveAll(home)
	})
	if err := os.WriteFile(filepath.Join(home, "gpgsm.conf"), []byte("disable-crl-checks\ndisable-dirmngr\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	var trust strings.Builder
	for _, r := range append(append([]string{}, roots...), intermediates...) {
		if out, err := run(home, g.env(), nil, "gpgsm", "--batch", "--import", r); err != nil {
			tb.Fatalf("gpgsm --import %s: %v\n%s", r, err, out)
		}
	}
	for _, r := range roots {
		c := ReadCert(tb, r)
		sum := sha1.Sum(c.Raw)
		fmt.Fprintf(&trust, "%s S relax\n", strings.ToUpper(hex.EncodeToString(sum[:])))
	}
	if err := os.WriteFile(filepath.Join(home, "trustlist.txt"), []byte(trust.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	return g
}

func (g *GPGSM) env() []string { return []string{"GNUPGHOME=" + g.Home} }

// Verify runs gpgsm --verify on a detached signature (DER or PEM file sig)
// over the content file; it returns gpgsm's messages and its error.
func (g *GPGSM) Verify(tb testing.TB, sig, content string) ([]byte, error) {
	tb.Helper()
	return run(g.Home, g.env(), nil, "gpgsm", "--batch", "--status-fd", "1", "--verify", sig, content)
}
