package testenv

// What the tests read from and put into a private Dovecot with doveadm,
// independently of the code under test.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Doveadm runs doveadm -c CONF args... and returns its standard output. It
// fails t when doveadm fails.
func (s *Dovecot) Doveadm(t testing.TB, args ...string) string {
	t.Helper()
	out, err := s.DoveadmInput(nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// DoveadmInput runs doveadm with stdin and returns stdout or an error that
// includes stderr.
func (s *Dovecot) DoveadmInput(stdin []byte, args ...string) (string, error) {
	cmd := exec.Command(s.doveadm, append([]string{"-c", s.conf}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("doveadm %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Deliver saves msg into user's folder with doveadm save, independently of
// the code under test. A missing folder is created first.
func (s *Dovecot) Deliver(t testing.TB, user, folder string, msg []byte) {
	t.Helper()
	if !strings.EqualFold(folder, "INBOX") {
		// Ignore "already exists"; a real failure shows in save below.
		s.DoveadmInput(nil, "mailbox", "create", "-u", user, folder)
	}
	if _, err := s.DoveadmInput(msg, "save", "-u", user, "-m", folder); err != nil {
		t.Fatal(err)
	}
}

// DeliverMaildir puts msgs into user's INBOX in that order by writing
// them straight into the Maildir (tmp, then renamed into new, as any MDA
// does) and then has Dovecot assign their UIDs (doveadm force-resync).
// It is meant for big backlogs, where one doveadm save per message takes
// too long; the bytes are stored exactly as given.
func (s *Dovecot) DeliverMaildir(t testing.TB, user string, msgs [][]byte) {
	t.Helper()
	// Opening INBOX creates the user's Maildir with Dovecot's owner and
	// modes.
	s.Doveadm(t, "mailbox", "status", "-u", user, "messages", "INBOX")
	uid, gid, err := dovecotIDs()
	if err != nil {
		t.Fatal(err)
	}
	md := filepath.Join(s.dir, "mail", user, "Maildir")
	now := time.Now().Unix()
	pid := os.Getpid()
	for i, m := range msgs {
		// Dovecot gives new files their UIDs in the order of their
		// names: a fixed-width counter keeps the order of msgs.
		name := fmt.Sprintf("%d.M%09dP%d.testenv", now, i, pid)
		tmp := filepath.Join(md, "tmp", name)
		if err := os.WriteFile(tmp, m, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(tmp, uid, gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(md, "new", name)); err != nil {
			t.Fatal(err)
		}
	}
	s.Doveadm(t, "force-resync", "-u", user, "INBOX")
}

// UIDs are the UIDs of the messages in user's folder, in the order doveadm
// search reports them (one "GUID UID" line per message).
func (s *Dovecot) UIDs(t testing.TB, user, folder string) []uint32 {
	t.Helper()
	out := strings.TrimSpace(s.Doveadm(t, "search", "-u", user, "mailbox", folder, "all"))
	if out == "" {
		return nil
	}
	var uids []uint32
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			t.Fatalf("doveadm search -u %s mailbox %s all: line %q, want GUID UID", user, folder, line)
		}
		n, err := strconv.ParseUint(f[1], 10, 32)
		if err != nil {
			t.Fatalf("doveadm search -u %s mailbox %s all: line %q: %v", user, folder, line, err)
		}
		uids = append(uids, uint32(n))
	}
	return uids
}

// UIDValidity is the UIDVALIDITY of user's folder as doveadm mailbox
// status reports it ("FOLDER uidvalidity=N").
func (s *Dovecot) UIDValidity(t testing.TB, user, folder string) uint32 {
	t.Helper()
	out := strings.TrimSpace(s.Doveadm(t, "mailbox", "status", "-u", user, "uidvalidity", folder))
	v, ok := strings.CutPrefix(out, folder+" uidvalidity=")
	n, err := strconv.ParseUint(v, 10, 32)
	if !ok || err != nil {
		t.Fatalf("doveadm mailbox status -u %s uidvalidity %s = %q", user, folder, out)
	}
	return uint32(n)
}

func dovecotIDs() (uid, gid int, err error) {
	dc, err := user.Lookup("dovecot")
	if err != nil {
		return 0, 0, fmt.Errorf("testenv: no dovecot user (%v); %s", err, installHint)
	}
	uid, _ = strconv.Atoi(dc.Uid)
	gid, _ = strconv.Atoi(dc.Gid)
	return uid, gid, nil
}

// WaitUIDs polls user's folder until it holds at least n messages and
// returns their UIDs, failing t after within (with Dovecot's log). Before
// the first delivery the user's mailbox may not exist: that counts as
// empty.
func (s *Dovecot) WaitUIDs(t testing.TB, user, folder string, n int, within time.Duration) []uint32 {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		out, err := s.DoveadmInput(nil, "search", "-u", user, "mailbox", folder, "all")
		if err == nil && len(strings.Fields(out)) >= 2*n {
			return s.UIDs(t, user, folder)
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: %s's %s: fewer than %d messages after %v (%v: %q)\nlog:\n%s", user, folder, n, within, err, out, s.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
