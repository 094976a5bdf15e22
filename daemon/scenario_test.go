package daemon

// The scenarios of `smimed run` against a private Dovecot, at the level of
// the whole service (configuration file, NewService, Run, the real archive
// sink). Each asserts against what Dovecot itself reports (doveadm), not
// against what the service says it did.

import (
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/testenv"
)

// raceEnabled reports whether the test binary was built with -race, which
// makes everything several times slower.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// waitUntil polls cond until it holds, or fails t after 60 s with what
// describe says about the state then.
func waitUntil(t *testing.T, what string, cond func() bool, describe func() string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 60 s; %s", what, describe())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// byUID lists the archive's current records of account and folder by UID;
// more than one record for a UID is a duplicate.
func byUID(t *testing.T, arch *archive.Archive, account, folder string) map[uint32][]*archive.Record {
	t.Helper()
	out := map[uint32][]*archive.Record{}
	err := arch.List(archive.Query{Account: account}, func(r *archive.Record) error {
		if r.Folder == folder {
			out[r.UID] = append(out[r.UID], r)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("archive List = %v", err)
	}
	return out
}

// checkArchivedOnce compares the archive with Dovecot: every UID doveadm
// lists in the user's INBOX has exactly one record, under the folder's
// current UIDVALIDITY, with the Message-ID Dovecot has for that UID, and
// there is no record of a UID Dovecot does not list. It also checks the
// folder's checkpoint is the highest UID.
func checkArchivedOnce(t *testing.T, svc *Service, d *testenv.Dovecot, user string) {
	t.Helper()
	uids := d.UIDs(t, user, "INBOX")
	uv := d.UIDValidity(t, user, "INBOX")
	ids := serverMessageIDs(t, d, user)
	got := byUID(t, svc.arch, user, "INBOX")
	for _, uid := range uids {
		recs := got[uid]
		if len(recs) != 1 {
			t.Errorf("UID %d: %d archive records, want 1", uid, len(recs))
			continue
		}
		if r := recs[0]; r.MessageID != ids[uid] || r.UIDValidity != uv {
			t.Errorf("UID %d archived as %s under UIDVALIDITY %d, Dovecot has %s under %d", uid, r.MessageID, r.UIDValidity, ids[uid], uv)
		}
	}
	for uid := range got {
		if _, ok := ids[uid]; !ok {
			t.Errorf("UID %d archived, but Dovecot has no such message", uid)
		}
	}
	if len(uids) == 0 {
		return
	}
	want := Checkpoint{UIDValidity: uv, UID: uids[len(uids)-1]}
	// The record is durable before the checkpoint passes it.
	waitUntil(t, "checkpoint at the highest UID", func() bool {
		cp, ok, err := svc.cps.Get(user, "INBOX")
		return err == nil && ok && cp == want
	}, func() string {
		cp, ok, err := svc.cps.Get(user, "INBOX")
		return fmt.Sprintf("checkpoint %+v %v %v, want %+v", cp, ok, err, want)
	})
}

// serverMessageIDs is Dovecot's Message-ID of every message in user's
// INBOX, by UID.
func serverMessageIDs(t *testing.T, d *testenv.Dovecot, user string) map[uint32]string {
	t.Helper()
	out := map[uint32]string{}
	lines := strings.Split(strings.TrimSpace(d.Doveadm(t, "-f", "tab", "fetch", "-u", user, "uid hdr.message-id", "mailbox", "INBOX", "all")), "\n")
	for _, line := range lines[1:] { // a header line first
		uid, id, _ := strings.Cut(line, "\t")
		n, err := strconv.ParseUint(uid, 10, 32)
		if err != nil {
			t.Fatalf("doveadm fetch uid hdr.message-id: line %q", line)
		}
		out[uint32(n)] = strings.TrimSpace(id)
	}
	return out
}

// copies counts the messages in user's folder by their X-Smimed-Source,
// as Dovecot has them.
func copies(t *testing.T, d *testenv.Dovecot, user, folder string) map[string]int {
	t.Helper()
	out := map[string]int{}
	hdrs, err := d.DoveadmInput(nil, "fetch", "-u", user, "hdr", "mailbox", folder, "all")
	if err != nil {
		return out // no such folder yet
	}
	for l := range strings.SplitSeq(hdrs, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "X-Smimed-Source: "); ok {
			out[v]++
		}
	}
	return out
}

func numbered(msg []byte, n int) []byte { return testenv.Numbered(msg, n) }

// mixFixtures are fixtures the service reads in different ways; the bool
// says whether the message is encrypted to a key of ours, so the account's
// archive_folder gets a copy.
var mixFixtures = []struct {
	file      string
	encrypted bool
}{
	{"plain.eml", false}, {"enc-aes256.eml", true}, {"signed-rsa-sha256.eml", false},
	{"sign-then-encrypt.eml", true}, {"signed-ec256.eml", false}, {"enc-nokey.eml", false},
	{"enc-gcm256.eml", true}, {"signed-tampered.eml", false},
}

// mix returns n numbered messages taken from mixFixtures in turn, and how
// many of them are encrypted to our key.
func mix(t *testing.T, n, first int) (msgs [][]byte, encrypted int) {
	t.Helper()
	for i := range n {
		f := mixFixtures[(first+i)%len(mixFixtures)]
		msgs = append(msgs, numbered(testenv.Testdata(t, "msg", f.file), first+i))
		if f.encrypted {
			encrypted++
		}
	}
	return msgs, encrypted
}

// checkCopiesOnce asserts that user's folder holds exactly want copies,
// each with its own X-Smimed-Source.
func checkCopiesOnce(t *testing.T, d *testenv.Dovecot, user, folder string, want int) {
	t.Helper()
	got := copies(t, d, user, folder)
	if len(got) != want {
		t.Errorf("%s holds %d distinct copies, want %d: %v", folder, len(got), want, got)
	}
	for m, n := range got {
		if n != 1 {
			t.Errorf("%s holds the copy of %s %d times", folder, m, n)
		}
	}
}

func recordCount(t *testing.T, svc *Service) int {
	t.Helper()
	n, err := svc.arch.Count()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitArchived waits until the archive holds n records.
func waitArchived(t *testing.T, svc *Service, logs *testenv.LockedBuffer, n int) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("%d records archived", n), func() bool { return recordCount(t, svc) >= n },
		func() string { return fmt.Sprintf("%d records; log:\n%s", recordCount(t, svc), logs.String()) })
}

// TestScenarioBacklog: 1,000 messages already in the INBOX at the first
// start are each archived exactly once (compared with doveadm's UIDs and
// Message-IDs), and the checkpoint ends at the highest UID. It takes about
// 8 s under -race, so it runs without -short too.
func TestScenarioBacklog(t *testing.T) {
	t.Parallel()
	const n = 1000
	e := newSvcEnv(t, "ceo")
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = fmt.Appendf(nil, "From: alice@partner.example\r\nTo: ceo@org.example\r\nSubject: backlog %d\r\nMessage-ID: <backlog-%d@test.smimed.example>\r\n\r\nmessage %d of the backlog\r\n", i, i, i)
	}
	e.d.DeliverMaildir(t, "ceo", msgs)
	if uids := e.d.UIDs(t, "ceo", "INBOX"); len(uids) != n {
		t.Fatalf("setup: Dovecot lists %d messages, want %d", len(uids), n)
	}
	e.writeConfig(t, "[daemon]\nworkers = 4", []string{"org-new"}, e.account("ceo"))
	logs := &testenv.LockedBuffer{}
	start := time.Now()
	svc, _ := runService(t, e.cfgPath, logs)
	waitArchived(t, svc, logs, n)
	t.Logf("%d messages archived in %v", n, time.Since(start))
	checkArchivedOnce(t, svc, e.d, "ceo")
	if got := recordCount(t, svc); got != n {
		t.Errorf("archive holds %d records, want %d", got, n)
	}
}

// TestScenarioDovecotRestart: Dovecot is stopped and started again on the
// same port while the service runs; the service reconnects by itself and
// mail delivered after the restart is archived, nothing twice.
func TestScenarioDovecotRestart(t *testing.T) {
	t.Parallel()
	e := newSvcEnv(t, "ceo")
	e.writeConfig(t, "[daemon]\nworkers = 2", []string{"org-new"}, e.account("ceo")+"archive_folder = \"Decrypted\"\n")
	msgs, encrypted := mix(t, 4, 0)
	e.d.Deliver(t, "ceo", "INBOX", msgs[0])
	e.d.Deliver(t, "ceo", "INBOX", msgs[1])
	logs := &testenv.LockedBuffer{}
	svc, _ := runService(t, e.cfgPath, logs)
	waitArchived(t, svc, logs, 2)
	waitUntil(t, "the first copy in Decrypted", func() bool { return len(copies(t, e.d, "ceo", "Decrypted")) == 1 },
		func() string { return fmt.Sprint(copies(t, e.d, "ceo", "Decrypted")) })
	before := logins(e, "ceo")

	e.d.Restart(t)
	waitLines(t, logs, 1, "folder watcher session ended", "account=ceo", "retry_in=")
	e.d.Deliver(t, "ceo", "INBOX", msgs[2])
	e.d.Deliver(t, "ceo", "INBOX", msgs[3])
	waitArchived(t, svc, logs, 4)
	waitUntil(t, "copies in Decrypted", func() bool { return len(copies(t, e.d, "ceo", "Decrypted")) >= encrypted },
		func() string { return fmt.Sprint(copies(t, e.d, "ceo", "Decrypted")) })

	if after := logins(e, "ceo"); after <= before {
		t.Errorf("Dovecot logged %d logins of ceo after the restart, %d before: the service did not reconnect", after, before)
	}
	checkArchivedOnce(t, svc, e.d, "ceo")
	checkCopiesOnce(t, e.d, "ceo", "Decrypted", encrypted)
}

// TestScenarioConnectionCut: every connection between the service and
// Dovecot is cut by a proxy, twice during a backlog (fetches and APPENDs
// in flight) and once while idle; the service reconnects each time, and
// in the end every message is archived exactly once and every encrypted
// one has exactly one copy.
func TestScenarioConnectionCut(t *testing.T) {
	t.Parallel()
	e := newSvcEnv(t, "ceo")
	proxy := testenv.StartProxy(t, e.d.Addr())
	acct := strings.Replace(e.account("ceo"), e.d.Addr(), proxy.Addr(), 1)
	// Two workers (64 in hand): the backlog of 120 is still being fetched
	// when the cuts come.
	e.writeConfig(t, "[daemon]\nworkers = 2", []string{"org-new"}, acct+"archive_folder = \"Decrypted\"\n")
	const backlog = 120
	msgs, encrypted := mix(t, backlog, 0)
	e.d.DeliverMaildir(t, "ceo", msgs)
	logs := &testenv.LockedBuffer{}
	svc, _ := runService(t, e.cfgPath, logs)

	cut := func(when string) {
		t.Helper()
		// The service may be between connections (its backoff after
		// the last cut): wait a little for one.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if n := proxy.Cut(); n > 0 {
				t.Logf("cut %s: %d connections, %d records", when, n, recordCount(t, svc))
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("cut %s: no connection to cut for 5s", when)
				return
			}
		}
	}
	waitArchived(t, svc, logs, 20)
	cut("early in the backlog")
	waitArchived(t, svc, logs, 70)
	cut("later in the backlog")
	waitArchived(t, svc, logs, backlog)

	// Idle: the cut is noticed, the connection made again, and new mail
	// arrives through it.
	waitUntil(t, "the watcher back in IDLE", func() bool { return proxy.Accepted() > 2 }, func() string { return "" })
	time.Sleep(500 * time.Millisecond)
	accepted := proxy.Accepted()
	cut("while idle")
	more, enc2 := mix(t, 3, backlog)
	encrypted += enc2
	for _, m := range more {
		e.d.Deliver(t, "ceo", "INBOX", m)
	}
	waitArchived(t, svc, logs, backlog+3)
	waitUntil(t, "copies in Decrypted", func() bool { return len(copies(t, e.d, "ceo", "Decrypted")) >= encrypted },
		func() string { return fmt.Sprint(len(copies(t, e.d, "ceo", "Decrypted"))) })
	if proxy.Accepted() <= accepted {
		t.Errorf("no new connection after the cut while idle (%d accepted before, %d after)", accepted, proxy.Accepted())
	}
	checkArchivedOnce(t, svc, e.d, "ceo")
	if got := recordCount(t, svc); got != backlog+3 {
		t.Errorf("archive holds %d records, want %d", got, backlog+3)
	}
	checkCopiesOnce(t, e.d, "ceo", "Decrypted", encrypted)
}

// TestScenarioWrongPassword: one account's password is wrong. Its refusal
// is logged once, clearly, naming the account; the other account's mail,
// old and new, is archived all the same.
func TestScenarioWrongPassword(t *testing.T) {
	t.Parallel()
	e := newSvcEnv(t, "good", "bad")
	e.d.AddUser(t, "bad", "changed-on-the-server")
	e.writeConfig(t, "[daemon]\nworkers = 2", []string{"org-new"}, e.account("good"), e.account("bad"))
	msgs, _ := mix(t, 4, 0)
	e.d.Deliver(t, "good", "INBOX", msgs[0])
	e.d.Deliver(t, "good", "INBOX", msgs[1])
	e.d.Deliver(t, "bad", "INBOX", msgs[2])
	logs := &testenv.LockedBuffer{}
	svc, _ := runService(t, e.cfgPath, logs)
	waitArchived(t, svc, logs, 2)
	waitLines(t, logs, 1, "login refused", "account=bad")
	e.d.Deliver(t, "good", "INBOX", msgs[3])
	waitArchived(t, svc, logs, 3)

	checkArchivedOnce(t, svc, e.d, "good")
	if got := byUID(t, svc.arch, "bad", "INBOX"); len(got) != 0 {
		t.Errorf("account bad has %d archived messages, want none", len(got))
	}
	out := logs.String()
	if n := countLines(out, "login refused", "account=bad"); n != 1 {
		t.Errorf("%d log lines say bad's login was refused, want 1:\n%s", n, out)
	}
	if n := countLines(out, "login refused", "account=good"); n != 0 {
		t.Errorf("good's login reported refused:\n%s", out)
	}
	if strings.Contains(out, "pw-bad") {
		t.Error("the log holds the password")
	}
	// Dovecot's own view: it refused bad and let good in.
	if dovecotCount(e, `auth failed.*user=<bad>`) == 0 {
		t.Errorf("Dovecot's log shows no refused login of bad:\n%s", e.d.Log())
	}
	if logins(e, "bad") != 0 || logins(e, "good") == 0 {
		t.Errorf("Dovecot logged %d logins of bad, %d of good", logins(e, "bad"), logins(e, "good"))
	}
}

// TestScenarioUIDValidityChange: the INBOX's UIDVALIDITY is changed on the
// server while the service runs. The change is logged as a warning, the
// folder read again, and neither the archive nor the Decrypted folder gets
// a second record or copy of a message already done; mail arriving later
// is archived under the new UIDVALIDITY.
func TestScenarioUIDValidityChange(t *testing.T) {
	t.Parallel()
	e := newSvcEnv(t, "ceo")
	e.writeConfig(t, "[daemon]\nworkers = 2", []string{"org-new"}, e.account("ceo")+"archive_folder = \"Decrypted\"\n")
	msgs, _ := mix(t, 4, 0)
	for _, m := range msgs {
		e.d.Deliver(t, "ceo", "INBOX", m)
	}
	encrypted := 2 // enc-aes256 and sign-then-encrypt
	logs := &testenv.LockedBuffer{}
	svc, _ := runService(t, e.cfgPath, logs)
	waitArchived(t, svc, logs, 4)
	waitUntil(t, "copies in Decrypted", func() bool { return len(copies(t, e.d, "ceo", "Decrypted")) >= encrypted },
		func() string { return fmt.Sprint(copies(t, e.d, "ceo", "Decrypted")) })
	waitLines(t, logs, 4, "message processed", "account=ceo")

	old := e.d.UIDValidity(t, "ceo", "INBOX")
	e.d.Doveadm(t, "mailbox", "update", "-u", "ceo", "--uid-validity", strconv.FormatUint(uint64(old)+1000, 10), "INBOX")
	if now := e.d.UIDValidity(t, "ceo", "INBOX"); now != old+1000 {
		t.Fatalf("setup: UIDVALIDITY %d after the update, want %d", now, old+1000)
	}
	// Dovecot notices at the next sync of the folder, here a new
	// message, and then ends the session ("IMAP session state is
	// inconsistent").
	more, enc2 := mix(t, 1, 6) // enc-gcm256
	encrypted += enc2
	e.d.Deliver(t, "ceo", "INBOX", more[0])
	waitLines(t, logs, 1, "level=WARN", "UIDVALIDITY changed", "account=ceo")
	// Read again: each message is recognised as archived.
	waitLines(t, logs, 4, "message processed", "again=true")
	waitArchived(t, svc, logs, 5)
	waitUntil(t, "the new message's copy", func() bool { return len(copies(t, e.d, "ceo", "Decrypted")) >= encrypted },
		func() string { return fmt.Sprint(copies(t, e.d, "ceo", "Decrypted")) })

	if got := recordCount(t, svc); got != 5 {
		t.Errorf("archive holds %d records, want 5 (4 from before the change, 1 new)", got)
	}
	checkCopiesOnce(t, e.d, "ceo", "Decrypted", encrypted)
	got := byUID(t, svc.arch, "ceo", "INBOX")
	ids := serverMessageIDs(t, e.d, "ceo")
	uids := e.d.UIDs(t, "ceo", "INBOX")
	for i, uid := range uids {
		wantUV := old
		if i == len(uids)-1 {
			wantUV = old + 1000
		}
		if len(got[uid]) != 1 || got[uid][0].MessageID != ids[uid] || got[uid][0].UIDValidity != wantUV {
			t.Errorf("UID %d: records %+v, want one of %s under UIDVALIDITY %d", uid, got[uid], ids[uid], wantUV)
		}
	}
	want := Checkpoint{UIDValidity: old + 1000, UID: uids[len(uids)-1]}
	waitUntil(t, "checkpoint under the new UIDVALIDITY", func() bool {
		cp, ok, err := svc.cps.Get("ceo", "INBOX")
		return err == nil && ok && cp == want
	}, func() string {
		cp, _, _ := svc.cps.Get("ceo", "INBOX")
		return fmt.Sprintf("checkpoint %+v, want %+v", cp, want)
	})
}

// TestScenarioFolderUntouched: the watched INBOX holds the same messages
// with the same flags, and the same highest modification sequence, after
// the service has read every message in it, some \Seen or \Flagged
// beforehand, and copied the encrypted ones elsewhere.
func TestScenarioFolderUntouched(t *testing.T) {
	t.Parallel()
	e := newSvcEnv(t, "ceo")
	e.writeConfig(t, "[daemon]\nworkers = 2", []string{"org-new"}, e.account("ceo")+"archive_folder = \"Decrypted\"\n")
	msgs, encrypted := mix(t, len(mixFixtures), 0)
	for _, m := range msgs {
		e.d.Deliver(t, "ceo", "INBOX", m)
	}
	flag := func(f string, uids ...string) {
		e.d.Doveadm(t, "flags", "add", "-u", "ceo", f, "mailbox", "INBOX", "uid", strings.Join(uids, ","))
	}
	flag(`\Seen`, "1", "2", "5")
	flag(`\Flagged`, "2", "3")
	flag(`\Answered`, "8")
	view := func() string {
		return e.d.Doveadm(t, "-f", "tab", "fetch", "-u", "ceo", "uid guid flags", "mailbox", "INBOX", "all") +
			e.d.Doveadm(t, "mailbox", "status", "-u", "ceo", "messages unseen highestmodseq", "INBOX")
	}
	before := view()
	if strings.Count(before, `\Seen`) != 3 || strings.Count(before, `\Flagged`) != 2 {
		t.Fatalf("setup: INBOX as Dovecot has it:\n%s", before)
	}

	logs := &testenv.LockedBuffer{}
	svc, stop := runService(t, e.cfgPath, logs)
	waitArchived(t, svc, logs, len(msgs))
	waitUntil(t, "copies in Decrypted", func() bool { return len(copies(t, e.d, "ceo", "Decrypted")) >= encrypted },
		func() string { return fmt.Sprint(copies(t, e.d, "ceo", "Decrypted")) })
	checkArchivedOnce(t, svc, e.d, "ceo")
	stop()

	if after := view(); after != before {
		t.Errorf("INBOX before the run:\n%s\nafter:\n%s", before, after)
	}
}
