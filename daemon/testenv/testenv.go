// Package testenv is what the tests of every package share: the
// repository's test data and a log buffer several goroutines write to
// (this file), and the real programs the tests take their expected
// values from: the openssl command (openssl.go), a private Dovecot
// (dovecot.go) read and filled with doveadm (doveadm.go), a private
// Postfix set up as docs/gateway.md says (postfix.go), an SMTP/LMTP sink
// that records messages or refuses them (smtpsink.go), and a TCP proxy
// that cuts connections (proxy.go).
//
// It is imported by tests (and by the test servers of
// daemon/imapconn/servertest) only, and imports nothing of smimed, so
// that the in-package tests of every package can use it without an
// import cycle.
package testenv

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// RepoRoot is the repository's top directory: the nearest directory
// above the test's working directory that holds go.mod.
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("testenv: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Testdata reads a file below the repository's testdata directory, e.g.
// Testdata(t, "msg", "signed.eml").
func Testdata(tb testing.TB, parts ...string) []byte {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join(append([]string{RepoRoot(tb), "testdata"}, parts...)...))
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// TestdataPath is the path of a file below the repository's testdata.
func TestdataPath(tb testing.TB, parts ...string) string {
	tb.Helper()
	return filepath.Join(append([]string{RepoRoot(tb), "testdata"}, parts...)...)
}

// LockedBuffer collects log output from several goroutines.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// SocketDir is a new directory for unix sockets, removed after the test:
// under os.TempDir, so that the path stays within the 107 bytes a socket
// address holds (t.TempDir's names can be longer).
func SocketDir(tb testing.TB) string {
	tb.Helper()
	d, err := os.MkdirTemp("", "smimedctl")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// Numbered returns msg with bytes of its own: a header field with n on
// top and the Message-ID <scenario-n@test.smimed.example> in its header
// (the body, and so any signature, is unchanged).
func Numbered(msg []byte, n int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "X-Scenario-Seq: %d\r\n", n)
	inHeader := true
	for line := range bytes.SplitAfterSeq(msg, []byte("\n")) {
		if inHeader && bytes.HasPrefix(bytes.ToLower(line), []byte("message-id:")) {
			fmt.Fprintf(&b, "Message-ID: <scenario-%d@test.smimed.example>\r\n", n)
			continue
		}
		inHeader = inHeader && len(bytes.TrimSpace(line)) > 0
		b.Write(line)
	}
	return b.Bytes()
}
