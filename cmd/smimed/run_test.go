package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smimed/smimed/daemon/testenv"
)

// TestRunBinarySignals builds smimed and runs the service as systemd
// would: it must say READY=1 on the notify socket, process the mail there
// and say so in STATUS=; on SIGHUP say RELOADING=1 with MONOTONIC_USEC,
// start the account added meanwhile and say READY=1; and on SIGTERM say
// STOPPING=1 and exit 0 within 10 s.
func TestRunBinarySignals(t *testing.T) {
	d := testenv.StartDovecot(t)
	d.AddUser(t, "ceo", testenv.Password("ceo"))
	d.Deliver(t, "ceo", "INBOX", testenv.Testdata(t, "msg", "signed-rsa-sha256.eml"))

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
	waitNote := func(re string) string {
		t.Helper()
		want := regexp.MustCompile(re)
		deadline := time.After(30 * time.Second)
		for {
			select {
			case n := <-notes:
				if want.MatchString(n) {
					return n
				}
			case <-deadline:
				t.Fatalf("no note matching %s on the notify socket", re)
			}
		}
	}

	var logs testenv.LockedBuffer
	cmd := exec.Command(bin, "run", "--config", cfg)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitNote("^READY=1$")
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "message processed") {
		if time.Now().After(deadline) {
			t.Fatalf("message not processed:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitNote(`^STATUS=ceo: 1/1 folders up, 1 processed, 0 failed$`)

	// The admin commands reach the running daemon through its control
	// socket (state_dir/control.sock here): the record is listed, and the
	// audit log names this process as the reader.
	code, out, errOut := runCmd(nil, "archive", "list", "--json", "--config", cfg)
	if code != exitOK || strings.Count(out, "\n") != 1 || !strings.Contains(out, `"status":["signed-valid"]`) {
		t.Errorf("archive list through the daemon: exit %d, %q, %q", code, out, errOut)
	}
	code, out, errOut = runCmd(nil, "archive", "audit", "--json", "--config", cfg)
	if code != exitOK || !strings.Contains(out, `"via":"socket"`) || !strings.Contains(out, fmt.Sprintf(`"pid":%d`, os.Getpid())) {
		t.Errorf("archive audit through the daemon: exit %d, %q, %q", code, out, errOut)
	}

	// SIGHUP with an account added: RELOADING=1 with the monotonic clock
	// (systemd's Type=notify-reload), then READY=1, and the new account
	// runs.
	d.AddAccount(t, filepath.Dir(cfg), "sales")
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(f, "\n"+testenv.Account("sales", d.Addr(), ""))
	f.Close()
	before := monotonicUsec(t)
	cmd.Process.Signal(syscall.SIGHUP)
	note := waitNote(`^RELOADING=1\nMONOTONIC_USEC=[1-9][0-9]*$`)
	if usec, _ := strconv.ParseUint(strings.TrimPrefix(note, "RELOADING=1\nMONOTONIC_USEC="), 10, 64); usec < before || usec > monotonicUsec(t) {
		t.Errorf("MONOTONIC_USEC=%d, want CLOCK_MONOTONIC between %d and now", usec, before)
	}
	waitNote(`^READY=1$`)
	// The log comes through a pipe, the notes through a socket: wait.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "added=sales"); {
		if time.Now().After(deadline) {
			t.Fatalf("log lacks the reload summary with added=sales:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitNote(`^STATUS=ceo: 1/1 folders up, 1 processed, 0 failed; sales: 1/1 folders up, 0 processed, 0 failed$`)

	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	waitNote("^STOPPING=1$")
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
	testenv.WritePasswordFile(t, filepath.Dir(cfg), "ceo")
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprint(f, "\n"+testenv.Account("ceo", addr, accountExtra))
	return cfg
}

// buildBinary builds smimed into a temporary directory.
func buildBinary(t *testing.T) string { return testenv.BuildSmimed(t) }

// monotonicUsec reads CLOCK_MONOTONIC in microseconds, as systemd does.
func monotonicUsec(t *testing.T) uint64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Sec)*1e6 + uint64(ts.Nsec)/1e3
}
