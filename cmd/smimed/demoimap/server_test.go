package demoimap

import (
	"bufio"
	"context"
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

// The tests speak IMAP over a raw connection, as RFC 3501 spells it, so
// that what they check does not come from go-imap (which the package is
// made of) and go-imap keeps its two importers.

// rawConn is a raw IMAP connection to the server under test.
type rawConn struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
	tag  int
}

func dial(t *testing.T, s *Server) *rawConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", s.Addr(), err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &rawConn{t: t, conn: conn, r: bufio.NewReader(conn)}
	if g := c.line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting = %q, want * OK", g)
	}
	return c
}

// line reads one response line without its CRLF; a literal {n} at its end
// is read and joined to the line with the rest that follows it.
func (c *rawConn) line() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read: %v (after %q)", err, b.String()+l)
		}
		l = strings.TrimSuffix(l, "\r\n")
		b.WriteString(l)
		m := regexp.MustCompile(`\{(\d+)\}$`).FindStringSubmatch(l)
		if m == nil {
			return b.String()
		}
		n, _ := strconv.Atoi(m[1])
		lit := make([]byte, n)
		if _, err := io.ReadFull(c.r, lit); err != nil {
			c.t.Fatalf("read literal: %v", err)
		}
		b.Write(lit)
	}
}

// cmd sends a tagged command and returns the untagged responses and the
// tagged status line's condition with its text ("OK ...", "NO ...").
func (c *rawConn) cmd(format string, args ...any) (untagged []string, status string) {
	c.t.Helper()
	c.tag++
	tag := fmt.Sprintf("t%d", c.tag)
	c.send(tag + " " + fmt.Sprintf(format, args...))
	for {
		l := c.line()
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			return untagged, rest
		}
		untagged = append(untagged, l)
	}
}

func (c *rawConn) send(line string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(line + "\r\n")); err != nil {
		c.t.Fatalf("write %q: %v", line, err)
	}
}

func (c *rawConn) login(user, password string) {
	c.t.Helper()
	if _, st := c.cmd("LOGIN %s %s", user, password); !strings.HasPrefix(st, "OK") {
		c.t.Fatalf("LOGIN %s = %q, want OK", user, st)
	}
}

func start(t *testing.T, mailboxes ...string) *Server {
	t.Helper()
	s, err := Start(context.Background(), "127.0.0.1:0", "alice", "secret", mailboxes...)
	if err != nil {
		t.Fatalf("Start() = %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

const testMsg = "From: bob@example.org\r\nTo: alice@example.org\r\nSubject: hi\r\n\r\nHello.\r\n"

func TestLoginAppendFetch(t *testing.T) {
	s := start(t, "INBOX", "Archive")
	if host, _, err := net.SplitHostPort(s.Addr()); err != nil || host != "127.0.0.1" {
		t.Fatalf("Addr() = %q, want 127.0.0.1:port", s.Addr())
	}
	c := dial(t, s)
	if _, st := c.cmd("LOGIN alice wrong"); !strings.HasPrefix(st, "NO") {
		t.Errorf("LOGIN with a wrong password = %q, want NO", st)
	}
	if _, st := c.cmd("LOGIN bob secret"); !strings.HasPrefix(st, "NO") {
		t.Errorf("LOGIN as another user = %q, want NO", st)
	}
	c.login("alice", "secret")
	list, _ := c.cmd(`LIST "" "*"`)
	if got := strings.Join(list, "\n"); !strings.Contains(got, "Archive") || !strings.Contains(got, "INBOX") {
		t.Errorf("LIST = %q, want INBOX and Archive", got)
	}
	if un, st := c.cmd("SELECT INBOX"); !strings.HasPrefix(st, "OK") || !slices.Contains(un, "* 0 EXISTS") {
		t.Fatalf("SELECT INBOX = %q, %q; want OK with 0 EXISTS", un, st)
	}

	date := time.Date(2024, 3, 15, 12, 30, 0, 0, time.UTC)
	if err := s.Append("INBOX", []byte(testMsg), date); err != nil {
		t.Fatalf("Append() = %v", err)
	}
	if un, _ := c.cmd("NOOP"); !slices.Contains(un, "* 1 EXISTS") {
		t.Errorf("NOOP after Append = %q, want * 1 EXISTS", un)
	}
	un, st := c.cmd("FETCH 1 (INTERNALDATE BODY.PEEK[])")
	wantDate := `INTERNALDATE "15-Mar-2024 12:30:00 +0000"`
	wantBody := fmt.Sprintf("BODY[] {%d}%s)", len(testMsg), testMsg)
	if !strings.HasPrefix(st, "OK") || len(un) != 1 || !strings.HasPrefix(un[0], "* 1 FETCH (") || !strings.Contains(un[0], wantDate) || !strings.HasSuffix(un[0], wantBody) {
		t.Errorf("FETCH 1 = %q, %q; want %s and %q", un, st, wantDate, wantBody)
	}
	if err := s.Append("Missing", []byte(testMsg), date); err == nil {
		t.Error("Append() to a missing mailbox = nil, want an error")
	}

	for mbox, want := range map[string]int{"INBOX": 1, "Archive": 0, "Missing": 0} {
		if got := s.Messages(mbox); got != want {
			t.Errorf("Messages(%q) = %d, want %d", mbox, got, want)
		}
	}
	if _, st := c.cmd("LOGOUT"); !strings.HasPrefix(st, "OK") {
		t.Errorf("LOGOUT = %q", st)
	}
}

// TestIdling checks that a message appended once Idling is closed reaches
// the session in IDLE at once.
func TestIdling(t *testing.T) {
	s := start(t, "INBOX")
	c := dial(t, s)
	c.login("alice", "secret")
	c.cmd("SELECT INBOX")
	select {
	case <-s.Idling():
		t.Fatal("Idling() closed before any IDLE")
	default:
	}
	c.send("i1 IDLE")
	if l := c.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE = %q, want a continuation", l)
	}
	select {
	case <-s.Idling():
	case <-time.After(5 * time.Second):
		t.Fatal("Idling() not closed 5 s after IDLE")
	}
	if err := s.Append("INBOX", []byte(testMsg), time.Now()); err != nil {
		t.Fatalf("Append() = %v", err)
	}
	if l := c.line(); l != "* 1 EXISTS" {
		t.Errorf("in IDLE after Append: %q, want * 1 EXISTS", l)
	}
	c.send("DONE")
	if l := c.line(); !strings.HasPrefix(l, "i1 OK") {
		t.Errorf("DONE = %q, want i1 OK", l)
	}
}

// TestIdleAnnouncesEarlierAppend: a message appended after the session's
// last command and before its IDLE is announced in the IDLE, as a real
// server does (imapmemserver's own Idle kept it for the next command).
func TestIdleAnnouncesEarlierAppend(t *testing.T) {
	s := start(t, "INBOX")
	c := dial(t, s)
	c.login("alice", "secret")
	c.cmd("EXAMINE INBOX")
	for range 2 {
		if err := s.Append("INBOX", []byte(testMsg), time.Now()); err != nil {
			t.Fatalf("Append() = %v", err)
		}
	}
	c.send("i1 IDLE")
	if l := c.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE = %q, want a continuation", l)
	}
	if l := c.line(); l != "* 1 EXISTS" && l != "* 2 EXISTS" {
		t.Errorf("in IDLE: %q, want * 1 EXISTS or * 2 EXISTS", l)
	}
	c.send("DONE")
	for {
		if l := c.line(); strings.HasPrefix(l, "i1 ") {
			if !strings.HasPrefix(l, "i1 OK") {
				t.Errorf("DONE = %q, want i1 OK", l)
			}
			break
		}
	}
}

func TestClose(t *testing.T) {
	s := start(t, "INBOX")
	c := dial(t, s)
	c.login("alice", "secret")
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if l, err := c.r.ReadString('\n'); err == nil && !strings.HasPrefix(l, "* BYE") {
		t.Errorf("open connection after Close(): read %q, want BYE or the end", l)
	}
	if conn, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		conn.Close()
		t.Errorf("dial %s after Close() succeeded", s.Addr())
	}
	if err := s.Close(); err == nil {
		t.Error("second Close() = nil, want an error")
	}
}

func TestStartErrors(t *testing.T) {
	s := start(t)
	if _, err := Start(context.Background(), s.Addr(), "alice", "secret"); err == nil {
		t.Errorf("Start() on %s, in use = nil, want an error", s.Addr())
	}
	if _, err := Start(context.Background(), "127.0.0.1:0", "alice", "secret", "INBOX", "INBOX"); err == nil {
		t.Error("Start() with INBOX twice = nil, want an error")
	}
}
