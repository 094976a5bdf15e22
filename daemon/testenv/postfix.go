package testenv

// A private Postfix for tests, set up as docs/gateway.md tells
// administrators to put Postfix in front of smimed's gateway.
//
// StartPostfix writes a main.cf and master.cf of its own into a temporary
// directory (config, queue, data and log inside it) and starts the
// binaries of Debian's postfix package with postfix -c DIR start: a
// submission smtpd on 127.0.0.1 that the test talks to, the content filter
// and the reinjection smtpd taken verbatim from the "Postfix as the
// gateway's front" section of docs/gateway.md (only the two ports
// replaced), and delivery of everything to one next hop on 127.0.0.1
// (SMTP or LMTP), without DNS and without local delivery. The system's
// Postfix (/etc/postfix, /var/spool/postfix) is neither used nor touched.
//
// Assertions come from Postfix's own view: Queue reads postqueue -j.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const postfixHint = "the Postfix integration tests need Debian's postfix package and root: .ci/test-deps install"

// PostfixOptions configure StartPostfix.
type PostfixOptions struct {
	// FilterAddr is the content filter's host:port, where the gateway
	// listens (docs/gateway.md: 127.0.0.1:10025). "" leaves the filter
	// lines out: Postfix then delivers straight to NextHop, as it would
	// without smimed.
	FilterAddr string
	// ReinjectPort is the port of the smtpd that takes the filtered mail
	// back (docs/gateway.md: 10026) on 127.0.0.1; 0 picks a free one.
	ReinjectPort int
	// NextHop is the host:port every message is delivered to in the end
	// (e.g. an SMTPSink's Addr, or Dovecot's LMTPAddr with LMTP set).
	NextHop string
	// LMTP delivers to NextHop over LMTP instead of SMTP.
	LMTP bool
	// MinimalBackoff is minimal_backoff_time (0: Postfix's 300s). A
	// deferred message waits at least this long before Postfix retries
	// it by itself; Flush retries at once.
	MinimalBackoff time.Duration
	// SASLAuth, a host:port of Dovecot's auth service (Dovecot.AuthAddr
	// with DovecotOptions.AuthInet), makes the test's smtpd (Addr) a
	// submission server: AUTH PLAIN and LOGIN checked by Dovecot
	// (smtpd_sasl_type = dovecot), relaying only for clients that logged
	// in. "" leaves that smtpd open to 127.0.0.0/8 without AUTH.
	SASLAuth string
	// SenderLogins maps an envelope sender address to the login that
	// owns it (smtpd_sender_login_maps, with reject_sender_login_mismatch
	// on the test's smtpd): a login may send only as its own addresses,
	// and an owned address only after a login. Needs SASLAuth.
	SenderLogins map[string]string
	// TLSCert and TLSKey (PEM), when set, make the test's smtpd offer
	// STARTTLS with them; with SASLAuth it then offers AUTH only after
	// STARTTLS (smtpd_tls_auth_only = yes), as a submission server does.
	TLSCert, TLSKey []byte
}

// Postfix is a running private Postfix.
type Postfix struct {
	t        testing.TB
	dir      string // etc/ (config_directory), queue/, data/ and postfix.log
	addr     string // submission smtpd
	reinject string // the reinjection smtpd
	version  string
	opts     PostfixOptions

	mu      sync.Mutex
	stopped bool
}

// PostfixQueued is one message in Postfix's queue, as postqueue -j shows it.
type PostfixQueued struct {
	QueueName  string `json:"queue_name"` // "incoming", "active", "deferred", "hold", "maildrop"
	QueueID    string `json:"queue_id"`
	Arrival    int64  `json:"arrival_time"`
	Size       int64  `json:"message_size"`
	Sender     string `json:"sender"`
	Recipients []struct {
		Address     string `json:"address"`
		DelayReason string `json:"delay_reason"` // e.g. "connect to 127.0.0.1[127.0.0.1]:10025: Connection refused"
	} `json:"recipients"`
}

// StartPostfix starts a private Postfix and registers its Stop with
// t.Cleanup. It skips t, saying why, when Postfix is not installed or the
// test does not run as root — or fails it with SMIMED_REQUIRE_SERVERS=1.
func StartPostfix(t testing.TB, opts PostfixOptions) *Postfix {
	t.Helper()
	if err := postfixUsable(); err != nil {
		Unavailable(t, "testenv: Postfix cannot run here: %v; %s", err, postfixHint)
	}
	if opts.NextHop == "" {
		t.Fatal("testenv: StartPostfix needs a NextHop")
	}
	if len(opts.SenderLogins) > 0 && opts.SASLAuth == "" {
		t.Fatal("testenv: StartPostfix: SenderLogins need SASLAuth")
	}
	mainDoc, masterDoc := PostfixFilterLines(t)

	dir, err := os.MkdirTemp("", "testenv-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	// mkdtemp makes 0700 dirs: the postfix user must traverse this one.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// config_directory etc/ beside queue_directory queue/: postfix start
	// checks that everything below the former is root's.
	for _, sub := range []string{"etc", "queue"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeSenderLogins(filepath.Join(dir, "etc", "sender_logins"), opts.SenderLogins); err != nil {
		t.Fatal(err)
	}
	if (opts.TLSCert == nil) != (opts.TLSKey == nil) {
		t.Fatal("testenv: StartPostfix: TLSCert and TLSKey go together")
	}
	if opts.TLSCert != nil {
		// smtpd reads them as root, before it drops privileges.
		for name, b := range map[string][]byte{"tls.crt": opts.TLSCert, "tls.key": opts.TLSKey} {
			if err := os.WriteFile(filepath.Join(dir, "etc", name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	out, _ := exec.Command("postconf", "-h", "-d", "mail_version").Output()
	p := &Postfix{t: t, dir: dir, opts: opts, version: strings.TrimSpace(string(out))}
	t.Cleanup(func() {
		p.Stop()
		if !t.Failed() {
			os.RemoveAll(dir)
		} else {
			t.Logf("testenv: kept %s for inspection; Postfix's log:\n%s", dir, p.Log())
		}
	})

	// A free port can be taken by someone else between our probe and the
	// master's bind: try a few.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		reinjectPort := opts.ReinjectPort
		if reinjectPort == 0 {
			if reinjectPort, err = FreePort(); err != nil {
				t.Fatal(err)
			}
		}
		p.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		p.reinject = net.JoinHostPort("127.0.0.1", strconv.Itoa(reinjectPort))
		mainCF, masterCF, err := p.config(port, reinjectPort, mainDoc, masterDoc)
		if err != nil {
			t.Fatalf("testenv: Postfix configuration from docs/gateway.md: %v", err)
		}
		if err := os.WriteFile(filepath.Join(p.ConfigDir(), "main.cf"), []byte(mainCF), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p.ConfigDir(), "master.cf"), []byte(masterCF), 0o644); err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		if lastErr = p.start(); lastErr == nil {
			t.Logf("testenv: Postfix %s up on %s in %v", p.version, p.addr, time.Since(begin).Round(time.Millisecond))
			return p
		}
		p.Stop()
		p.mu.Lock()
		p.stopped = false
		p.mu.Unlock()
	}
	t.Fatalf("testenv: cannot start Postfix %s: %v\nlog:\n%s", p.version, lastErr, p.Log())
	return nil
}

// postfixUsable says why Postfix cannot run here, nil when it can.
func postfixUsable() error {
	if os.Geteuid() != 0 {
		return errors.New("not running as root (Postfix's master must)")
	}
	for _, prog := range []string{"postfix", "postqueue", "postconf"} {
		if _, err := lookPath(prog, "/usr/sbin/"+prog); err != nil {
			return fmt.Errorf("%s not found", prog)
		}
	}
	if _, err := os.Stat("/usr/lib/postfix/sbin/master"); err != nil {
		return err
	}
	if _, err := user.Lookup("postfix"); err != nil {
		return fmt.Errorf("no postfix user: %v", err)
	}
	if _, err := user.LookupGroup("postdrop"); err != nil {
		return fmt.Errorf("no postdrop group: %v", err)
	}
	return nil
}

// The markers in docs/gateway.md before the blocks that are to be added
// to main.cf and master.cf.
const (
	docMainMarker   = "<!-- postfix main.cf -->"
	docMasterMarker = "<!-- postfix master.cf -->"
	// What the documented lines say, and the harness replaces.
	docFilterAddr   = "[127.0.0.1]:10025"
	docReinjectAddr = "127.0.0.1:10026"
)

// PostfixFilterLines are the main.cf and master.cf lines of docs/gateway.md
// (the fenced blocks after its markers), as documented.
func PostfixFilterLines(t testing.TB) (mainCF, masterCF string) {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(RepoRoot(t), "docs", "gateway.md"))
	if err != nil {
		t.Fatal(err)
	}
	if mainCF, err = fencedAfter(doc, docMainMarker); err != nil {
		t.Fatalf("testenv: docs/gateway.md: %v", err)
	}
	if masterCF, err = fencedAfter(doc, docMasterMarker); err != nil {
		t.Fatalf("testenv: docs/gateway.md: %v", err)
	}
	return mainCF, masterCF
}

// fencedAfter is the content of the first ``` block after the line marker.
func fencedAfter(doc []byte, marker string) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(doc))
	state := 0 // 0: looking for the marker, 1: for the fence, 2: in the block
	var b strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case state == 0 && strings.TrimSpace(line) == marker:
			state = 1
		case state == 1 && strings.HasPrefix(line, "```"):
			state = 2
		case state == 1 && strings.TrimSpace(line) != "":
			return "", fmt.Errorf("%s is not followed by a ``` block", marker)
		case state == 2 && strings.HasPrefix(line, "```"):
			return b.String(), nil
		case state == 2:
			b.WriteString(line + "\n")
		}
	}
	if state == 0 {
		return "", fmt.Errorf("no line %s", marker)
	}
	return "", fmt.Errorf("the block after %s does not end", marker)
}

// config is main.cf and master.cf: the harness's own settings, then the
// documented lines with the filter's address and the reinjection port put
// in.
func (p *Postfix) config(port, reinjectPort int, mainDoc, masterDoc string) (mainCF, masterCF string, err error) {
	d := p.dir
	transport := "smtp:[" + hostOf(p.opts.NextHop) + "]:" + portOf(p.opts.NextHop)
	if p.opts.LMTP {
		transport = "lmtp:[" + hostOf(p.opts.NextHop) + "]:" + portOf(p.opts.NextHop)
	}
	backoff := ""
	if p.opts.MinimalBackoff > 0 {
		s := int((p.opts.MinimalBackoff + time.Second - 1) / time.Second)
		backoff = fmt.Sprintf("minimal_backoff_time = %ds\nmaximal_backoff_time = %ds\nqueue_run_delay = %ds\n", s, 2*s, s)
	}
	mainCF = fmt.Sprintf(`# written by smimed's daemon/testenv
compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = %[1]s/postfix.log
maillog_file_prefixes = %[1]s
myhostname = postfix.test.smimed.example
mydomain = test.smimed.example
myorigin = $myhostname
# Nothing is local: every address goes to the next hop.
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relay_domains =
default_transport = %[2]s
relay_transport = %[2]s
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
# No DNS: the next hops are IP addresses in brackets.
smtp_host_lookup = native
lmtp_host_lookup = native
disable_dns_lookups = yes
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtpd_tls_security_level = none
biff = no
delay_warning_time = 0
%[3]s
# From docs/gateway.md:
`, d, transport, backoff)
	masterCF = fmt.Sprintf(`# written by smimed's daemon/testenv
# The submission port the test's client talks to.
127.0.0.1:%d inet n - n - - smtpd
%spickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
lmtp      unix  - - n - - lmtp
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
tlsmgr    unix  - - n 1000? 1 tlsmgr
# From docs/gateway.md:
`, port, p.submissionLines())
	if p.opts.FilterAddr == "" {
		return mainCF, masterCF, nil
	}
	host, fport, err := net.SplitHostPort(p.opts.FilterAddr)
	if err != nil {
		return "", "", fmt.Errorf("FilterAddr %q: %v", p.opts.FilterAddr, err)
	}
	if strings.Count(mainDoc, docFilterAddr) != 1 {
		return "", "", fmt.Errorf("the main.cf block names %s not exactly once", docFilterAddr)
	}
	if strings.Count(masterDoc, docReinjectAddr) != 1 {
		return "", "", fmt.Errorf("the master.cf block names %s not exactly once", docReinjectAddr)
	}
	mainCF += strings.Replace(mainDoc, docFilterAddr, "["+host+"]:"+fport, 1)
	masterCF += strings.Replace(masterDoc, docReinjectAddr, "127.0.0.1:"+strconv.Itoa(reinjectPort), 1)
	return mainCF, masterCF, nil
}

// submissionLines are the -o overrides that make the test's smtpd a
// submission server: STARTTLS (PostfixOptions.TLSCert), SASL through
// Dovecot (SASLAuth), senders bound to logins (SenderLogins).
// smtpd_delay_reject stays at its default (yes), as on most servers: a
// sender a login does not own is refused at RCPT, not at MAIL.
func (p *Postfix) submissionLines() string {
	var lines []string
	if p.opts.TLSCert != nil {
		lines = append(lines,
			"smtpd_tls_security_level=may",
			"smtpd_tls_chain_files="+filepath.Join(p.ConfigDir(), "tls.key")+","+filepath.Join(p.ConfigDir(), "tls.crt"),
			"smtpd_tls_auth_only=yes")
	}
	if p.opts.SASLAuth != "" {
		lines = append(lines,
			"smtpd_sasl_auth_enable=yes",
			"smtpd_sasl_type=dovecot",
			"smtpd_sasl_path=inet:"+p.opts.SASLAuth,
			"smtpd_client_restrictions=",
			"smtpd_helo_restrictions=",
			"smtpd_relay_restrictions=permit_sasl_authenticated,reject",
			"smtpd_recipient_restrictions=")
	}
	if len(p.opts.SenderLogins) > 0 {
		lines = append(lines,
			"smtpd_sender_login_maps=texthash:"+filepath.Join(p.ConfigDir(), "sender_logins"),
			"smtpd_sender_restrictions=reject_sender_login_mismatch")
	}
	if len(lines) == 0 {
		return ""
	}
	return "  -o " + strings.Join(lines, "\n  -o ") + "\n"
}

// writeSenderLogins writes smtpd_sender_login_maps' table (texthash:
// "address login" a line, no postmap needed); nothing without logins.
func writeSenderLogins(path string, logins map[string]string) error {
	if len(logins) == 0 {
		return nil
	}
	var b strings.Builder
	for addr, login := range logins {
		if strings.ContainsAny(addr+login, " \t\r\n") || addr == "" || login == "" {
			return fmt.Errorf("testenv: SenderLogins %q: %q: want an address and a login without spaces", addr, login)
		}
		fmt.Fprintf(&b, "%s %s\n", addr, login)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func hostOf(addr string) string { h, _, _ := net.SplitHostPort(addr); return h }
func portOf(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

func (p *Postfix) start() error {
	out, err := p.postfix("start")
	if err != nil {
		return fmt.Errorf("postfix -c %s start: %v: %s", p.ConfigDir(), err, strings.TrimSpace(out))
	}
	addrs := []string{p.addr}
	if p.opts.FilterAddr != "" {
		addrs = append(addrs, p.reinject)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, addr := range addrs {
		for {
			greeting, err := smtpGreeting(addr)
			if err == nil && strings.HasPrefix(greeting, "220") {
				break
			}
			if err == nil {
				err = fmt.Errorf("greeting %q", greeting)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("Postfix did not answer on %s: %v", addr, err)
			}
			if pid := p.masterPID(); pid == 0 || !Alive(pid) {
				return fmt.Errorf("Postfix's master is not running (%v)", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

func smtpGreeting(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	c.Write([]byte("QUIT\r\n"))
	return strings.TrimSpace(line), err
}

// postfix runs the postfix command with our configuration directory.
func (p *Postfix) postfix(args ...string) (string, error) {
	prog, err := lookPath("postfix", "/usr/sbin/postfix")
	if err != nil {
		return "", err
	}
	out, err := exec.Command(prog, append([]string{"-c", p.ConfigDir()}, args...)...).CombinedOutput()
	return string(out), err
}

// postqueue runs postqueue with our configuration directory.
func (p *Postfix) postqueue(args ...string) ([]byte, error) {
	prog, err := lookPath("postqueue", "/usr/sbin/postqueue")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(prog, append([]string{"-c", p.ConfigDir()}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("postqueue %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func (p *Postfix) masterPID() int {
	return pidFile(filepath.Join(p.dir, "queue", "pid", "master.pid"))
}

// Stop stops Postfix (postfix stop) and waits until its processes are
// gone. It is safe to call more than once; t.Cleanup calls it.
func (p *Postfix) Stop() {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	p.mu.Unlock()
	if pid := p.masterPID(); pid > 0 && Alive(pid) {
		if out, err := p.postfix("stop"); err != nil {
			p.t.Logf("testenv: postfix stop: %v: %s", err, out)
		}
	}
	if pids := EndProcesses(p.processes, 20*time.Second); len(pids) > 0 {
		p.t.Errorf("testenv: processes %v of the private Postfix survive SIGKILL", pids)
	}
}

// Restart stops Postfix and starts it again with the same configuration:
// the same ports, the same queue (deferred mail stays deferred). In
// between, connections to its ports are refused.
func (p *Postfix) Restart(t testing.TB) {
	t.Helper()
	p.Stop()
	p.mu.Lock()
	p.stopped = false
	p.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := p.start()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: restart Postfix: %v\nlog:\n%s", err, p.Log())
		}
		p.Stop()
		p.mu.Lock()
		p.stopped = false
		p.mu.Unlock()
		time.Sleep(100 * time.Millisecond)
	}
}

// processes are the live processes of our Postfix: the master (its pid
// file) and every process working in our queue directory (Postfix's
// daemons chdir there).
func (p *Postfix) processes() []int {
	queue := filepath.Join(p.dir, "queue")
	return masterAndWhere(p.masterPID(), func(_ int, proc string) bool { return cwdIn(proc, queue) })
}

// Addr is the host:port of the submission smtpd the test's client talks
// to (plaintext; without SASLAuth no AUTH, and 127.0.0.0/8 may relay
// anywhere; with it, only clients that logged in).
func (p *Postfix) Addr() string { return p.addr }

// ReinjectAddr is the host:port of the smtpd that takes filtered mail
// back (the gateway's relay), empty without FilterAddr.
func (p *Postfix) ReinjectAddr() string {
	if p.opts.FilterAddr == "" {
		return ""
	}
	return p.reinject
}

// Version is Postfix's mail_version.
func (p *Postfix) Version() string { return p.version }

// ConfigDir is the configuration directory, for postfix -c and postconf -c.
func (p *Postfix) ConfigDir() string { return filepath.Join(p.dir, "etc") }

// Log returns Postfix's log so far.
func (p *Postfix) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "postfix.log"))
	return string(b)
}

// Submit sends msg from from to to through the submission smtpd (Addr)
// and returns Postfix's answer as an error when it refuses it.
func (p *Postfix) Submit(from string, to []string, msg []byte) error {
	return smtp.SendMail(p.addr, nil, from, to, msg)
}

// Queue is Postfix's queue now (postqueue -j).
func (p *Postfix) Queue(t testing.TB) []PostfixQueued {
	t.Helper()
	q, err := p.queue()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return q
}

func (p *Postfix) queue() ([]PostfixQueued, error) {
	out, err := p.postqueue("-j")
	if err != nil {
		return nil, err
	}
	var q []PostfixQueued
	for line := range bytes.Lines(out) {
		var m PostfixQueued
		if err := json.Unmarshal(line, &m); err != nil {
			return nil, fmt.Errorf("postqueue -j: %v in %q", err, line)
		}
		q = append(q, m)
	}
	return q, nil
}

// QueueText is postqueue -p's listing, for failure messages.
func (p *Postfix) QueueText() string {
	out, err := p.postqueue("-p")
	if err != nil {
		return err.Error()
	}
	return string(out)
}

// Flush asks Postfix to retry every deferred message now (postqueue -f).
func (p *Postfix) Flush(t testing.TB) {
	t.Helper()
	if _, err := p.postqueue("-f"); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

// WaitQueue polls the queue until cond holds and returns that queue;
// after within it fails t with the queue and the log.
func (p *Postfix) WaitQueue(t testing.TB, within time.Duration, what string, cond func([]PostfixQueued) bool) []PostfixQueued {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		q, err := p.queue()
		if err == nil && cond(q) {
			return q
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: Postfix's queue: not %s after %v (%v):\n%s\nlog:\n%s", what, within, err, p.QueueText(), p.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitDeferred waits until n messages are in the deferred queue, each
// with a reason for every recipient, and returns them.
func (p *Postfix) WaitDeferred(t testing.TB, n int, within time.Duration) []PostfixQueued {
	t.Helper()
	q := p.WaitQueue(t, within, fmt.Sprintf("%d deferred", n), func(q []PostfixQueued) bool {
		c := 0
		for _, m := range q {
			if m.QueueName != "deferred" {
				continue
			}
			for _, r := range m.Recipients {
				if r.DelayReason == "" {
					return false
				}
			}
			c++
		}
		return c == n
	})
	var d []PostfixQueued
	for _, m := range q {
		if m.QueueName == "deferred" {
			d = append(d, m)
		}
	}
	return d
}

// WaitEmpty waits until the queue is empty: everything delivered (or
// bounced: check the next hop).
func (p *Postfix) WaitEmpty(t testing.TB, within time.Duration) {
	t.Helper()
	p.WaitQueue(t, within, "empty", func(q []PostfixQueued) bool { return len(q) == 0 })
}
