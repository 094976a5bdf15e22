package servertest

import (
	"fmt"
	"strings"
	"testing"
)

// TestStart starts each server with Debian's defaults, delivers two
// messages and reads them back through the harness's own client; the
// server's own log shows the login.
func TestStart(t *testing.T) {
	for _, kind := range []Kind{Cyrus, Courier} {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			s := Start(t, kind, Options{Users: map[string]string{"alice": "pw-alice"}})
			for i := range 2 {
				s.Deliver(t, "alice", "INBOX", fmt.Appendf(nil, "From: a@example.org\r\nMessage-ID: <m%d@example.org>\r\nSubject: m%d\r\n\r\nbody %d\r\n", i, i, i))
			}
			msgs, ok := s.Messages(t, "alice", "INBOX", "Message-ID")
			if !ok || len(msgs) != 2 || msgs[1].Fields["message-id"] != "<m1@example.org>" {
				t.Fatalf("Messages(INBOX) = %+v, %v; want the two delivered", msgs, ok)
			}
			if s.UIDValidity(t, "alice", "INBOX") == 0 {
				t.Error("UIDVALIDITY 0")
			}
			if n := s.Logins("alice"); n == 0 {
				t.Errorf("the server logged no login of alice:\n%s", s.Log())
			}
			s.Restart(t)
			if got := s.UIDs(t, "alice", "INBOX"); len(got) != 2 {
				t.Errorf("after Restart: UIDs %v, want 2", got)
			}
			if _, ok := s.Messages(t, "alice", "Nonexistent"); ok {
				t.Error("Messages of a missing folder: ok")
			}
			if l := s.List(t, "alice"); !strings.Contains(fmt.Sprint(l), "INBOX") {
				t.Errorf("LIST = %v", l)
			}
		})
	}
}
