package dovecottest

import (
	"strings"
	"testing"
)

func TestStartDeliver(t *testing.T) {
	s := Start(t)
	s.AddUser("alice", "secret")
	s.Deliver("alice", "INBOX", []byte("Subject: hi\r\n\r\nbody\r\n"))
	s.Deliver("alice", "Other", []byte("Subject: hi2\r\n\r\nbody\r\n"))
	out := s.Doveadm("search", "-u", "alice", "mailbox", "INBOX", "all")
	if n := len(strings.Fields(out)); n != 2 {
		t.Fatalf("doveadm search = %q, want one message (mailbox-guid uid)", out)
	}
	t.Logf("version %s addr %s search %q", s.Version(), s.Addr(), out)
	t.Log(s.Doveadm("mailbox", "status", "-u", "alice", "uidvalidity messages", "Other"))
}
