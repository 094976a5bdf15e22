package testenv

// Running smimed's service in a test against a private IMAP server: its
// configuration directory (key files, password files, smimed.toml) and
// the start and stop of the service. The service is package daemon's
// Service, which testenv must not import (daemon's own tests import
// testenv): the tests build it and hand it to RunService.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Service is what RunService runs: smimed's daemon.Service.
type Service interface {
	Run(ctx context.Context) error
	Close() error
}

// RunService runs svc.Run in a goroutine and returns the function that
// stops it, which tb.Cleanup calls too: stop cancels Run's context, waits
// for Run to return (failing the test if that takes longer than within,
// when within > 0), fails the test if Run returned an error, and closes
// svc. Calling stop again does nothing.
func RunService(tb testing.TB, svc Service, within time.Duration) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var timeout <-chan time.Time // nil: no limit
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if within > 0 {
				timeout = time.After(within)
			}
			select {
			case err := <-done:
				if err != nil {
					tb.Errorf("Run() = %v", err)
				}
			case <-timeout:
				tb.Fatalf("Run() did not return within %s of the stop", within)
			}
			svc.Close()
		})
	}
	tb.Cleanup(stop)
	return stop
}

// Password is the password the tests give the IMAP user name.
func Password(name string) string { return "pw-" + name }

// WritePasswordFile writes Password(name) into dir/name.pass, the
// password_file of the account Account writes.
func WritePasswordFile(tb testing.TB, dir, name string) {
	tb.Helper()
	if err := os.WriteFile(filepath.Join(dir, name+".pass"), []byte(Password(name)+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// AddAccount adds the Dovecot user name with Password(name) and writes
// the password file dir/name.pass for smimed's account of that user.
func (s *Dovecot) AddAccount(tb testing.TB, dir, name string) {
	tb.Helper()
	s.AddUser(tb, name, Password(name))
	WritePasswordFile(tb, dir, name)
}

// Account is an [[accounts]] table of smimed's configuration: the IMAP
// user name at addr over plaintext (tls = "none": the test servers listen
// on loopback without TLS), the password in name.pass beside the
// configuration (WritePasswordFile), watching folders (the INBOX when none
// are given). extra, if any, ends the table.
func Account(name, addr, extra string, folders ...string) string {
	if len(folders) == 0 {
		folders = []string{"INBOX"}
	}
	q := make([]string, len(folders))
	for i, f := range folders {
		q[i] = fmt.Sprintf("%q", f)
	}
	a := fmt.Sprintf("[[accounts]]\nname = %q\nserver = %q\ntls = \"none\"\nusername = %q\npassword_file = %q\nfolders = [%s]\n",
		name, addr, name, name+".pass", strings.Join(q, ", "))
	if extra != "" {
		a += extra + "\n"
	}
	return a
}

// Config is a configuration of smimed: state in stateDir, the settings in
// head (top-level keys and tables), the partners' CA (ca-bundle.pem) as
// the only trust anchor, one [[keys]] entry per PEM key pair NAME.crt and
// NAME.key in keys, then accounts (see Account). The file names are
// relative to the configuration's directory (see CopyPKI).
func Config(stateDir, head string, keys []string, accounts ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "state_dir = %q\n%s\n[trust]\nsystem_roots = false\nca_files = [\"ca-bundle.pem\"]\n", stateDir, head)
	for _, k := range keys {
		fmt.Fprintf(&b, "[[keys]]\ncert_file = %q\nkey_file = %q\n", k+".crt", k+".key")
	}
	for _, a := range accounts {
		b.WriteString(a)
	}
	return b.String()
}

// CopyPKI copies the named files of testdata/pki into dir with mode 0600
// (smimed refuses key files others can read).
func CopyPKI(tb testing.TB, dir string, names ...string) {
	tb.Helper()
	for _, name := range names {
		if err := os.WriteFile(filepath.Join(dir, name), Testdata(tb, "pki", name), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
}
