package testenv

// A private Dovecot IMAP server for tests.
//
// StartDovecot writes a configuration of its own into a temporary directory
// (base_dir, state_dir, log and mail all inside it), listens on 127.0.0.1 on a
// free port and stops the server when the test ends. Nothing of the system's
// Dovecot service is used or touched: only the binaries of the Debian package
// dovecot-imapd (/usr/sbin/dovecot, doveadm).
//
// Assertions in tests should come from Dovecot's own view (Doveadm), never
// from the code under test; Deliver puts messages in with doveadm save, so the
// code under test is not needed to prepare a mailbox.

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const installHint = "dovecot-imapd is required for the IMAP integration tests: apt-get install dovecot-imapd"

// Dovecot is a running private Dovecot.
type Dovecot struct {
	t       testing.TB
	dir     string
	conf    string
	addr    string
	lmtp    string
	auth    string
	version string
	doveadm string

	opts DovecotOptions

	mu          sync.Mutex
	passwdMtime time.Time
	stopped     bool
}

// DovecotOptions adds to the private Dovecot's configuration.
type DovecotOptions struct {
	// OAuth2Introspect, when set, adds an oauth2 passdb for XOAUTH2 and
	// OAUTHBEARER whose introspection URL it is (RFC 7662, POST). Any
	// active token logs in as any user, as an application's token does
	// (Microsoft 365's IMAP.AccessAsApp): username_format and
	// username_validation_format are the same constant.
	OAuth2Introspect string
	// LMTP adds an LMTP listener on 127.0.0.1 (LMTPAddr), e.g. as a
	// Postfix's next hop. A recipient's local part is the user
	// (auth_username_format = %Ln for LMTP): alice@any.example is user
	// alice, who must exist (AddUser).
	LMTP bool
	// AuthInet adds a TCP listener of Dovecot's auth service on
	// 127.0.0.1 (AuthAddr), for a Postfix that authenticates its SMTP
	// clients through Dovecot (smtpd_sasl_type = dovecot,
	// smtpd_sasl_path = inet:AuthAddr). The users are AddUser's.
	AuthInet bool
}

// StartDovecot starts a private Dovecot and registers its Stop with
// t.Cleanup. It fails the test (it does not skip) when Dovecot is not
// installed.
func StartDovecot(t testing.TB) *Dovecot {
	t.Helper()
	return StartDovecotWith(t, DovecotOptions{})
}

// StartDovecotWith is StartDovecot with opts.
func StartDovecotWith(t testing.TB, opts DovecotOptions) *Dovecot {
	t.Helper()
	dovecot, err := lookPath("dovecot", "/usr/sbin/dovecot")
	if err != nil {
		t.Fatalf("dovecot not found (%v); %s", err, installHint)
	}
	doveadm, err := lookPath("doveadm", "/usr/bin/doveadm")
	if err != nil {
		t.Fatalf("doveadm not found (%v); %s", err, installHint)
	}
	if _, err := os.Stat("/usr/lib/dovecot/imap"); err != nil {
		t.Fatalf("Dovecot's imap binary is missing (%v); %s", err, installHint)
	}
	if _, err := os.Stat("/usr/lib/dovecot/lmtp"); err != nil && opts.LMTP {
		t.Fatalf("Dovecot's lmtp binary is missing (%v); apt-get install dovecot-lmtpd", err)
	}
	out, err := exec.Command(dovecot, "--version").Output()
	if err != nil {
		t.Fatalf("dovecot --version: %v; %s", err, installHint)
	}
	version := strings.TrimSpace(string(out))
	major, minor := parseVersion(version)
	if major != 2 || minor != 3 {
		// 2.4 renamed or restructured most settings used below
		// (auth_allow_cleartext, mail_driver/mail_path, passdb blocks).
		t.Fatalf("testenv: Dovecot %q is not supported: this harness writes a Dovecot 2.3 configuration", version)
	}
	dc, err := user.Lookup("dovecot")
	if err != nil {
		t.Fatalf("testenv: no dovecot user (%v); %s", err, installHint)
	}
	if _, err := user.Lookup("dovenull"); err != nil {
		t.Fatalf("testenv: no dovenull user (%v); %s", err, installHint)
	}
	uid, _ := strconv.Atoi(dc.Uid)
	gid, _ := strconv.Atoi(dc.Gid)

	dir, err := os.MkdirTemp("", "testenv-dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	// mkdtemp makes 0700 dirs: the dovecot users must traverse this one.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"run", "state", "mail", "users", "masters"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Mail processes run as the dovecot user: it owns the mail tree.
	if err := os.Chown(filepath.Join(dir, "mail"), uid, gid); err != nil {
		t.Fatal(err)
	}

	s := &Dovecot{
		t:       t,
		dir:     dir,
		conf:    filepath.Join(dir, "dovecot.conf"),
		version: version,
		doveadm: doveadm,
		opts:    opts,
	}
	if opts.OAuth2Introspect != "" {
		ext := "introspection_mode = post\nintrospection_url = " + opts.OAuth2Introspect + "\nforce_introspection = yes\n" +
			"username_attribute = username\nusername_format = app\nactive_attribute = active\nactive_value = true\n"
		if err := os.WriteFile(filepath.Join(dir, "oauth2.conf.ext"), []byte(ext), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		s.Stop()
		if !t.Failed() {
			os.RemoveAll(dir)
		} else {
			t.Logf("testenv: kept %s for inspection", dir)
		}
	})

	// A free port can be taken by someone else between our probe and
	// Dovecot's bind: try a few.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		lmtpPort := 0
		if opts.LMTP {
			if lmtpPort, err = FreePort(); err != nil {
				t.Fatal(err)
			}
			s.lmtp = net.JoinHostPort("127.0.0.1", strconv.Itoa(lmtpPort))
		}
		authPort := 0
		if opts.AuthInet {
			if authPort, err = FreePort(); err != nil {
				t.Fatal(err)
			}
			s.auth = net.JoinHostPort("127.0.0.1", strconv.Itoa(authPort))
		}
		if err := os.WriteFile(s.conf, []byte(s.config(port, lmtpPort, authPort)), 0o644); err != nil {
			t.Fatal(err)
		}
		if lastErr = s.start(dovecot); lastErr == nil {
			return s
		}
		s.Stop()
		s.mu.Lock()
		s.stopped = false
		s.mu.Unlock()
	}
	t.Fatalf("testenv: cannot start Dovecot %s: %v\nlog:\n%s", version, lastErr, s.Log())
	return nil
}

func lookPath(name, fallback string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if _, err := os.Stat(fallback); err != nil {
		return "", err
	}
	return fallback, nil
}

var versionRE = regexp.MustCompile(`^(\d+)\.(\d+)`)

func parseVersion(v string) (major, minor int) {
	m := versionRE.FindStringSubmatch(v)
	if m == nil {
		return 0, 0
	}
	major, _ = strconv.Atoi(m[1])
	minor, _ = strconv.Atoi(m[2])
	return major, minor
}

// config is a Dovecot 2.3 configuration with no include of the system's.
func (s *Dovecot) config(port, lmtpPort, authPort int) string {
	d := s.dir
	mechs, oauthPassdb, protocols, lmtp := "", "", "imap", ""
	if authPort != 0 {
		// Dovecot's auth protocol for SASL clients such as Postfix's
		// smtpd (a listener with this name is an auth-client socket).
		lmtp += fmt.Sprintf(`service auth {
  inet_listener sasl {
    address = 127.0.0.1
    port = %d
  }
}
`, authPort)
	}
	if lmtpPort != 0 {
		protocols = "imap lmtp"
		lmtp += fmt.Sprintf(`service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = %d
  }
}
protocol lmtp {
  auth_username_format = %%Ln
  postmaster_address = postmaster@test.smimed.example
}
`, lmtpPort)
	}
	if s.opts.OAuth2Introspect != "" {
		mechs = " xoauth2 oauthbearer"
		oauthPassdb = "passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = " + d + "/oauth2.conf.ext\n}\n"
	}
	return fmt.Sprintf(`# written by smimed's daemon/testenv
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
info_log_path = %[1]s/dovecot.log
debug_log_path = %[1]s/dovecot.log
listen = 127.0.0.1
protocols = %[5]s
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login%[3]s
auth_failure_delay = 0
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir
mailbox_idle_check_interval = 1 secs
mail_max_userip_connections = 100
# Master users (AddMaster): SASL PLAIN with an authorization identity, or
# the login name user*master.
auth_master_user_separator = *
%[4]spassdb {
  driver = passwd-file
  master = yes
  result_success = continue
  args = scheme=PLAIN username_format=%%u %[1]s/masters/%%u
}
passdb {
  driver = passwd-file
  # One file per user: Dovecot re-reads a changed passwd-file at most once
  # a second, but a new user's new file is read at once.
  args = scheme=PLAIN username_format=%%u %[1]s/users/%%u
}
userdb {
  driver = static
  args = uid=dovecot gid=dovecot home=%[1]s/mail/%%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[2]d
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    port = 0
  }
  inet_listener pop3s {
    port = 0
  }
}
%[6]s`, d, port, mechs, oauthPassdb, protocols, lmtp)
}

func (s *Dovecot) start(dovecot string) error {
	// The master forks into the background keeping its stdio: give it a
	// file, not a pipe, or Run would wait for the daemon to exit.
	outPath := filepath.Join(s.dir, "dovecot.out")
	outFile, err := os.Create(outPath)
	if err != nil {
		return err
	}
	defer outFile.Close()
	cmd := exec.Command(dovecot, "-c", s.conf)
	cmd.Stdout = outFile
	cmd.Stderr = outFile
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(outPath)
		return fmt.Errorf("dovecot -c %s: %v: %s", s.conf, err, strings.TrimSpace(string(out)))
	}
	// The master forks into the background; wait until imap-login answers
	// (and the auth and LMTP listeners, when there are).
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err == nil {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 256)
			n, rerr := c.Read(buf)
			c.Close()
			if rerr == nil && bytes.HasPrefix(buf[:n], []byte("* OK")) {
				if err = s.othersReady(); err == nil {
					return nil
				}
			} else {
				err = fmt.Errorf("greeting %q: %v", buf[:n], rerr)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("Dovecot did not answer on %s: %v", s.addr, err)
		}
		if pid := s.masterPID(); pid > 0 && !Alive(pid) {
			return fmt.Errorf("Dovecot master %d exited", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// othersReady says why the listeners besides IMAP (auth, LMTP) do not
// answer yet, nil when they do.
func (s *Dovecot) othersReady() error {
	if s.auth != "" {
		// The auth server speaks first: VERSION, its mechanisms, DONE.
		c, err := net.DialTimeout("tcp", s.auth, time.Second)
		if err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil || !strings.HasPrefix(line, "VERSION\t1\t") {
			return fmt.Errorf("auth listener %s said %q: %v", s.auth, line, err)
		}
	}
	if s.lmtp != "" {
		greeting, err := smtpGreeting(s.lmtp)
		if err != nil || !strings.HasPrefix(greeting, "220") {
			return fmt.Errorf("LMTP greeting %q: %v", greeting, err)
		}
	}
	return nil
}

func (s *Dovecot) masterPID() int {
	return pidFile(filepath.Join(s.dir, "run", "master.pid"))
}

// Stop stops Dovecot (doveadm stop) and waits until its master process is
// gone. It is safe to call more than once; t.Cleanup calls it.
func (s *Dovecot) Stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	s.mu.Unlock()
	pids := s.masterPIDs()
	if len(pids) == 0 {
		return
	}
	out, err := exec.Command(s.doveadm, "-c", s.conf, "stop").CombinedOutput()
	if err != nil {
		s.t.Logf("testenv: doveadm stop: %v: %s; sending SIGTERM to %v", err, out, pids)
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		pids = s.masterPIDs()
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			s.t.Errorf("testenv: Dovecot master %v still running after 20s; killing it", pids)
			for _, pid := range pids {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// masterPIDs are the live processes started with our configuration file:
// the master (from master.pid, which Dovecot removes early in its shutdown)
// and anything whose command line names our private config.
func (s *Dovecot) masterPIDs() []int {
	return masterAndWhere(s.masterPID(), func(_ int, proc string) bool {
		cmdline, err := os.ReadFile(filepath.Join(proc, "cmdline"))
		return err == nil && bytes.Contains(cmdline, []byte("\x00"+s.conf))
	})
}

// Addr is the host:port of the IMAP listener (plaintext, 127.0.0.1).
func (s *Dovecot) Addr() string { return s.addr }

// AuthAddr is the host:port of the auth service's TCP listener
// (DovecotOptions.AuthInet), "" without one.
func (s *Dovecot) AuthAddr() string { return s.auth }

// LMTPAddr is the host:port of the LMTP listener (DovecotOptions.LMTP),
// "" without one.
func (s *Dovecot) LMTPAddr() string { return s.lmtp }

// Version is what dovecot --version printed.
func (s *Dovecot) Version() string { return s.version }

// ConfigFile is the path of the configuration, for doveadm -c.
func (s *Dovecot) ConfigFile() string { return s.conf }

// Log returns Dovecot's log so far.
func (s *Dovecot) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "dovecot.log"))
	return string(b)
}

// AddUser adds (or changes) a user with a plaintext password. The passwd-file
// is re-read by Dovecot on change, so it works before and after StartDovecot. The
// helpers take the calling (sub)test's t, which they fail on error.
func (s *Dovecot) AddUser(t testing.TB, name, password string) {
	t.Helper()
	if !userRE.MatchString(name) || strings.ContainsAny(password, ":\n") {
		t.Fatalf("testenv: AddUser(%q): want a name of [a-z0-9._-] and a password without ':' or newlines", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writePasswd(name, password); err != nil {
		t.Fatal(err)
	}
}

// AddMaster adds a master user, who logs in for any user (Dovecot's
// master passdb): as SASL PLAIN's authorization identity, or with the login
// name USER*NAME.
func (s *Dovecot) AddMaster(t testing.TB, name, password string) {
	t.Helper()
	if !userRE.MatchString(name) || strings.ContainsAny(password, ":\n") {
		t.Fatalf("testenv: AddMaster(%q): want a name of [a-z0-9._-] and a password without ':' or newlines", name)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "masters", name), fmt.Appendf(nil, "%s:{PLAIN}%s\n", name, password), 0o644); err != nil {
		t.Fatal(err)
	}
}

var userRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// writePasswd is called with s.mu held.
func (s *Dovecot) writePasswd(name, password string) error {
	path := filepath.Join(s.dir, "users", name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, fmt.Appendf(nil, "%s:{PLAIN}%s\n", name, password), 0o644); err != nil {
		return err
	}
	// Dovecot notices a changed passwd-file by its mtime in whole seconds:
	// make every version's mtime differ.
	mtime := time.Now().Truncate(time.Second)
	if !mtime.After(s.passwdMtime) {
		mtime = s.passwdMtime.Add(time.Second)
	}
	s.passwdMtime = mtime
	if err := os.Chtimes(tmp, mtime, mtime); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Restart stops Dovecot and starts it again with the same configuration,
// so on the same port and with the same mail. Clients see their
// connections closed, then refused until the new master answers.
//
// Dovecot's imap processes outlive a stopped master by about 10 s (they
// say "Server shutting down" only then), so a plain Stop and start would
// leave the old sessions working across the "restart". Restart ends them
// first, as systemd does when it stops the whole unit.
func (s *Dovecot) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.endLeftovers(t)
	dovecot, err := lookPath("dovecot", "/usr/sbin/dovecot")
	if err != nil {
		t.Fatalf("dovecot not found (%v); %s", err, installHint)
	}
	s.mu.Lock()
	s.stopped = false
	s.mu.Unlock()
	// The old listener's port can linger for a moment after the master
	// is gone: retry for a while.
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := s.start(dovecot)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: restart on %s: %v\nlog:\n%s", s.addr, err, s.Log())
		}
		s.Stop()
		s.mu.Lock()
		s.stopped = false
		s.mu.Unlock()
		time.Sleep(100 * time.Millisecond)
	}
}

// endLeftovers ends the processes of our Dovecot that outlived its master:
// those named dovecot/... whose working directory or an open file lies in
// our directory (an imap process works in the user's home, under mail/,
// and holds the mailbox's index files open). SIGTERM first, so that an
// imap process says BYE; SIGKILL after 10 s.
func (s *Dovecot) endLeftovers(t testing.TB) {
	t.Helper()
	if pids := EndProcesses(s.leftovers, 10*time.Second); len(pids) > 0 {
		t.Fatalf("testenv: processes %v of the old Dovecot survive SIGKILL", pids)
	}
}

func (s *Dovecot) leftovers() []int {
	return processesWhere(func(pid int, proc string) bool {
		cmdline, err := os.ReadFile(filepath.Join(proc, "cmdline"))
		if err != nil || !bytes.HasPrefix(cmdline, []byte("dovecot/")) {
			return false
		}
		if cwdIn(proc, s.dir) {
			return true
		}
		fds, _ := os.ReadDir(filepath.Join(proc, "fd"))
		for _, fd := range fds {
			if linkIn(filepath.Join(proc, "fd", fd.Name()), s.dir) {
				return true
			}
		}
		return false
	})
}
