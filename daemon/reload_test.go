package daemon

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/daemon/testenv"
)

// countLines counts the log lines that hold every one of parts.
func countLines(logs string, parts ...string) int {
	n := 0
	for line := range strings.SplitSeq(logs, "\n") {
		all := line != ""
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

// waitLines waits until n log lines hold every one of parts.
func waitLines(t *testing.T, logs *testenv.LockedBuffer, n int, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for countLines(logs.String(), parts...) < n {
		if time.Now().After(deadline) {
			t.Fatalf("no %d log lines with %q within 30 s:\n%s", n, parts, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dovecotCount counts Dovecot's log lines matching re: its own record of
// logins and logouts.
func dovecotCount(e *svcEnv, re string) int {
	return len(regexp.MustCompile(re).FindAllStringIndex(e.d.Log(), -1))
}

func logins(e *svcEnv, user string) int {
	return dovecotCount(e, `imap-login: Info: Login: user=<`+regexp.QuoteMeta(user)+`>`)
}

func logouts(e *svcEnv, user string) int {
	return dovecotCount(e, `imap\(`+regexp.QuoteMeta(user)+`\)<[^>]*><[^>]*>: Info: Disconnected: Logged out`)
}

// TestServiceReload reloads a running service: an added account starts, a
// removed one logs out with its checkpoint committed, an unchanged one keeps
// its connection and gets the new keys, a changed one restarts, and an
// invalid file changes nothing.
func TestServiceReload(t *testing.T) {
	e := newSvcEnv(t, "keep", "gone", "newbie")
	e.d.Deliver(t, "keep", "INBOX", testenv.Testdata(t, "msg", "enc-old-key.eml"))
	e.d.Deliver(t, "gone", "INBOX", testenv.Testdata(t, "msg", "plain.eml"))
	e.d.Deliver(t, "newbie", "INBOX", testenv.Testdata(t, "msg", "plain.eml"))
	e.writeConfig(t, "", []string{"org-new"}, e.account("keep"), e.account("gone"))

	logs := &testenv.LockedBuffer{}
	svc, stop := runService(t, e.cfgPath, logs)
	// Without org-old the message to it cannot be decrypted.
	waitLines(t, logs, 1, "message processed", "account=keep", "decryption=failed")
	waitLines(t, logs, 1, "message processed", "account=gone")
	if n := logins(e, "keep"); n != 1 {
		t.Fatalf("Dovecot saw %d logins of keep, want 1", n)
	}

	// Reload: gone removed, newbie added, org-old added to the keys.
	e.writeConfig(t, "", []string{"org-new", "org-old"}, e.account("keep"), e.account("newbie"))
	if err := svc.Reload(); err != nil {
		t.Fatalf("Reload() = %v", err)
	}
	if n := countLines(logs.String(), "configuration reloaded", "added=newbie", "removed=gone", "restarted=\"\"", "unchanged=keep", "keys=2"); n != 1 {
		t.Errorf("want one reload summary (added=newbie removed=gone unchanged=keep keys=2):\n%s", logs.String())
	}
	waitLines(t, logs, 1, "message processed", "account=newbie")
	// gone logged out and its checkpoint covers its message.
	if n := logouts(e, "gone"); n != 1 {
		t.Errorf("Dovecot saw %d LOGOUTs of gone, want 1:\n%s", n, e.d.Log())
	}
	goneUID := e.d.UIDs(t, "gone", "INBOX")[0]
	if cp, ok, err := svc.cps.Get("gone", "INBOX"); err != nil || !ok || cp.UID != goneUID {
		t.Errorf("gone's checkpoint = %+v, %v, %v; want UID %d", cp, ok, err, goneUID)
	}
	e.d.Deliver(t, "gone", "INBOX", testenv.Testdata(t, "msg", "plain.eml"))
	// keep's connection is the same, and the new key decrypts its mail.
	e.d.Deliver(t, "keep", "INBOX", testenv.Testdata(t, "msg", "enc-old-key.eml"))
	waitLines(t, logs, 1, "message processed", "account=keep", "decryption=ok")
	if n := logins(e, "keep"); n != 1 {
		t.Errorf("Dovecot saw %d logins of keep after the reload, want still 1", n)
	}
	if n := logouts(e, "keep"); n != 0 {
		t.Errorf("Dovecot saw %d LOGOUTs of keep, want none", n)
	}

	// An invalid file: one error line naming the key, nothing changes.
	e.writeConfig(t, "[daemon]\nworkers = 0", []string{"org-new", "org-old"}, e.account("keep"), e.account("newbie"))
	var ce *config.Error
	if err := svc.Reload(); !errors.As(err, &ce) {
		t.Fatalf("Reload() of an invalid file = %v, want a *config.Error", err)
	}
	if n := countLines(logs.String(), "reload refused", "daemon.workers"); n != 1 {
		t.Errorf("want one \"reload refused\" line naming daemon.workers:\n%s", logs.String())
	}
	e.d.Deliver(t, "keep", "INBOX", testenv.Testdata(t, "msg", "plain.eml"))
	waitLines(t, logs, 3, "message processed", "account=keep")

	// newbie changed (a second folder): only newbie restarts.
	e.d.Deliver(t, "newbie", "Other", testenv.Testdata(t, "msg", "plain.eml"))
	e.writeConfig(t, "", []string{"org-new", "org-old"}, e.account("keep"), e.account("newbie", "INBOX", "Other"))
	if err := svc.Reload(); err != nil {
		t.Fatalf("Reload() = %v", err)
	}
	if n := countLines(logs.String(), "configuration reloaded", "added=\"\"", "removed=\"\"", "restarted=newbie", "unchanged=keep"); n != 1 {
		t.Errorf("want one reload summary with restarted=newbie unchanged=keep:\n%s", logs.String())
	}
	waitLines(t, logs, 1, "message processed", "account=newbie", "folder=Other")
	// newbie's INBOX watcher has nothing new to process: wait for its
	// login, which a loaded machine may show after Other's message.
	waitUntil(t, "3 logins of newbie", func() bool { return logins(e, "newbie") >= 3 },
		func() string { return e.d.Log() })
	stop()

	if n := logins(e, "keep"); n != 1 {
		t.Errorf("Dovecot saw %d logins of keep, want 1 through every reload", n)
	}
	if n := logins(e, "newbie"); n != 3 {
		t.Errorf("Dovecot saw %d logins of newbie, want 3 (1 before its restart, 2 folders after)", n)
	}
	if n := countLines(logs.String(), "message processed", "account=gone"); n != 1 {
		t.Errorf("gone processed %d messages, want only the one before its removal", n)
	}
	if n := countLines(logs.String(), "message processed", "account=newbie", "folder=INBOX"); n != 1 {
		t.Errorf("newbie's INBOX processed %d times across its restart, want once", n)
	}
}

// TestReloadShrinksPoolDuringBacklog: workers goes from 4 to 1 while a
// backlog is fetched in batches. A batch waiting for more slots than the
// smaller pool gives must not hold on to the ones it has for ever: the
// backlog is worked off all the same.
func TestReloadShrinksPoolDuringBacklog(t *testing.T) {
	e := newSvcEnv(t, "ceo")
	const n = 120
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = numbered(testenv.Testdata(t, "msg", "plain.eml"), i)
	}
	e.d.DeliverMaildir(t, "ceo", msgs)
	e.writeConfig(t, "[daemon]\nworkers = 4", []string{"org-new"}, e.account("ceo"))
	logs := &testenv.LockedBuffer{}
	svc, _ := runService(t, e.cfgPath, logs)
	waitLines(t, logs, 5, "message processed")
	e.writeConfig(t, "[daemon]\nworkers = 1", []string{"org-new"}, e.account("ceo"))
	if err := svc.Reload(); err != nil {
		t.Fatalf("Reload() = %v", err)
	}
	waitLines(t, logs, n, "message processed")
	if got := svc.pool.Size(); got != 1 {
		t.Errorf("pool size after the reload = %d, want 1", got)
	}
}
