package daemon

// This file speaks the systemd notification protocol (sd_notify(3)): each
// state change is one datagram of newline-separated KEY=VALUE assignments
// sent to the AF_UNIX socket named by $NOTIFY_SOCKET, a file system path or,
// with a leading "@", an abstract socket name. Outside systemd the variable
// is unset and every call does nothing.
//
// smimed run sends READY=1 once the watchers run, STATUS= when a folder's
// state or an account's counts change (status.go), STOPPING=1 at shutdown
// and WATCHDOG=1 at half of $WATCHDOG_USEC (sd_watchdog_enabled(3)). On
// SIGHUP it sends RELOADING=1 with MONOTONIC_USEC (which systemd 253 and
// later require for Type=notify-reload) and READY=1 when the reload is
// done, so the unit may be Type=notify or Type=notify-reload.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotifySocket is returned for a $NOTIFY_SOCKET that is neither a path
// nor an abstract name (such as systemd's vsock: addresses).
var ErrNotifySocket = errors.New("daemon: unsupported NOTIFY_SOCKET address")

// Notifier sends state notifications to the service manager. The zero
// value and a nil *Notifier do nothing. It is safe for concurrent use.
type Notifier struct {
	addr string // "" when not run by systemd
}

// NewNotifier returns a Notifier for $NOTIFY_SOCKET; it does nothing when
// the variable is unset or empty.
func NewNotifier() *Notifier {
	return &Notifier{addr: os.Getenv("NOTIFY_SOCKET")}
}

// Enabled reports whether notifications go anywhere.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != "" }

// send writes msg as one datagram.
func (n *Notifier) send(msg string) error {
	if !n.Enabled() {
		return nil
	}
	if n.addr[0] != '/' && n.addr[0] != '@' {
		return fmt.Errorf("%w: %q", ErrNotifySocket, n.addr)
	}
	// Go's net package maps a leading "@" to the abstract namespace.
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("daemon: sd_notify: %w", err)
	}
	defer conn.Close()
	k, err := conn.Write([]byte(msg))
	if err == nil && k != len(msg) {
		err = fmt.Errorf("short write (%d of %d bytes)", k, len(msg))
	}
	if err != nil {
		return fmt.Errorf("daemon: sd_notify: %w", err)
	}
	return nil
}

// Ready tells systemd that start-up (or a reload) is complete: READY=1.
func (n *Notifier) Ready() error { return n.send("READY=1") }

// Status sets the one-line status shown by systemctl status: STATUS=s,
// with line breaks replaced by spaces.
func (n *Notifier) Status(s string) error {
	s = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
	return n.send("STATUS=" + s)
}

// Stopping tells systemd that shutdown has begun: STOPPING=1.
func (n *Notifier) Stopping() error { return n.send("STOPPING=1") }

// Watchdog keeps the watchdog from firing: WATCHDOG=1.
func (n *Notifier) Watchdog() error { return n.send("WATCHDOG=1") }

// Reloading tells systemd that a reload has begun: RELOADING=1 and
// MONOTONIC_USEC, the CLOCK_MONOTONIC time in microseconds. Send Ready when
// it is done.
func (n *Notifier) Reloading() error {
	if !n.Enabled() {
		return nil
	}
	usec, err := monotonicUsec()
	if err != nil {
		return fmt.Errorf("daemon: sd_notify: %w", err)
	}
	return n.send("RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatUint(usec, 10))
}

func monotonicUsec() (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, err
	}
	return uint64(ts.Sec)*1e6 + uint64(ts.Nsec)/1e3, nil
}

// WatchdogInterval returns the watchdog timeout systemd set in
// $WATCHDOG_USEC, and whether the watchdog is enabled for this process:
// the value must be a positive integer and $WATCHDOG_PID, when set, must
// be our pid. Callers send Watchdog at half the interval.
func WatchdogInterval() (time.Duration, bool) {
	usec, err := strconv.ParseUint(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec == 0 || usec > uint64(1<<63-1)/uint64(time.Microsecond) {
		return 0, false
	}
	if p, ok := os.LookupEnv("WATCHDOG_PID"); ok && p != "" {
		pid, err := strconv.Atoi(p)
		if err != nil || pid != os.Getpid() {
			return 0, false
		}
	}
	return time.Duration(usec) * time.Microsecond, true
}
