package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listenNotify opens a unixgram socket at name (a path or "@abstract") and
// sets NOTIFY_SOCKET to it.
func listenNotify(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatalf("ListenUnixgram(%q) = %v", name, err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", name)
	return conn
}

// recv reads one datagram.
func recv(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	k, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("reading notification: %v", err)
	}
	return string(buf[:k])
}

// expectNone fails if a datagram is waiting.
func expectNone(t *testing.T, conn *net.UnixConn) {
	t.Helper()
	buf := make([]byte, 4096)
	conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if k, err := conn.Read(buf); err == nil {
		t.Fatalf("unexpected datagram %q", buf[:k])
	}
}

func testNotifierMessages(t *testing.T, conn *net.UnixConn) {
	n := NewNotifier()
	if !n.Enabled() {
		t.Fatalf("Enabled() = false with NOTIFY_SOCKET=%q", os.Getenv("NOTIFY_SOCKET"))
	}
	for _, tc := range []struct {
		name string
		send func() error
		want string
	}{
		{"Ready", n.Ready, "READY=1"},
		{"Stopping", n.Stopping, "STOPPING=1"},
		{"Watchdog", n.Watchdog, "WATCHDOG=1"},
		{"Status", func() error { return n.Status("watching 3 folders") }, "STATUS=watching 3 folders"},
		{"Status multi-line", func() error { return n.Status("a\nb\r\nc\rd") }, "STATUS=a b c d"},
	} {
		if err := tc.send(); err != nil {
			t.Fatalf("%s() = %v", tc.name, err)
		}
		if got := recv(t, conn); got != tc.want {
			t.Errorf("%s() sent %q, want %q", tc.name, got, tc.want)
		}
	}

	var before, after unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &before)
	if err := n.Reloading(); err != nil {
		t.Fatalf("Reloading() = %v", err)
	}
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &after)
	got := recv(t, conn)
	head, usecStr, ok := strings.Cut(got, "\nMONOTONIC_USEC=")
	if !ok || head != "RELOADING=1" {
		t.Fatalf("Reloading() sent %q, want RELOADING=1\\nMONOTONIC_USEC=<n>", got)
	}
	usec, err := strconv.ParseInt(usecStr, 10, 64)
	if err != nil {
		t.Fatalf("Reloading() MONOTONIC_USEC %q: %v", usecStr, err)
	}
	lo, hi := before.Nano()/1000, after.Nano()/1000
	if usec < lo || usec > hi {
		t.Errorf("Reloading() MONOTONIC_USEC = %d, want in [%d, %d]", usec, lo, hi)
	}
	expectNone(t, conn)
}

func TestNotifierPathSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "sdn") // t.TempDir() may exceed sun_path's 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	conn := listenNotify(t, filepath.Join(dir, "notify.sock"))
	testNotifierMessages(t, conn)
}

func TestNotifierAbstractSocket(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("abstract unix sockets are Linux-only")
	}
	conn := listenNotify(t, fmt.Sprintf("@smimed-test-%d-%d", os.Getpid(), time.Now().UnixNano()))
	testNotifierMessages(t, conn)
}

func TestNotifierUnset(t *testing.T) {
	// A listening socket that must receive nothing.
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	conn := listenNotify(t, filepath.Join(dir, "notify.sock"))
	os.Unsetenv("NOTIFY_SOCKET") // t.Setenv restores it afterwards

	n := NewNotifier()
	if n.Enabled() {
		t.Errorf("Enabled() = true without NOTIFY_SOCKET")
	}
	var nilNotifier *Notifier
	for _, nn := range []*Notifier{n, nilNotifier, {}} {
		for name, err := range map[string]error{
			"Ready": nn.Ready(), "Status": nn.Status("x"), "Stopping": nn.Stopping(),
			"Watchdog": nn.Watchdog(), "Reloading": nn.Reloading(),
		} {
			if err != nil {
				t.Errorf("%s() without NOTIFY_SOCKET = %v, want nil", name, err)
			}
		}
	}
	expectNone(t, conn)
}

func TestNotifierErrors(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "vsock:2:1234")
	if err := NewNotifier().Ready(); !errors.Is(err, ErrNotifySocket) {
		t.Errorf("Ready() to vsock address = %v, want %v", err, ErrNotifySocket)
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "missing.sock"))
	if err := NewNotifier().Ready(); err == nil {
		t.Errorf("Ready() to a missing socket = nil, want an error")
	}
}

func TestWatchdogInterval(t *testing.T) {
	pid := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		usec, pid string // "-" = unset
		want      time.Duration
		ok        bool
	}{
		{"30000000", "-", 30 * time.Second, true},
		{"30000000", pid, 30 * time.Second, true},
		{"30000000", "", 30 * time.Second, true},
		{"1", pid, time.Microsecond, true},
		{"30000000", strconv.Itoa(os.Getpid() + 1), 0, false},
		{"30000000", "self", 0, false},
		{"-", "-", 0, false},
		{"-", pid, 0, false},
		{"", "-", 0, false},
		{"0", "-", 0, false},
		{"-5", "-", 0, false},
		{"30s", "-", 0, false},
		{"99999999999999999999", "-", 0, false},
	} {
		for k, v := range map[string]string{"WATCHDOG_USEC": tc.usec, "WATCHDOG_PID": tc.pid} {
			t.Setenv(k, v)
			if v == "-" {
				os.Unsetenv(k)
			}
		}
		got, ok := WatchdogInterval()
		if got != tc.want || ok != tc.ok {
			t.Errorf("WatchdogInterval() with WATCHDOG_USEC=%q WATCHDOG_PID=%q = %v, %v, want %v, %v",
				tc.usec, tc.pid, got, ok, tc.want, tc.ok)
		}
	}
}
