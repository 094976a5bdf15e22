package imapconn

// The adapter against the three servers organisations run and this machine
// can: Dovecot (daemon/testenv), Cyrus IMAP and Courier-IMAP (servertest),
// each with its Debian defaults. What a test checks on the server comes
// from doveadm or from servertest's own IMAP client, never from Conn.

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/imapconn/servertest"
	"github.com/smimed/smimed/daemon/testenv"
)

// personalPrefix is where each server, as Debian configures it, keeps a
// user's own folders (its NAMESPACE answer, read by hand: Dovecot
// (("" ".")), Cyrus and Courier (("INBOX." "."))).
var personalPrefix = map[servertest.Kind]string{servertest.Dovecot: "", servertest.Cyrus: "INBOX.", servertest.Courier: "INBOX."}

// eachServer runs f in a parallel subtest per server, each with user
// "ceo" (password "pw-ceo").
func eachServer(t *testing.T, f func(t *testing.T, s *servertest.Server)) {
	for _, kind := range servertest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			f(t, servertest.Start(t, kind, servertest.Options{Users: map[string]string{"ceo": "pw-ceo"}}))
		})
	}
}

func dialServer(t *testing.T, s *servertest.Server, log *slog.Logger) *Conn {
	t.Helper()
	c, err := Dial(context.Background(), Config{Addr: s.Addr(), TLS: "none", Username: "ceo", Password: "pw-ceo", Auth: s.Auth(), Logger: log, CommandTimeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("Dial() = %v\nserver log:\n%s", err, s.Log())
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// count is how many messages the server has in ceo's folder (-1: no
// such folder).
func count(t *testing.T, s *servertest.Server, folder string) int {
	t.Helper()
	msgs, ok := s.Messages(t, "ceo", folder)
	if !ok {
		return -1
	}
	return len(msgs)
}

func tempMessage(t *testing.T, id string) (path string, want map[string]string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), id+".eml")
	msg := "From: smimed@org.example\r\nTo: ceo@org.example\r\nSubject: copy " + id + "\r\nX-Smimed-Source: <" + id + "@test.smimed.example>\r\n\r\nthe copy " + id + "\r\n"
	if err := os.WriteFile(path, []byte(msg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, map[string]string{"X-Smimed-Source": "<" + id + "@test.smimed.example>"}
}

// TestServersCopyFolder (issue 10, 1-3): the archive folder as configured
// ("Decrypted") is placed in the user's personal namespace; a second
// connection finds the folder existing by LIST, whatever the text of the
// server's NO to CREATE; an APPEND after FindCopies on the same connection
// works although FindCopies left the folder EXAMINEd; a full name stays as
// written. Before: Cyrus refused "Decrypted" (Permission denied), Courier
// too (Invalid mailbox name.), and with "INBOX.Decrypted" the second
// connection's CREATE failed every copy, and Courier refused the APPEND
// (Current box is selected READ-ONLY).
func TestServersCopyFolder(t *testing.T) {
	eachServer(t, func(t *testing.T, s *servertest.Server) {
		ctx := context.Background()
		want := personalPrefix[s.Kind()] + "Decrypted"
		a, _ := tempMessage(t, "a")
		b, _ := tempMessage(t, "b")
		_, wantA := tempMessage(t, "a")

		c1 := dialServer(t, s, testLogger(t))
		if _, err := c1.Append(ctx, "Decrypted", a, time.Now()); err != nil {
			t.Fatalf("first Append(Decrypted) = %v", err)
		}
		// A new connection, as after a restart of the daemon.
		c2 := dialServer(t, s, testLogger(t))
		found, err := c2.FindCopies(ctx, "Decrypted", wantA)
		if err != nil || len(found) != 1 {
			t.Fatalf("FindCopies(Decrypted) = %v, %v; want one UID", found, err)
		}
		if _, err := c2.Append(ctx, "Decrypted", b, time.Now()); err != nil {
			t.Fatalf("Append(Decrypted) after FindCopies on the same connection = %v", err)
		}
		if n := count(t, s, want); n != 2 {
			t.Errorf("%s holds %d messages on the server, want 2; folders %v", want, n, s.List(t, "ceo"))
		}
		if n := count(t, s, "INBOX"); n != 0 {
			t.Errorf("INBOX holds %d messages, want 0", n)
		}

		// A full name stays as written.
		full := personalPrefix[s.Kind()] + "Explicit"
		if s.Kind() == servertest.Dovecot {
			full = "INBOX" // the one full name every server has
		}
		if got := c2.Resolve(full); got != full {
			t.Errorf("Resolve(%q) = %q, want it unchanged", full, got)
		}
		if _, err := c2.Append(ctx, full, a, time.Now()); err != nil {
			t.Fatalf("Append(%s) = %v", full, err)
		}
		if n := count(t, s, full); n != 1 {
			t.Errorf("%s holds %d messages, want 1; folders %v", full, n, s.List(t, "ceo"))
		}
		for _, f := range s.List(t, "ceo") {
			if strings.Contains(f, "INBOX.INBOX") {
				t.Errorf("folder %q: a full name was prefixed again", f)
			}
		}
	})
}

// TestServersNoCopyIntoSpecialUse: a folder whose special use (RFC 6154)
// is \Sent never takes a copy, even when archive_folder names it. Cyrus
// has CREATE-SPECIAL-USE, so the harness can make one.
func TestServersNoCopyIntoSpecialUse(t *testing.T) {
	t.Parallel()
	s := servertest.Start(t, servertest.Cyrus, servertest.Options{Users: map[string]string{"ceo": "pw-ceo"}})
	s.Create(t, "ceo", "INBOX.Sent", `\Sent`)
	if l := s.List(t, "ceo"); !strings.Contains(l["INBOX.Sent"], `\Sent`) {
		t.Fatalf("setup: LIST shows INBOX.Sent as %q", l["INBOX.Sent"])
	}
	c := dialServer(t, s, testLogger(t))
	a, _ := tempMessage(t, "a")
	_, err := c.Append(context.Background(), "Sent", a, time.Now())
	if !errors.Is(err, ErrSpecialUse) {
		t.Errorf("Append(Sent) = %v, want ErrSpecialUse", err)
	}
	if msgs, _ := s.Messages(t, "ceo", "INBOX.Sent"); len(msgs) != 0 {
		t.Errorf("INBOX.Sent holds %d messages, want 0", len(msgs))
	}
}

// TestServersBye (issue 10, 6): a server shut down while a connection
// idles says BYE with a reason; the error and the log carry that text, not
// only "use of closed network connection".
func TestServersBye(t *testing.T) {
	eachServer(t, func(t *testing.T, s *servertest.Server) {
		logs := &testenv.LockedBuffer{}
		c := dialServer(t, s, slog.New(slog.NewTextHandler(logs, nil)))
		if _, err := c.Examine(context.Background(), "INBOX"); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := c.Idle(context.Background(), time.Minute)
			done <- err
		}()
		time.Sleep(300 * time.Millisecond) // in IDLE
		s.Restart(t)
		var err error
		select {
		case err = <-done:
		case <-time.After(40 * time.Second):
			t.Fatal("IDLE did not end when the server stopped")
		}
		out := logs.String()
		t.Logf("%s: IDLE ended: %v", s.Kind(), err)
		// What each server says when stopped (Cyrus's imapd sends nothing).
		if bye := map[servertest.Kind]string{servertest.Dovecot: "Server shutting down.", servertest.Courier: "Courier-IMAP server shut down by signal."}[s.Kind()]; bye != "" {
			if err == nil || !strings.Contains(err.Error(), "BYE: "+bye) {
				t.Errorf("Idle() = %v, want the BYE text %q", err, bye)
			}
			if !strings.Contains(out, `bye="`+bye+`"`) {
				t.Errorf("the log does not hold the BYE:\n%s", out)
			}
		}
	})
}

// TestByeScanner: a BYE line is found, one inside a literal (a message
// body any sender writes) is not, and a line split across reads is put
// together.
func TestByeScanner(t *testing.T) {
	for _, tc := range []struct {
		name, stream, want string
	}{
		{"bye", "* OK ready\r\n* BYE Server shutting down.\r\n", "Server shutting down."},
		{"lower case", "* bye going away\r\n", "going away"},
		{"in a literal", "* 1 FETCH (BODY[] {26}\r\n\r\n* BYE forged by a sender UID 1)\r\n", ""},
		{"literal+ then bye", "* 1 FETCH (BODY[] {3+}\r\nabc UID 2)\r\n* BYE real\r\n", "real"},
		{"the rest of a line after a literal", "* 1 FETCH (BODY[] {3}\r\nabc* BYE x)\r\n", ""},
		{"control characters", "* BYE a\x1b[31mb\r\n", "a[31mb"},
		{"tagged", "A1 BYE not untagged\r\n", ""},
	} {
		for _, chunk := range []int{1, 5, 1000} {
			var s byeScanner
			for p := []byte(tc.stream); len(p) > 0; {
				n := min(chunk, len(p))
				s.feed(p[:n])
				p = p[n:]
			}
			if s.text != tc.want {
				t.Errorf("%s (reads of %d): BYE text %q, want %q", tc.name, chunk, s.text, tc.want)
			}
		}
	}
}

// TestResolve: where a configured folder name goes, for the namespaces
// the three servers announce (and Cyrus with altnamespace).
func TestResolve(t *testing.T) {
	courier := namespace{prefix: "INBOX.", delim: '.', others: []string{"#shared.", "shared."}}
	cyrus := namespace{prefix: "INBOX.", delim: '.', others: []string{"user."}}
	flat := namespace{prefix: "", delim: '.'}
	noDelim := namespace{prefix: "INBOX", delim: '/'}
	for _, tc := range []struct {
		ns         namespace
		name, want string
	}{
		{courier, "Decrypted", "INBOX.Decrypted"},
		{courier, "INBOX", "INBOX"},
		{courier, "inbox", "inbox"},
		{courier, "INBOX.Decrypted", "INBOX.Decrypted"},
		{courier, "Inbox.Decrypted", "Inbox.Decrypted"},
		{courier, "shared.Team", "shared.Team"},
		{courier, "Archive.Decrypted", "INBOX.Archive.Decrypted"},
		{cyrus, "user.boss.Decrypted", "user.boss.Decrypted"},
		{cyrus, "INBOXES", "INBOX.INBOXES"},
		{flat, "Decrypted", "Decrypted"},
		{flat, "INBOX.Decrypted", "INBOX.Decrypted"},
		{noDelim, "Decrypted", "INBOX/Decrypted"},
	} {
		if got := tc.ns.resolve(tc.name); got != tc.want {
			t.Errorf("namespace %+v: resolve(%q) = %q, want %q", tc.ns, tc.name, got, tc.want)
		}
	}
}
