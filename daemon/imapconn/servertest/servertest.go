// Package servertest runs a private Cyrus IMAP 3.6 or Courier-IMAP 5.0
// (Debian 12's packages) on 127.0.0.1 for tests, beside daemon/testenv's
// Dovecot (which Start also wraps, as kind Dovecot, so that one test can
// run against all three), so that smimed is tested against the servers
// organisations run.
//
// Everything a server writes lives in the test's temporary directory:
// configuration, mail, sockets, logs. The daemons run in a private mount
// namespace (unshare -m) in which that directory's own copies are bound
// over the paths the packages compiled in (/etc/courier, /run/courier) and
// /dev/log leads to a syslog socket this package reads (Cyrus logs only to
// syslog), so nothing outside the directory is written. The server package
// itself (cyrus-imapd, courier-imap) conflicts with dovecot-imapd and is
// never installed: it is fetched with apt-get download and unpacked (see
// packages.go); its dependencies must be installed (.ci/test-deps lists
// them; make test installs them when it runs as root, sudo make test-deps
// otherwise).
//
// Start needs root (mount namespaces, the servers' own users). When the
// harness cannot start, the test is skipped with the reason — unless
// SMIMED_REQUIRE_SERVERS=1 (as .ci/run sets), when it fails instead.
//
// Assertions should come from the server's own view: Deliver, UIDs,
// Headers and UIDValidity speak IMAP over a small client of this package's
// own (client.go), never through the code under test.
package servertest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
)

// Kind names a server implementation.
type Kind string

const (
	Dovecot Kind = "dovecot" // daemon/testenv's, for tests that run against all three
	Cyrus   Kind = "cyrus"
	Courier Kind = "courier"
)

// Kinds are the servers a test can run against here.
var Kinds = []Kind{Dovecot, Cyrus, Courier}

// Options are the server's settings; the zero value is Debian's defaults.
type Options struct {
	// Users are the accounts, name to password (letters, digits, . _ -).
	Users map[string]string
	// CyrusIdled runs Cyrus's idled, which tells IDLE clients of new mail
	// at once; Debian's cyrus.conf runs none (imapd then polls every
	// imapidlepoll seconds).
	CyrusIdled bool
	// CyrusIdlePoll is imapidlepoll in seconds (0: Debian's 60).
	CyrusIdlePoll int
	// CyrusAltNamespace uses upstream's 3.x defaults: altnamespace and
	// unixhierarchysep on (folders "Name", separator "/"). Debian's are
	// off (folders "INBOX.Name").
	CyrusAltNamespace bool
	// CourierEnhancedIdle sets IMAP_ENHANCEDIDLE=1 (immediate notices
	// through gamin); Debian ships 0 (IDLE polls every 60 s).
	CourierEnhancedIdle bool
	// CourierAuthPlain adds AUTH=PLAIN to the capabilities on a plaintext
	// connection; Debian's Courier offers only the LOGIN command there.
	CourierAuthPlain bool
}

// Server is a running private Cyrus or Courier.
type Server struct {
	kind  Kind
	opts  Options
	dir   string
	addr  string
	port  int
	root  string // the unpacked server package
	start func() (*exec.Cmd, error)
	dove  *testenv.Dovecot // kind Dovecot

	syslog net.PacketConn

	mu  sync.Mutex
	cmd *exec.Cmd
	ns  string // the daemons' mount namespace (readlink /proc/PID/ns/mnt)
	// nsPin holds the namespace open until its processes are gone: a
	// namespace's name is its inode number, which the kernel gives to a
	// new namespace once the old one is freed, and Stop must never take
	// another server's processes (or a short-lived unshare's, such as
	// Courier's userdb step) for its own.
	nsPin   *os.File
	stopped bool
	started time.Duration
}

// Start starts a private server of kind and registers its Stop with
// t.Cleanup. It skips t (or fails it, with SMIMED_REQUIRE_SERVERS=1) when
// the server cannot be run here.
func Start(t testing.TB, kind Kind, opts Options) *Server {
	t.Helper()
	begin := time.Now()
	if kind == Dovecot {
		d := testenv.StartDovecot(t)
		for name, pw := range opts.Users {
			d.AddUser(t, name, pw)
		}
		return &Server{kind: kind, opts: opts, addr: d.Addr(), dove: d, started: time.Since(begin)}
	}
	s, err := start(t, kind, opts)
	if err != nil {
		testenv.Unavailable(t, "servertest: %s cannot run here: %v", kind, err)
	}
	s.started = time.Since(begin)
	t.Logf("servertest: %s up on %s in %v", kind, s.addr, s.started.Round(time.Millisecond))
	return s
}

func start(t testing.TB, kind Kind, opts Options) (*Server, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("needs root (a private mount namespace, the server's own system users)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		return nil, fmt.Errorf("unshare (util-linux): %w", err)
	}
	for name := range opts.Users {
		if !userRE.MatchString(name) || strings.ContainsAny(opts.Users[name], "\r\n\"\\") {
			return nil, fmt.Errorf("user %q: want a name of [a-z0-9._-] and a password without quotes, backslashes or line breaks", name)
		}
	}
	dir, err := os.MkdirTemp("", "servertest-"+string(kind)+"-")
	if err != nil {
		return nil, err
	}
	// mkdtemp makes 0700 directories: the server's users must traverse it.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	s := &Server{kind: kind, opts: opts, dir: dir}
	t.Cleanup(func() {
		s.Stop()
		if s.syslog != nil {
			s.syslog.Close()
		}
		if !t.Failed() {
			os.RemoveAll(dir)
		} else {
			t.Logf("servertest: kept %s for inspection", dir)
		}
	})
	if err := s.startSyslog(); err != nil {
		return nil, err
	}
	s.port, err = testenv.FreePort()
	if err != nil {
		return nil, err
	}
	s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	switch kind {
	case Cyrus:
		err = s.setupCyrus()
	case Courier:
		err = s.setupCourier()
	default:
		err = fmt.Errorf("unknown kind %q", kind)
	}
	if err != nil {
		return nil, err
	}
	if err := s.run(); err != nil {
		return nil, fmt.Errorf("%w\nlog:\n%s", err, s.Log())
	}
	if kind == Cyrus {
		if err := s.cyrusMailboxes(); err != nil {
			return nil, err
		}
	}
	// Open each INBOX once, as its first use: Courier makes a maildir's
	// UIDVALIDITY when it is first opened, and two sessions opening a new
	// one at the same moment were seen to end with two different values.
	for name, pw := range opts.Users {
		c, err := dial(s.addr)
		if err != nil {
			return nil, err
		}
		err = c.login(name, pw)
		if err == nil {
			_, err = c.cmd("STATUS INBOX (UIDVALIDITY)")
		}
		c.close()
		if err != nil {
			return nil, fmt.Errorf("%s's INBOX: %w", name, err)
		}
	}
	return s, nil
}

var userRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// startSyslog reads the datagrams sent to dir/syslog.sock (the
// namespace's /dev/log) into dir/server.log, one line each.
func (s *Server) startSyslog() error {
	path := filepath.Join(s.dir, "syslog.sock")
	pc, err := net.ListenPacket("unixgram", path)
	if err != nil {
		return fmt.Errorf("syslog socket: %w", err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		pc.Close()
		return err
	}
	out, err := os.OpenFile(filepath.Join(s.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		pc.Close()
		return err
	}
	s.syslog = pc
	go func() {
		defer out.Close()
		buf := make([]byte, 64<<10)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			msg := bytes.TrimRight(buf[:n], "\x00\n")
			// "<PRI>text": keep the text.
			if i := bytes.IndexByte(msg, '>'); len(msg) > 0 && msg[0] == '<' && i > 0 {
				msg = msg[i+1:]
			}
			out.Write(append(msg, '\n'))
		}
	}()
	return nil
}

// nsScript runs in the new mount namespace: $1 is the test directory, then
// SRC:DST pairs to bind up to "--", then the command. /dev becomes a tmpfs
// of symbolic links to the real device nodes, with log leading to our
// syslog socket.
const nsScript = `set -e
dir=$1; shift
mount --make-rprivate /
mkdir -p "$dir/ns/dev"
mount --rbind /dev "$dir/ns/dev"
mount -t tmpfs -o mode=755,size=64k servertest-dev /dev
for e in "$dir"/ns/dev/* "$dir"/ns/dev/.[!.]*; do
  if [ -e "$e" ] || [ -L "$e" ]; then ln -s "$e" "/dev/${e##*/}"; fi
done
ln -sf "$dir/syslog.sock" /dev/log
while [ "$1" != -- ]; do mount --bind "${1%%:*}" "${1#*:}"; shift; done
shift
exec "$@"`

// nsCommand is cmd... in a private mount namespace with binds (SRC:DST).
func (s *Server) nsCommand(binds []string, cmd ...string) *exec.Cmd {
	args := []string{"-m", "--propagation", "private", "sh", "-c", nsScript, "servertest-ns", s.dir}
	args = append(args, binds...)
	args = append(args, "--")
	args = append(args, cmd...)
	c := exec.Command("unshare", args...)
	c.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	// A process group of their own: a daemon that signals its group when
	// it stops must not reach the test binary or whatever started it.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return c
}

// run starts the daemons and waits until the server greets.
func (s *Server) run() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd, err := s.start()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(filepath.Join(s.dir, "daemon.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.kind, err)
	}
	s.cmd, s.stopped = cmd, false
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		// unshare runs in our namespace until it has made its own.
		if s.ns == "" {
			s.pinNS(cmd.Process.Pid)
		}
		if err := greets(s.addr); err == nil {
			if s.ns == "" {
				s.stopLocked()
				return errors.New("the daemons are not in a mount namespace of their own")
			}
			return nil
		} else if time.Now().After(deadline) {
			s.stopLocked()
			return fmt.Errorf("%s did not greet on %s within 30 s: %v", s.kind, s.addr, err)
		}
		select {
		case <-exited:
			s.stopLocked()
			out, _ := os.ReadFile(filepath.Join(s.dir, "daemon.out"))
			return fmt.Errorf("%s exited at start-up: %s", s.kind, strings.TrimSpace(string(out)))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// greets reports whether an IMAP server answers on addr with "* OK".
func greets(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "* OK") {
		return fmt.Errorf("greeting %q", strings.TrimSpace(line))
	}
	return nil
}

// hostNS is the test process's own mount namespace, whose processes are
// never the server's.
func hostNS() string { return nsOf(os.Getpid()) }

func nsOf(pid int) string {
	l, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
	return l
}

// Stop ends every process in the server's mount namespace (SIGTERM, then
// SIGKILL after 5 s) and waits until they are gone. It is safe to call more
// than once; t.Cleanup calls it.
func (s *Server) Stop() {
	if s.dove != nil {
		s.dove.Stop()
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *Server) stopLocked() {
	if s.stopped || s.cmd == nil {
		return
	}
	s.stopped = true
	testenv.EndProcesses(s.pids, 5*time.Second)
	s.ns = ""
	if s.nsPin != nil {
		s.nsPin.Close()
		s.nsPin = nil
	}
}

// pinNS learns pid's mount namespace once it is not ours (unshare runs in
// ours until it has made its own) and holds it open (nsPin).
func (s *Server) pinNS(pid int) {
	ns := nsOf(pid)
	if ns == "" || ns == hostNS() {
		return
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/mnt", pid))
	if err != nil {
		return
	}
	// The file opened must be the namespace read: pid may have moved.
	if held, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd())); held != ns {
		f.Close()
		return
	}
	s.ns, s.nsPin = ns, f
}

// pids are the live processes in the server's namespace: the daemons and
// whatever left their process tree (imapd children, gam_server). Before
// the namespace is known, only the process started.
func (s *Server) pids() []int {
	if s.ns == "" || s.ns == hostNS() {
		if s.cmd != nil && s.cmd.ProcessState == nil && testenv.Alive(s.cmd.Process.Pid) {
			return []int{s.cmd.Process.Pid}
		}
		return nil
	}
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err == nil && nsOf(pid) == s.ns && testenv.Alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Restart stops the server and starts it again on the same port with the
// same configuration and mail. Clients see their connections closed (the
// server's BYE, where it sends one), then refused until it greets again.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if s.dove != nil {
		s.dove.Restart(t)
		return
	}
	s.Stop()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := s.run()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("servertest: restart %s on %s: %v\nlog:\n%s", s.kind, s.addr, err, s.Log())
		}
		time.Sleep(200 * time.Millisecond) // the old listener may linger
	}
}

// Auth is the login smimed must use (its auth setting): Courier offers
// no AUTH=PLAIN on a plaintext connection, only the LOGIN command.
func (s *Server) Auth() string {
	if s.kind == Courier && !s.opts.CourierAuthPlain {
		return "login"
	}
	return "plain"
}

// Dovecot is the Dovecot of a server of kind Dovecot (for doveadm), else nil.
func (s *Server) Dovecot() *testenv.Dovecot { return s.dove }

// Kind is the server's implementation.
func (s *Server) Kind() Kind { return s.kind }

// Addr is the host:port of the IMAP listener (plaintext, 127.0.0.1).
func (s *Server) Addr() string { return s.addr }

// StartupTime is how long Start took (packages, configuration, first greeting).
func (s *Server) StartupTime() time.Duration { return s.started }

// Log is what the server logged so far (syslog, and Courier's own files).
func (s *Server) Log() string {
	if s.dove != nil {
		return s.dove.Log()
	}
	var b strings.Builder
	for _, f := range []string{"server.log", "imapd.log", "authdaemond.log", "daemon.out"} {
		if data, err := os.ReadFile(filepath.Join(s.dir, f)); err == nil && len(data) > 0 {
			fmt.Fprintf(&b, "== %s\n%s", f, data)
		}
	}
	return b.String()
}

// Logins counts the successful logins of user the server has logged.
func (s *Server) Logins(user string) int {
	var re *regexp.Regexp
	switch s.kind {
	case Dovecot:
		re = regexp.MustCompile(`imap-login: Info: Login: user=<` + regexp.QuoteMeta(user) + `>`)
	case Cyrus:
		re = regexp.MustCompile(`login: \S+ \[[^\]]*\] ` + regexp.QuoteMeta(user) + ` \S+ User logged in`)
	default:
		re = regexp.MustCompile(`LOGIN, user=` + regexp.QuoteMeta(user) + `,`)
	}
	return len(re.FindAllStringIndex(s.Log(), -1))
}
