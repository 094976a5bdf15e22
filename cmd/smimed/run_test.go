package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/imapwatch/dovecottest"
)

// TestRunBinarySignals builds smimed and runs the service as systemd
// would: it must say READY=1 on the notify socket, process the mail there,
// and on SIGTERM say STOPPING=1 and exit 0 within 10 s.
func TestRunBinarySignals(t *testing.T) {
	d := dovecottest.Start(t)
	d.AddUser(t, "ceo", "pw-ceo")
	msg, err := os.ReadFile(filepath.Join(fixtures, "msg", "signed-rsa-sha256.eml"))
	if err != nil {
		t.Fatal(err)
	}
	d.Deliver(t, "ceo", "INBOX", msg)

	cfg := writeAccountConfig(t, "", d.Addr(), "")
	bin := buildBinary(t)
	sockDir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	sock := filepath.Join(sockDir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	notes := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			notes <- string(buf[:n])
		}
	}()
	waitNote := func(prefix string) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case n := <-notes:
				if strings.HasPrefix(n, prefix) {
					return
				}
			case <-deadline:
				t.Fatalf("no %s on the notify socket", prefix)
			}
		}
	}

	var logs lockedBuf
	cmd := exec.Command(bin, "run", "--config", cfg)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitNote("READY=1")
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "message processed") {
		if time.Now().After(deadline) {
			t.Fatalf("message not processed:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	waitNote("STOPPING=1")
	err = cmd.Wait()
	if err != nil {
		t.Fatalf("smimed run after SIGTERM: %v\n%s", err, logs.String())
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("shutdown took %s, want under 10 s", took)
	}
	if !strings.Contains(logs.String(), "verdicts=valid") {
		t.Errorf("log lacks the verdict:\n%s", logs.String())
	}
}

// writeAccountConfig writes a config (see writeConfig) watching the INBOX
// of the Dovecot user "ceo" (password "pw-ceo") at addr; accountExtra is
// added to the account's table.
func writeAccountConfig(t *testing.T, extra, addr, accountExtra string) string {
	t.Helper()
	cfg := writeConfig(t, extra)
	dir := filepath.Dir(cfg)
	if err := os.WriteFile(filepath.Join(dir, "ceo.pass"), []byte("pw-ceo\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "\n[[accounts]]\nname = \"ceo\"\nserver = %q\ntls = \"none\"\nusername = \"ceo\"\npassword_file = \"ceo.pass\"\nfolders = [\"INBOX\"]\n%s\n", addr, accountExtra)
	return cfg
}

// buildBinary builds smimed into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "smimed")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// lockedBuf is a bytes buffer safe for the writer goroutine of exec.
type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
