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
	"strings"
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

// pidFile is the process id in the file at path, 0 when there is none.
func pidFile(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// processesWhere are the live processes for which match holds; match is
// given the pid and its /proc directory.
func processesWhere(match func(pid int, proc string) bool) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if match(pid, filepath.Join("/proc", e.Name())) && Alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// masterAndWhere are the live processes of a server: its master process
// first (master; 0 when its pid file is gone), then every other process
// for which match holds.
func masterAndWhere(master int, match func(pid int, proc string) bool) []int {
	pids := processesWhere(func(pid int, proc string) bool {
		return pid != master && match(pid, proc)
	})
	if master > 0 && Alive(master) {
		pids = append([]int{master}, pids...)
	}
	return pids
}

// cwdIn reports whether the process of the /proc directory proc works in
// dir or below it.
func cwdIn(proc, dir string) bool {
	return linkIn(filepath.Join(proc, "cwd"), dir)
}

// linkIn reports whether the symbolic link leads to dir or below it.
func linkIn(link, dir string) bool {
	p, err := os.Readlink(link)
	return err == nil && (p == dir || strings.HasPrefix(p, dir+"/"))
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
