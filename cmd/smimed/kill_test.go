package main

import (
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/imapconn/servertest"
	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest/state"
)

// onEveryServer runs kill(t, the smimed binary, kind) on each kind of
// server, in parallel; not with -short.
func onEveryServer(t *testing.T, kill func(*testing.T, string, servertest.Kind)) {
	if testing.Short() {
		t.Skip("-short: the kill -9 tests run the binary for several seconds")
	}
	bin := buildBinary(t)
	for _, kind := range servertest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			kill(t, bin, kind)
		})
	}
}

// TestKill9ExactlyOnce kills `smimed run` with SIGKILL at random moments
// while mail arrives, restarts it each time, and then checks with the
// server (Dovecot, Cyrus and Courier, each with Debian's defaults, read by
// servertest's own client) and the store that every message is archived
// exactly once and the user's archive folder holds exactly one copy of
// each encrypted message.
func TestKill9ExactlyOnce(t *testing.T) { onEveryServer(t, kill9ExactlyOnce) }

func kill9ExactlyOnce(t *testing.T, bin string, kind servertest.Kind) {
	d := servertest.Start(t, kind, servertest.Options{Users: map[string]string{"ceo": "pw-ceo"}})
	// Where the server places the relative archive_folder (its NAMESPACE,
	// read by hand: Debian's Cyrus and Courier keep folders under INBOX.).
	folder := map[servertest.Kind]string{servertest.Dovecot: "Decrypted", servertest.Cyrus: "INBOX.Decrypted", servertest.Courier: "INBOX.Decrypted"}[kind]
	cfg := writeAccountConfig(t, "[daemon]\nworkers = 4\n", d.Addr(), fmt.Sprintf("auth = %q\narchive_folder = \"Decrypted\"", d.Auth()))

	kinds := []struct {
		file      string
		encrypted bool
	}{
		{"enc-aes256.eml", true}, {"plain.eml", false}, {"sign-then-encrypt.eml", true},
		{"signed-rsa-sha256.eml", false}, {"enc-gcm256.eml", true}, {"enc-nokey.eml", false},
	}
	var msgs [][]byte
	for _, k := range kinds {
		msgs = append(msgs, testenv.Testdata(t, "msg", k.file))
	}
	delivered, encrypted := 0, 0
	deliver := func(n int) {
		for range n {
			i := delivered % len(kinds)
			d.Deliver(t, "ceo", "INBOX", msgs[i])
			delivered++
			if kinds[i].encrypted {
				encrypted++
			}
		}
	}

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	deliver(12)
	var logs testenv.LockedBuffer
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "run", "--config", cfg)
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	for round := range 8 {
		cmd := start()
		if round%2 == 1 {
			deliver(3)
		}
		time.Sleep(time.Duration(50+rng.IntN(450)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
	deliver(6)

	// The last run: until every copy is there and the log has gone quiet.
	cmd := start()
	defer cmd.Process.Kill()
	deadline := time.Now().Add(60 * time.Second)
	quietSince, lastLen := time.Now(), 0
	for {
		copies, _ := d.Messages(t, "ceo", folder)
		n := len(copies)
		if l := len(logs.String()); l != lastLen {
			quietSince, lastLen = time.Now(), l
		}
		if n >= encrypted && time.Since(quietSince) > 2*time.Second {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s %s holds %d copies, want %d\n%s", folder, n, encrypted, logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("last run: %v", err)
	}
	checkExactlyOnce(t, d, cfg, folder, delivered, encrypted)
	// How often a kill hit between archive and checkpoint, and between
	// APPEND and recording it: the cases this test is about.
	out := logs.String()
	t.Logf("%s: %d messages, %d encrypted, 8 kills; %d processed again after a kill, %d copies found already appended",
		kind, delivered, encrypted, strings.Count(out, "again=true"), strings.Count(out, "user copy already in the archive folder"))
}

// checkExactlyOnce checks, after the last run ended, that the watched
// folder is untouched, that the archive folder holds one copy of each of
// the encrypted messages and that the archive holds each of the delivered
// messages once, its chain intact.
func checkExactlyOnce(t *testing.T, d *servertest.Server, cfg, folder string, delivered, encrypted int) {
	t.Helper()
	// The watched folder is untouched: every message still there, none seen.
	inbox, _ := d.Messages(t, "ceo", "INBOX")
	if len(inbox) != delivered {
		t.Errorf("INBOX holds %d messages, want %d", len(inbox), delivered)
	}
	for _, m := range inbox {
		if strings.Contains(m.Flags, `\Seen`) {
			t.Errorf("INBOX UID %d has flags %s after the runs", m.UID, m.Flags)
		}
	}
	// One copy per encrypted message: distinct markers, as many as sent.
	copies, _ := d.Messages(t, "ceo", folder, "X-Smimed-Source")
	markers := map[string]int{}
	for _, m := range copies {
		markers[m.Fields["x-smimed-source"]]++
	}
	if len(markers) != encrypted {
		t.Errorf("%s has %d distinct copies, want %d", folder, len(markers), encrypted)
	}
	for m, n := range markers {
		if n != 1 {
			t.Errorf("copy %s is there %d times", m, n)
		}
	}

	// The archive: every UID once, one version each, chain intact.
	db, err := state.Open(filepath.Join(filepath.Dir(cfg), "state", "smimed.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	arch, err := archive.Open(filepath.Join(filepath.Dir(cfg), "state", "archive"), db)
	if err != nil {
		t.Fatal(err)
	}
	uids := map[uint32]int{}
	arch.List(archive.Query{}, func(r *archive.Record) error { uids[r.UID]++; return nil })
	if len(uids) != delivered {
		t.Errorf("archive holds %d messages, want %d", len(uids), delivered)
	}
	for _, m := range inbox {
		if uids[m.UID] != 1 {
			t.Errorf("UID %d archived %d times", m.UID, uids[m.UID])
		}
	}
	if n, _ := arch.Count(); n != delivered {
		t.Errorf("archive has %d records, want %d (one per message)", n, delivered)
	}
	if res, err := arch.Verify(nil); err != nil || !res.OK() {
		t.Errorf("archive verify after kill -9: %+v %v", res, err)
	}
}

// TestKill9DuringGroupCommit kills `smimed run` while it works off a
// backlog, where many messages are in hand at once and their files,
// records and copies' states are committed together (group commit): each
// kill comes after a random number of messages were logged as processed,
// so it lands amid the commits of the ones still in hand. After a last run
// every message must be archived once and copied once (issue 12).
func TestKill9DuringGroupCommit(t *testing.T) { onEveryServer(t, kill9DuringGroupCommit) }

func kill9DuringGroupCommit(t *testing.T, bin string, kind servertest.Kind) {
	d := servertest.Start(t, kind, servertest.Options{Users: map[string]string{"ceo": "pw-ceo"}})
	folder := map[servertest.Kind]string{servertest.Dovecot: "Decrypted", servertest.Cyrus: "INBOX.Decrypted", servertest.Courier: "INBOX.Decrypted"}[kind]
	cfg := writeAccountConfig(t, "[daemon]\nworkers = 4\n", d.Addr(), fmt.Sprintf("auth = %q\narchive_folder = \"Decrypted\"\narchive_folder_messages = \"all\"", d.Auth()))
	files := []string{"enc-aes256.eml", "plain.eml", "sign-then-encrypt.eml", "signed-rsa-sha256.eml", "enc-gcm256.eml"}
	const n = 150
	var msgs [][]byte
	for i := range n {
		msgs = append(msgs, testenv.Numbered(testenv.Testdata(t, "msg", files[i%len(files)]), i))
	}
	d.Deliver(t, "ceo", "INBOX", msgs...)

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	var logs testenv.LockedBuffer
	kills := 0
	for round := range 6 {
		before := strings.Count(logs.String(), "message processed")
		cmd := exec.Command(bin, "run", "--config", cfg)
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill once 1 to 15 more messages were processed: the others in
		// hand are between their files and their commit.
		want := before + 1 + rng.IntN(15)
		deadline := time.Now().Add(30 * time.Second)
		for strings.Count(logs.String(), "message processed") < want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if got := strings.Count(logs.String(), "message processed"); got < n {
			kills++
		}
		t.Logf("round %d: %d messages processed (lines, with repeats) when killed", round, strings.Count(logs.String(), "message processed"))
	}
	if kills == 0 {
		t.Fatalf("no kill came before the backlog was worked off; the test did not test anything:\n%s", logs.String())
	}

	cmd := exec.Command(bin, "run", "--config", cfg)
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(120 * time.Second)
	for {
		copies, _ := d.Messages(t, "ceo", folder)
		if len(copies) >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 120 s %s holds %d copies, want %d\n%s", folder, len(copies), n, logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // a late duplicate would show
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("last run: %v", err)
	}
	checkExactlyOnce(t, d, cfg, folder, n, n)
	out := logs.String()
	t.Logf("%s: %d messages, %d kills amid the backlog; %d processed again after a kill, %d copies found already appended",
		kind, n, kills, strings.Count(out, "again=true"), strings.Count(out, "user copy already in the archive folder"))
}
