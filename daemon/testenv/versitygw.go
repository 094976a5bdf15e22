package testenv

// A private S3 server with Object Lock for the WORM copy's tests:
// versitygw (Apache-2.0, github.com/versity/versitygw) with its posix
// backend, which keeps objects as files and their metadata (retention,
// legal hold, checksums) in user extended attributes, and bucket
// versioning in a directory of its own. .ci/test-deps installs the pinned
// version with go install.

import (
	"debug/buildinfo"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// VersityGWVersion is the versitygw module version the tests run against
// (.ci/test-deps installs the same).
const VersityGWVersion = "v1.8.0"

const versityHint = "install it with: GOBIN=\"$(go env GOPATH)/bin\" go install github.com/versity/versitygw/cmd/versitygw@" + VersityGWVersion + " (or .ci/test-deps install)"

// S3 is a running private versitygw.
type S3 struct {
	Endpoint  string // http://127.0.0.1:PORT
	AccessKey string
	SecretKey string
	bin       string
	dir       string
	port      int
	mu        sync.Mutex
	cmd       *exec.Cmd
	log       *LockedBuffer
}

// FindVersityGW returns the versitygw binary: on PATH or in go env
// GOPATH's bin, built from the pinned module version.
func FindVersityGW() (string, error) {
	p, err := exec.LookPath("versitygw")
	if err != nil {
		gopath, gerr := exec.Command("go", "env", "GOPATH").Output()
		if gerr != nil {
			return "", fmt.Errorf("versitygw is not on PATH and go env GOPATH failed: %v", gerr)
		}
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(gopath))) {
			if c := filepath.Join(dir, "bin", "versitygw"); fileExists(c) {
				p, err = c, nil
				break
			}
		}
		if err != nil {
			return "", errors.New("versitygw is not on PATH nor in $(go env GOPATH)/bin")
		}
	}
	bi, err := buildinfo.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("%s: %v", p, err)
	}
	if bi.Main.Path != "github.com/versity/versitygw" || bi.Main.Version != VersityGWVersion {
		return "", fmt.Errorf("%s is %s %s, the tests want github.com/versity/versitygw %s", p, bi.Main.Path, bi.Main.Version, VersityGWVersion)
	}
	return p, nil
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// StartS3 starts a private versitygw on loopback and registers its Stop
// with t.Cleanup. It skips t, saying why, when versitygw (the pinned
// version) is missing or the temporary directory has no user extended
// attributes, and fails t instead under SMIMED_REQUIRE_SERVERS=1.
func StartS3(t testing.TB) *S3 {
	t.Helper()
	bin, err := FindVersityGW()
	if err != nil {
		Unavailable(t, "testenv: no S3 server with Object Lock for the WORM tests: %v; %s", err, versityHint)
	}
	dir := t.TempDir()
	if err := syscall.Setxattr(dir, "user.smimed-probe", []byte("1"), 0); err != nil {
		Unavailable(t, "testenv: %s has no user extended attributes (%v), which versitygw's posix backend needs", dir, err)
	}
	for _, sub := range []string{"root", "versions"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	s := &S3{bin: bin, dir: dir, AccessKey: "smimedtest", SecretKey: "smimedtest-secret-0123456789"}
	t.Cleanup(s.Stop)
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		if s.port, err = FreePort(); err != nil {
			t.Fatal(err)
		}
		s.Endpoint = "http://127.0.0.1:" + strconv.Itoa(s.port)
		if lastErr = s.start(); lastErr == nil {
			return s
		}
	}
	t.Fatalf("testenv: cannot start versitygw: %v\nlog:\n%s", lastErr, s.Log())
	return nil
}

// start runs versitygw on s.port (the same port and directories each
// time: a restart keeps the buckets) and waits until it answers.
func (s *S3) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = &LockedBuffer{}
	cmd := exec.Command(s.bin, "--port", "127.0.0.1:"+strconv.Itoa(s.port),
		"posix", "--versioning-dir", filepath.Join(s.dir, "versions"), filepath.Join(s.dir, "root"))
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd = cmd
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			s.cmd = nil
			return fmt.Errorf("versitygw exited: %v", err)
		default:
		}
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(s.port), 200*time.Millisecond); err == nil {
			c.Close()
			go func() { <-exited }()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	<-exited
	s.cmd = nil
	return errors.New("versitygw did not listen within 20 s")
}

// Stop ends the server (a stopped server can be started again by Start).
func (s *S3) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	p := s.cmd.Process
	p.Signal(syscall.SIGTERM)
	EndProcesses(func() []int {
		if Alive(p.Pid) {
			return []int{p.Pid}
		}
		return nil
	}, 5*time.Second)
	s.cmd = nil
}

// Start starts a stopped server again on the same address and data.
func (s *S3) Start(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatalf("testenv: restarting versitygw: %v\nlog:\n%s", err, s.Log())
	}
}

// Log is what the server printed.
func (s *S3) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return ""
	}
	return s.log.String()
}

// ObjectFile is where the posix backend keeps the current version of an
// object: removing it makes the object vanish behind the server's back
// (a lost object, for verify's tests).
func (s *S3) ObjectFile(bucket, key string) string {
	return filepath.Join(s.dir, "root", bucket, filepath.FromSlash(key))
}

// WormTable writes dir/s3.cred with the server's key (the credentials
// file format of [archive.worm]) and returns an [archive.worm] table for
// bucket on this server: path-style, governance mode.
func (s *S3) WormTable(tb testing.TB, dir, bucket string) string {
	tb.Helper()
	cred := fmt.Sprintf("# the test server's key\naccess_key_id = %s\nsecret_access_key = %q\n", s.AccessKey, s.SecretKey)
	if err := os.WriteFile(filepath.Join(dir, "s3.cred"), []byte(cred), 0o600); err != nil {
		tb.Fatal(err)
	}
	return fmt.Sprintf("\n[archive.worm]\nendpoint = %q\nbucket = %q\nmode = \"governance\"\ncredentials_file = \"s3.cred\"\npath_style = true\n", s.Endpoint, bucket)
}
