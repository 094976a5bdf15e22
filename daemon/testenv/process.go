package testenv

// The processes of the test servers (Dovecot here, Cyrus and Courier in
// daemon/imapconn/servertest): a port to listen on, and ending them.

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// FreePort is a TCP port on 127.0.0.1 that nothing listens on just now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Alive reports whether pid runs; a zombie (exited, not yet reaped by its
// parent) does not.
func Alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || len(stat) <= i+2 || stat[i+2] != 'Z'
}

// EndProcesses sends SIGTERM to the processes list returns until it
// returns none, then SIGKILL after grace, and returns those that survive
// SIGKILL 5 s more.
func EndProcesses(list func() []int, grace time.Duration) []int {
	deadline := time.Now().Add(grace)
	signal := syscall.SIGTERM
	for {
		pids := list()
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			if signal == syscall.SIGKILL {
				return pids
			}
			signal, deadline = syscall.SIGKILL, time.Now().Add(5*time.Second)
		}
		for _, pid := range pids {
			syscall.Kill(pid, signal)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// BuildSmimed builds the smimed binary from the repository into a
// temporary directory and returns its path.
func BuildSmimed(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "smimed")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/smimed")
	cmd.Dir = RepoRoot(tb)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
