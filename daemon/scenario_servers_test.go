package daemon

// The service scenarios against each IMAP server this machine can run —
// Dovecot, Cyrus IMAP and Courier-IMAP, each with Debian's defaults (so
// Cyrus's and Courier's personal folders under "INBOX.") — through
// servertest. What is checked comes from the server, read by servertest's
// own IMAP client, never from the service.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/admin"
	"github.com/smimed/smimed/daemon/imapconn/servertest"
	"github.com/smimed/smimed/daemon/testenv"
)

// serverPrefix is where each server, as Debian configures it, keeps a
// user's folders (its NAMESPACE answer, read by hand).
var serverPrefix = map[servertest.Kind]string{servertest.Dovecot: "", servertest.Cyrus: "INBOX.", servertest.Courier: "INBOX."}

// serverEnv is svcEnv's configuration directory with one server of any
// kind; its users' passwords are "pw-" + name.
type serverEnv struct {
	*svcEnv
	s *servertest.Server
}

func newServerEnv(t *testing.T, kind servertest.Kind, opts servertest.Options, users ...string) *serverEnv {
	t.Helper()
	opts.Users = map[string]string{}
	for _, u := range users {
		opts.Users[u] = testenv.Password(u)
	}
	s := servertest.Start(t, kind, opts)
	e := &serverEnv{svcEnv: &svcEnv{dir: t.TempDir()}, s: s}
	e.cfgPath = filepath.Join(e.dir, "smimed.toml")
	testenv.CopyPKI(t, e.dir, "org-new.crt", "org-new.key", "org-old.crt", "org-old.key", "ca-bundle.pem")
	for _, u := range users {
		testenv.WritePasswordFile(t, e.dir, u)
	}
	return e
}

// account is one [[accounts]] entry for user on the server, watching INBOX.
func (e *serverEnv) account(user string, more string) string {
	return testenv.Account(user, e.s.Addr(), fmt.Sprintf("auth = %q\n%s", e.s.Auth(), more))
}

// checkServerArchivedOnce compares the archive with the server: every
// UID in user's INBOX has exactly one record with the server's
// Message-ID under its UIDVALIDITY, and there is no record of another UID.
func checkServerArchivedOnce(t *testing.T, svc *Service, s *servertest.Server, user string) {
	t.Helper()
	msgs, _ := s.Messages(t, user, "INBOX", "Message-ID")
	uv := s.UIDValidity(t, user, "INBOX")
	got := byUID(t, svc.arch, user, "INBOX")
	// Courier was seen (under CI load, about one run in ten) to give the
	// folder a new UIDVALIDITY after the messages were archived, keeping
	// their UIDs: the server's choice, which the service meets at its
	// next session (TestScenarioUIDValidityChange). Archived
	// under the one UIDVALIDITY before it, the messages count as archived
	// once, compared by UID and Message-ID.
	var archived []uint32
	for _, recs := range got {
		for _, r := range recs {
			if !slices.Contains(archived, r.UIDValidity) {
				archived = append(archived, r.UIDValidity)
			}
		}
	}
	if s.Kind() == servertest.Courier && len(archived) == 1 && archived[0] < uv {
		t.Logf("the server renumbered the folder after the messages were archived: UIDVALIDITY %d, then %d", archived[0], uv)
		uv = archived[0]
	}
	ids := map[uint32]string{}
	for _, m := range msgs {
		ids[m.UID] = m.Fields["message-id"]
		recs := got[m.UID]
		if len(recs) != 1 {
			t.Errorf("UID %d: %d archive records, want 1", m.UID, len(recs))
			continue
		}
		if r := recs[0]; r.MessageID != m.Fields["message-id"] || r.UIDValidity != uv {
			t.Errorf("UID %d archived as %s under UIDVALIDITY %d, the server has %s under %d", m.UID, r.MessageID, r.UIDValidity, m.Fields["message-id"], uv)
		}
	}
	for uid := range got {
		if _, ok := ids[uid]; !ok {
			t.Errorf("UID %d archived, but the server has no such message", uid)
		}
	}
}

// serverCopies counts the messages in user's folder (the server's full
// name) by their X-Smimed-Source.
// waitServer is waitUntil for a condition read from the server over a new
// IMAP session, checked at most every serverPoll: on Courier every such
// listing takes the folder's lock, and a session every 10 ms kept the
// service's APPENDs (and the listings themselves) waiting for it for
// seconds, once past waitUntil's minute.
func waitServer(t *testing.T, what string, cond func() bool, describe func() string) {
	t.Helper()
	var last time.Time
	waitUntil(t, what, func() bool {
		time.Sleep(time.Until(last.Add(serverPoll)))
		last = time.Now()
		return cond()
	}, describe)
}

const serverPoll = 250 * time.Millisecond

func serverCopies(t *testing.T, s *servertest.Server, user, folder string) map[string]int {
	t.Helper()
	out := map[string]int{}
	msgs, _ := s.Messages(t, user, folder, "X-Smimed-Source")
	for _, m := range msgs {
		out[m.Fields["x-smimed-source"]]++
	}
	return out
}

// inboxView is the INBOX as the server has it: UIDs, flags, Message-IDs
// and the STATUS line.
func inboxView(t *testing.T, s *servertest.Server, user string) string {
	t.Helper()
	var b strings.Builder
	msgs, _ := s.Messages(t, user, "INBOX", "Message-ID")
	for _, m := range msgs {
		fmt.Fprintf(&b, "%d %s %s\n", m.UID, m.Flags, m.Fields["message-id"])
	}
	b.WriteString(s.Status(t, user, "INBOX"))
	return b.String()
}

// eachServer runs test in parallel on each server with Debian's defaults
// and a user "ceo"; folder is where that server places a relative
// archive_folder "Decrypted" (serverPrefix).
func eachServer(t *testing.T, test func(t *testing.T, e *serverEnv, folder string)) {
	for _, kind := range servertest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			test(t, newServerEnv(t, kind, servertest.Options{}, "ceo"), serverPrefix[kind]+"Decrypted")
		})
	}
}

// TestServersScenario, on each server: a backlog is archived once each
// (backfill, with its rate logged), the encrypted messages' copies are in
// the archive folder as the server places "Decrypted" (INBOX.Decrypted on
// Cyrus and Courier), once each; the INBOX keeps its messages and flags;
// after the server is restarted the service reconnects by itself, and new
// mail is archived and copied, nothing twice. Before issue 10 not one copy
// was stored on Cyrus or Courier.
func TestServersScenario(t *testing.T) {
	eachServer(t, func(t *testing.T, e *serverEnv, folder string) {
		s, kind := e.s, e.s.Kind()
		const plain = 200
		var backlog [][]byte
		for i := range plain {
			backlog = append(backlog, fmt.Appendf(nil, "From: alice@partner.example\r\nTo: ceo@org.example\r\nSubject: backlog %d\r\nMessage-ID: <backlog-%d@test.smimed.example>\r\n\r\nmessage %d of the backlog\r\n", i, i, i))
		}
		mixed, encrypted := mix(t, len(mixFixtures), 0)
		backlog = append(backlog, mixed...)
		s.Deliver(t, "ceo", "INBOX", backlog...)
		s.SetFlags(t, "ceo", "INBOX", `\Seen`, 1, 2, 5)
		s.SetFlags(t, "ceo", "INBOX", `\Flagged`, 2, 3)
		before := inboxView(t, s, "ceo")

		// liveness_interval as docs/imap-servers.md advises for servers whose
		// IDLE polls (Debian's Cyrus and Courier): mail after the
		// restart would otherwise wait up to a minute.
		e.writeConfig(t, "[daemon]\nworkers = 4\nliveness_interval = \"10s\"", []string{"org-new"}, e.account("ceo", "archive_folder = \"Decrypted\"\n"))
		logs := &testenv.LockedBuffer{}
		start := time.Now()
		svc, stop := runService(t, e.cfgPath, logs)
		waitArchived(t, svc, logs, len(backlog))
		took := time.Since(start)
		t.Logf("%s: backfill of %d messages in %v (%.0f messages/s)", kind, len(backlog), took.Round(time.Millisecond), float64(len(backlog))/took.Seconds())
		waitServer(t, "copies in "+folder, func() bool { return len(serverCopies(t, s, "ceo", folder)) >= encrypted },
			func() string { return fmt.Sprintf("%v; log:\n%s", serverCopies(t, s, "ceo", folder), logs.String()) })
		checkServerArchivedOnce(t, svc, s, "ceo")
		checkServerCopiesOnce(t, s, folder, encrypted)
		if n := countLines(logs.String(), `msg="imap folder name"`, "configured=Decrypted server_name="+folder+" "); n != 1 {
			t.Errorf("%d log lines say where Decrypted went, want 1:\n%s", n, logs.String())
		}

		// The server restarts under the running service.
		logins := s.Logins("ceo")
		s.Restart(t)
		waitLines(t, logs, 1, "folder watcher session ended", "account=ceo", "retry_in=")
		more, enc2 := mix(t, 2, 1) // enc-aes256, signed-rsa-sha256
		s.Deliver(t, "ceo", "INBOX", more...)
		waitArchived(t, svc, logs, len(backlog)+2)
		waitServer(t, "the new copy", func() bool { return len(serverCopies(t, s, "ceo", folder)) >= encrypted+enc2 },
			func() string { return fmt.Sprint(serverCopies(t, s, "ceo", folder)) })
		if s.Logins("ceo") <= logins {
			t.Errorf("the server logged no login of ceo after its restart (%d before)", logins)
		}
		checkServerArchivedOnce(t, svc, s, "ceo")
		checkServerCopiesOnce(t, s, folder, encrypted+enc2)
		stop()

		// The INBOX as it was, plus the two new messages.
		after := inboxView(t, s, "ceo")
		if !strings.HasPrefix(after, strings.SplitAfter(before, "\n")[0]) || strings.Count(after, "\n") != strings.Count(before, "\n")+2 {
			t.Errorf("INBOX before the run:\n%s\nafter:\n%s", before, after)
		}
		for _, line := range strings.SplitAfter(before, "\n") {
			if strings.HasSuffix(line, "\n") && !strings.Contains(after, line) {
				t.Errorf("INBOX line %q changed; after:\n%s", strings.TrimSpace(line), after)
			}
		}
		if strings.Contains(logs.String(), "level=ERROR") {
			t.Errorf("ERROR lines in the log:\n%s", logs.String())
		}
	})
}

func checkServerCopiesOnce(t *testing.T, s *servertest.Server, folder string, want int) {
	t.Helper()
	got := serverCopies(t, s, "ceo", folder)
	if len(got) != want {
		t.Errorf("%s holds %d distinct copies, want %d: %v", folder, len(got), want, got)
	}
	for m, n := range got {
		if n != 1 {
			t.Errorf("%s holds the copy of %s %d times", folder, m, n)
		}
	}
}

// TestServersIdleLatency measures, on each server, how long a message
// delivered to a watched INBOX takes to reach the archive while the
// service idles. With the server set to notify at once (Dovecot as it
// comes; Cyrus with idled; Courier with IMAP_ENHANCEDIDLE=1) it must be
// within 2 s (5 s under -race). With Debian's Cyrus and Courier, whose IDLE
// polls every 60 s, liveness_interval = "10s" must bound it to about
// 10 s. Debian's defaults with smimed's (up to a minute per message) are
// measured only with SMIMED_MEASURE=1. Courier's immediate notices come
// through gamin, which was seen to miss one under load: the fast cases
// run with liveness_interval = "10s" as well and allow one message of
// three to take up to two intervals.
func TestServersIdleLatency(t *testing.T) {
	fast := 2 * time.Second
	if raceEnabled() {
		fast = 5 * time.Second
	}
	cases := []struct {
		name    string
		kind    servertest.Kind
		opts    servertest.Options
		daemon  string
		limit   time.Duration
		measure bool // a figure only, with SMIMED_MEASURE=1
	}{
		{"dovecot", servertest.Dovecot, servertest.Options{}, "liveness_interval = \"10s\"\n", fast, false},
		{"cyrus-idled", servertest.Cyrus, servertest.Options{CyrusIdled: true}, "liveness_interval = \"10s\"\n", fast, false},
		{"courier-enhancedidle", servertest.Courier, servertest.Options{CourierEnhancedIdle: true}, "liveness_interval = \"10s\"\n", fast, false},
		{"cyrus-liveness-10s", servertest.Cyrus, servertest.Options{}, "liveness_interval = \"10s\"\n", 10*time.Second + fast, false},
		{"courier-liveness-10s", servertest.Courier, servertest.Options{}, "liveness_interval = \"10s\"\n", 10*time.Second + fast, false},
		{"cyrus-defaults", servertest.Cyrus, servertest.Options{}, "", 0, true},
		{"courier-defaults", servertest.Courier, servertest.Options{}, "", 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.measure && os.Getenv("SMIMED_MEASURE") != "1" {
				t.Skip("a measurement of up to a minute per message; SMIMED_MEASURE=1 runs it")
			}
			t.Parallel()
			e := newServerEnv(t, tc.kind, tc.opts, "ceo")
			e.writeConfig(t, "[daemon]\nworkers = 2\n"+tc.daemon, []string{"org-new"}, e.account("ceo", ""))
			logs := &testenv.LockedBuffer{}
			svc, _ := runService(t, e.cfgPath, logs)
			// A first message gets the watcher past its first listing.
			e.s.Deliver(t, "ceo", "INBOX", numbered(testenv.Testdata(t, "msg", "plain.eml"), 0))
			waitArchived(t, svc, logs, 1)
			msgs, _ := mix(t, 3, 1)
			var took []time.Duration
			slow := 0
			for i, msg := range msgs {
				time.Sleep(300 * time.Millisecond) // idle again
				start := time.Now()
				e.s.Deliver(t, "ceo", "INBOX", msg)
				waitArchived(t, svc, logs, i+2)
				d := time.Since(start)
				took = append(took, d.Round(10*time.Millisecond))
				if tc.limit > 0 && d > tc.limit {
					slow++
					// The one slow message of a fast case waits for the
					// liveness NOOP: one interval, or two when the first
					// NOOP came before gamin let Courier see the file
					// (seen once under CI load: 22.6 s).
					if tc.limit >= 10*time.Second || slow > 1 || d > 2*10*time.Second+fast {
						t.Errorf("message %d archived %v after its delivery, want within %v", i+1, d, tc.limit)
					}
				}
			}
			t.Logf("%s: delivery to archive record: %v", tc.name, took)
			// A server whose IDLE polls is noticed and named once.
			notice := countLines(logs.String(), "level=WARN", "did not announce new mail during IDLE")
			switch {
			case tc.limit >= 10*time.Second && notice != 1:
				t.Errorf("%d log lines say the server's IDLE polls, want 1:\n%s", notice, logs.String())
			case tc.kind != servertest.Courier && tc.limit < 10*time.Second && notice != 0:
				t.Errorf("%d log lines say the server's IDLE polls, want none:\n%s", notice, logs.String())
			}
			checkServerArchivedOnce(t, svc, e.s, "ceo")
		})
	}
}

// TestServersCopyRefusedOnce (issue 10, 4): copies the server refuses
// again and again for the same reason (here archive_folder names the
// user's \Sent folder on Cyrus) are one problem: one ERROR line however
// many messages and retries, shown in status as the archive folder's
// state with the reason; every message is archived all the same. Before,
// each message and each 5-minute retry logged an ERROR line.
func TestServersCopyRefusedOnce(t *testing.T) {
	t.Parallel()
	e := newServerEnv(t, servertest.Cyrus, servertest.Options{}, "ceo")
	e.s.Create(t, "ceo", "INBOX.Sent", `\Sent`)
	msgs := [][]byte{
		numbered(testenv.Testdata(t, "msg", "enc-aes256.eml"), 1),
		numbered(testenv.Testdata(t, "msg", "sign-then-encrypt.eml"), 2),
		numbered(testenv.Testdata(t, "msg", "enc-gcm256.eml"), 3),
	}
	e.s.Deliver(t, "ceo", "INBOX", msgs...)
	e.writeConfig(t, "[daemon]\nworkers = 2", []string{"org-new"}, e.account("ceo", "archive_folder = \"Sent\"\n"))
	logs := &testenv.LockedBuffer{}
	svc, _ := runService(t, e.cfgPath, logs)
	waitArchived(t, svc, logs, len(msgs))
	waitLines(t, logs, len(msgs), "message processed", "copy=\"pending: ")
	for range 2 { // the retries of the pending copies
		svc.WakeCopies()
		time.Sleep(time.Second)
	}
	if n := countLines(logs.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d ERROR lines, want 1:\n%s", n, logs.String())
	}
	if msgs, _ := e.s.Messages(t, "ceo", "INBOX.Sent"); len(msgs) != 0 {
		t.Errorf("INBOX.Sent holds %d messages, want none", len(msgs))
	}
	st, err := svc.Status()
	if err != nil {
		t.Fatal(err)
	}
	var row *admin.FolderStatus
	for i, f := range st.Folders {
		if f.Folder == "Sent" {
			row = &st.Folders[i]
		}
	}
	if row == nil || row.State != admin.FolderCopiesRefused || !strings.Contains(row.LastError, `\Sent`) || row.Connected {
		t.Fatalf("status of ceo/Sent = %+v, want state %s with the reason", row, admin.FolderCopiesRefused)
	}
	if got := row.Describe(time.Now()); got != "copies refused" {
		t.Errorf("Describe() = %q", got)
	}
	if line := svc.metrics.status.line(time.Now()); !strings.Contains(line, "copies refused") {
		t.Errorf("STATUS= line %q does not say copies are refused", line)
	}
}

// TestServersRestartMidBacklog, on each server: the service is stopped
// part-way through a backlog (a mix of plain, signed and encrypted mail)
// and started again, with more mail delivered while it was down; in the
// end every UID the server lists is archived once, and the archive folder
// holds exactly one copy of each encrypted message — as the server counts
// them, read by servertest's own client — and no message was processed
// twice (a stop checkpoints what it finished).
func TestServersRestartMidBacklog(t *testing.T) {
	eachServer(t, func(t *testing.T, e *serverEnv, folder string) {
		s, kind := e.s, e.s.Kind()
		backlog, encrypted := mix(t, 120, 0)
		s.Deliver(t, "ceo", "INBOX", backlog...)
		// Two workers: 64 messages in hand, which a stop finishes, so
		// that it comes in the middle of the 120.
		e.writeConfig(t, "[daemon]\nworkers = 2\nliveness_interval = \"10s\"", []string{"org-new"}, e.account("ceo", "archive_folder = \"Decrypted\"\n"))

		logs := &testenv.LockedBuffer{}
		svc, stop := runService(t, e.cfgPath, logs)
		waitArchived(t, svc, logs, 15)
		stop()
		first := countLines(logs.String(), "message processed")
		if first >= len(backlog) {
			t.Fatalf("the whole backlog (%d) was archived before the stop: not a restart mid-backlog", first)
		}
		more, enc2 := mix(t, 6, len(backlog))
		s.Deliver(t, "ceo", "INBOX", more...)

		logs2 := &testenv.LockedBuffer{}
		svc, _ = runService(t, e.cfgPath, logs2)
		total := len(backlog) + len(more)
		waitArchived(t, svc, logs2, total)
		waitServer(t, "copies in "+folder, func() bool { return len(serverCopies(t, s, "ceo", folder)) >= encrypted+enc2 },
			func() string { return fmt.Sprintf("%v; log:\n%s", serverCopies(t, s, "ceo", folder), logs2.String()) })
		time.Sleep(time.Second) // a duplicate APPEND, if any, has time to land
		checkServerArchivedOnce(t, svc, s, "ceo")
		checkServerCopiesOnce(t, s, folder, encrypted+enc2)
		if got := recordCount(t, svc); got != total {
			t.Errorf("archive holds %d records, want %d", got, total)
		}
		// A stop finishes and checkpoints the messages in hand: the
		// second run starts where the first ended, nothing is read twice.
		second := countLines(logs2.String(), "message processed")
		if first+second != total {
			t.Errorf("%d messages processed before the stop and %d after, want %d in all", first, second, total)
		}
		t.Logf("%s: stopped after %d of %d; after the restart %d processed", kind, first, len(backlog), second)
		for _, l := range []*testenv.LockedBuffer{logs, logs2} {
			if strings.Contains(l.String(), "level=ERROR") {
				t.Errorf("ERROR lines in the log:\n%s", l.String())
			}
		}
	})
}
