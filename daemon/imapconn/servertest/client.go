package servertest

// A small IMAP client of the harness's own (RFC 3501 on the wire, no
// library), so that what a test checks on the server never goes through
// the code under test or the library it uses.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

type client struct {
	conn net.Conn
	r    *bufio.Reader
	tag  int
	// timeout bounds each command; 0 is cmdTimeout.
	timeout time.Duration
}

// cmdTimeout bounds a command by default. Courier (IMAP_USELOCKS=1, as
// Debian ships it) makes a command that scans a folder wait for the
// folder's lock, for seconds under contention and up to its 120 s stale
// timeout when gamin misses the lock's removal.
const cmdTimeout = 60 * time.Second

// examineTimeout bounds the EXAMINE of Messages.
const examineTimeout = 20 * time.Second

func dial(addr string) (*client, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := &client{conn: conn, r: bufio.NewReader(conn)}
	c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	greeting, err := c.r.ReadString('\n')
	if err != nil || !strings.HasPrefix(greeting, "* OK") {
		conn.Close()
		return nil, fmt.Errorf("greeting %q: %v", greeting, err)
	}
	return c, nil
}

func (c *client) close() {
	c.cmd("LOGOUT")
	c.conn.Close()
}

func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func (c *client) login(user, password string) error {
	_, err := c.cmd("LOGIN " + quote(user) + " " + quote(password))
	return err
}

// response is one untagged response: its text with each literal replaced
// by "{}", and the literals.
type response struct {
	text     string
	literals [][]byte
}

var literalRE = regexp.MustCompile(`\{(\d+)\+?\}\r?\n$`)

// read reads one response line with its literals.
func (c *client) read() (response, error) {
	var r response
	var text strings.Builder
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return r, err
		}
		m := literalRE.FindStringSubmatchIndex(line)
		if m == nil {
			text.WriteString(strings.TrimRight(line, "\r\n"))
			r.text = text.String()
			return r, nil
		}
		n, _ := strconv.Atoi(line[m[2]:m[3]])
		text.WriteString(line[:m[0]] + "{}")
		lit := make([]byte, n)
		if _, err := io.ReadFull(c.r, lit); err != nil {
			return r, err
		}
		r.literals = append(r.literals, lit)
	}
}

// cmd sends one command and returns the untagged responses; a tagged NO
// or BAD is an error with the server's text.
func (c *client) cmd(command string) ([]response, error) {
	return c.cmdLiteral(command, nil)
}

// cmdLiteral sends command, which ends in a literal of lit when lit is
// not nil (sent after the server's continuation).
func (c *client) cmdLiteral(command string, lit []byte) ([]response, error) {
	c.tag++
	tag := fmt.Sprintf("T%d", c.tag)
	timeout := c.timeout
	if timeout == 0 {
		timeout = cmdTimeout
	}
	c.conn.SetDeadline(time.Now().Add(timeout))
	line := tag + " " + command
	if lit != nil {
		line += fmt.Sprintf(" {%d}", len(lit))
	}
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		return nil, err
	}
	var out []response
	sent := lit == nil
	for {
		r, err := c.read()
		if err != nil {
			return out, fmt.Errorf("%s: %w", firstWords(command), err)
		}
		switch {
		case strings.HasPrefix(r.text, "+") && !sent:
			if _, err := c.conn.Write(append(lit, '\r', '\n')); err != nil {
				return out, err
			}
			sent = true
		case strings.HasPrefix(r.text, tag+" "):
			status := strings.TrimPrefix(r.text, tag+" ")
			if !strings.HasPrefix(status, "OK") {
				return out, fmt.Errorf("%s: %s", firstWords(command), status)
			}
			return out, nil
		default:
			out = append(out, r)
		}
	}
}

// firstWords is command without its arguments past the mailbox (never a
// password).
func firstWords(command string) string {
	f := strings.Fields(command)
	if len(f) > 0 && f[0] == "LOGIN" {
		return "LOGIN"
	}
	return strings.Join(f[:min(len(f), 2)], " ")
}

// session logs in as user (with the password from Options.Users).
func (s *Server) session(t testing.TB, user string) *client {
	t.Helper()
	pw, ok := s.opts.Users[user]
	if !ok {
		t.Fatalf("servertest: no user %q", user)
	}
	c, err := dial(s.addr)
	if err != nil {
		t.Fatalf("servertest: %v", err)
	}
	if err := c.login(user, pw); err != nil {
		c.conn.Close()
		t.Fatalf("servertest: login as %s: %v", user, err)
	}
	return c
}

// Deliver appends each message to user's folder (created when missing), in
// order, over the harness's own IMAP client.
func (s *Server) Deliver(t testing.TB, user, folder string, msgs ...[]byte) {
	t.Helper()
	c := s.session(t, user)
	defer c.close()
	if !strings.EqualFold(folder, "INBOX") {
		c.cmd("CREATE " + quote(folder)) // an existing one is fine; APPEND says the rest
	}
	for _, m := range msgs {
		if _, err := c.cmdLiteral("APPEND "+quote(folder), m); err != nil {
			t.Fatalf("servertest: %v", err)
		}
	}
}

// Create creates user's folder, with the special use (RFC 6154, e.g.
// `\Sent`) when use is not "" — Cyrus has CREATE-SPECIAL-USE.
func (s *Server) Create(t testing.TB, user, folder, use string) {
	t.Helper()
	c := s.session(t, user)
	defer c.close()
	command := "CREATE " + quote(folder)
	if use != "" {
		command += " (USE (" + use + "))"
	}
	if _, err := c.cmd(command); err != nil {
		t.Fatalf("servertest: %v", err)
	}
}

// Message is one message of a folder as the server reports it.
type Message struct {
	UID    uint32
	Flags  string            // the FLAGS list as sent, e.g. `(\Seen)`
	Fields map[string]string // header fields asked for, by lower-case name (unfolded)
}

var (
	uidRE   = regexp.MustCompile(`\bUID (\d+)`)
	flagsRE = regexp.MustCompile(`\bFLAGS (\([^)]*\))`)
)

// Messages is every message of user's folder, by UID ascending, with the
// header fields named (EXAMINE, UID FETCH 1:* (UID FLAGS
// BODY.PEEK[HEADER.FIELDS (...)])). ok is false when the folder does not
// exist.
func (s *Server) Messages(t testing.TB, user, folder string, fields ...string) (msgs []Message, ok bool) {
	t.Helper()
	c := s.session(t, user)
	defer c.close()
	// A poll that meets a stalled folder lock gives up and says so (ok
	// false); the next one comes on a new connection.
	c.timeout = examineTimeout
	sel, err := c.cmd("EXAMINE " + quote(folder))
	c.timeout = 0
	if err != nil {
		return nil, false
	}
	exists := 0
	for _, r := range sel {
		if f := strings.Fields(r.text); len(f) == 3 && f[2] == "EXISTS" {
			exists, _ = strconv.Atoi(f[1])
		}
	}
	if exists == 0 {
		return nil, true
	}
	items := "UID FLAGS"
	if len(fields) > 0 {
		items += " BODY.PEEK[HEADER.FIELDS (" + strings.ToUpper(strings.Join(fields, " ")) + ")]"
	}
	resps, err := c.cmd("UID FETCH 1:* (" + items + ")")
	if err != nil {
		t.Fatalf("servertest: %v", err)
	}
	for _, r := range resps {
		if !strings.Contains(r.text, " FETCH ") {
			continue
		}
		m := uidRE.FindStringSubmatch(r.text)
		if m == nil {
			t.Fatalf("servertest: FETCH response without UID: %q", r.text)
		}
		uid, _ := strconv.ParseUint(m[1], 10, 32)
		msg := Message{UID: uint32(uid), Fields: map[string]string{}}
		if f := flagsRE.FindStringSubmatch(r.text); f != nil {
			msg.Flags = f[1]
		}
		for _, lit := range r.literals {
			for k, v := range headerFields(lit) {
				msg.Fields[k] = v
			}
		}
		msgs = append(msgs, msg)
	}
	slices.SortFunc(msgs, func(a, b Message) int { return int(a.UID) - int(b.UID) })
	return msgs, true
}

// headerFields parses a header block: lower-case name to unfolded value
// (the last one when repeated).
func headerFields(block []byte) map[string]string {
	out := map[string]string{}
	var name string
	for line := range bytes.SplitSeq(bytes.ReplaceAll(block, []byte("\r\n"), []byte("\n")), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if name != "" {
				out[name] += " " + strings.TrimSpace(string(line))
			}
			continue
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = strings.ToLower(strings.TrimSpace(string(k)))
		out[name] = strings.TrimSpace(string(v))
	}
	return out
}

// UIDs is the UIDs of user's folder, ascending.
func (s *Server) UIDs(t testing.TB, user, folder string) []uint32 {
	t.Helper()
	msgs, _ := s.Messages(t, user, folder)
	var uids []uint32
	for _, m := range msgs {
		uids = append(uids, m.UID)
	}
	return uids
}

// Status is STATUS folder (UIDVALIDITY MESSAGES UIDNEXT [HIGHESTMODSEQ])
// as the server sends it.
func (s *Server) Status(t testing.TB, user, folder string) string {
	t.Helper()
	c := s.session(t, user)
	defer c.close()
	resps, err := c.cmd("STATUS " + quote(folder) + " (UIDVALIDITY MESSAGES UIDNEXT)")
	if err != nil || len(resps) == 0 {
		t.Fatalf("servertest: STATUS %s: %v", folder, err)
	}
	return resps[0].text
}

// UIDValidity is user's folder's UIDVALIDITY.
func (s *Server) UIDValidity(t testing.TB, user, folder string) uint32 {
	t.Helper()
	st := s.Status(t, user, folder)
	m := regexp.MustCompile(`UIDVALIDITY (\d+)`).FindStringSubmatch(st)
	if m == nil {
		t.Fatalf("servertest: STATUS %s = %q", folder, st)
	}
	v, _ := strconv.ParseUint(m[1], 10, 32)
	return uint32(v)
}

// List is LIST "" "*" for user: each folder's name as the server sends
// it (quotes removed) with its attributes.
func (s *Server) List(t testing.TB, user string) map[string]string {
	t.Helper()
	c := s.session(t, user)
	defer c.close()
	resps, err := c.cmd(`LIST "" "*"`)
	if err != nil {
		t.Fatalf("servertest: %v", err)
	}
	re := regexp.MustCompile(`^\* LIST (\([^)]*\)) (?:"[^"]*"|NIL) (.*)$`)
	out := map[string]string{}
	for _, r := range resps {
		m := re.FindStringSubmatch(r.text)
		if m == nil {
			continue
		}
		name := m[2]
		if uq, err := strconv.Unquote(name); err == nil && strings.HasPrefix(name, `"`) {
			name = uq
		}
		out[name] = m[1]
	}
	return out
}

// SetFlags adds flags (e.g. `\Seen`) to the messages uids of user's folder.
func (s *Server) SetFlags(t testing.TB, user, folder, flags string, uids ...uint32) {
	t.Helper()
	c := s.session(t, user)
	defer c.close()
	if _, err := c.cmd("SELECT " + quote(folder)); err != nil {
		t.Fatalf("servertest: %v", err)
	}
	var set []string
	for _, u := range uids {
		set = append(set, strconv.FormatUint(uint64(u), 10))
	}
	if _, err := c.cmd("UID STORE " + strings.Join(set, ",") + " +FLAGS.SILENT (" + flags + ")"); err != nil {
		t.Fatalf("servertest: %v", err)
	}
}
