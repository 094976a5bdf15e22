package main

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/imapwatch/dovecottest"
	"github.com/smimed/smimed/harvest"
)

// TestKill9ExactlyOnce kills `smimed run` with SIGKILL at random moments
// while mail arrives, restarts it each time, and then checks with Dovecot
// and the store that every message is archived exactly once and the user's
// archive folder holds exactly one copy of each encrypted message.
func TestKill9ExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the kill -9 test runs the binary for several seconds")
	}
	d := dovecottest.Start(t)
	d.AddUser(t, "ceo", "pw-ceo")
	cfg := writeAccountConfig(t, "[daemon]\nworkers = 4\n", d.Addr(), `archive_folder = "Decrypted"`)
	bin := buildBinary(t)

	kinds := []struct {
		file      string
		encrypted bool
	}{
		{"enc-aes256.eml", true}, {"plain.eml", false}, {"sign-then-encrypt.eml", true},
		{"signed-rsa-sha256.eml", false}, {"enc-gcm256.eml", true}, {"enc-nokey.eml", false},
	}
	var msgs [][]byte
	for _, k := range kinds {
		b, err := os.ReadFile(filepath.Join(fixtures, "msg", k.file))
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, b)
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
	var logs lockedBuf
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
		n := len(strings.Fields(d.Doveadm(t, "-f", "flow", "search", "-u", "ceo", "mailbox", "Decrypted", "all"))) / 2
		if l := len(logs.String()); l != lastLen {
			quietSince, lastLen = time.Now(), l
		}
		if n >= encrypted && time.Since(quietSince) > 2*time.Second {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s Decrypted holds %d copies, want %d\n%s", n, encrypted, logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("last run: %v", err)
	}

	// The watched folder is untouched.
	if st := d.Doveadm(t, "mailbox", "status", "-u", "ceo", "messages unseen", "INBOX"); !strings.Contains(st, "unseen="+strconv.Itoa(delivered)) {
		t.Errorf("INBOX status %q, want %d unseen", st, delivered)
	}
	// One copy per encrypted message: distinct markers, as many as sent.
	hdrs := d.Doveadm(t, "fetch", "-u", "ceo", "hdr", "mailbox", "Decrypted", "all")
	markers := map[string]int{}
	for _, l := range strings.Split(hdrs, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "X-Smimed-Source: "); ok {
			markers[v]++
		}
	}
	if len(markers) != encrypted {
		t.Errorf("Decrypted has %d distinct copies, want %d", len(markers), encrypted)
	}
	for m, n := range markers {
		if n != 1 {
			t.Errorf("copy %s is there %d times", m, n)
		}
	}

	// The archive: every UID once, one version each, chain intact.
	st, err := harvest.OpenStore(filepath.Join(filepath.Dir(cfg), "state", "smimed.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	arch, err := archive.Open(filepath.Join(filepath.Dir(cfg), "state", "archive"), st.DB())
	if err != nil {
		t.Fatal(err)
	}
	uids := map[uint32]int{}
	arch.List(archive.Query{}, func(r *archive.Record) error { uids[r.UID]++; return nil })
	if len(uids) != delivered {
		t.Errorf("archive holds %d messages, want %d", len(uids), delivered)
	}
	for u := uint32(1); u <= uint32(delivered); u++ {
		if uids[u] != 1 {
			t.Errorf("UID %d archived %d times", u, uids[u])
		}
	}
	if n, _ := arch.Count(); n != delivered {
		t.Errorf("archive has %d records, want %d (one per message)", n, delivered)
	}
	if res, err := arch.Verify(nil); err != nil || !res.OK() {
		t.Errorf("archive verify after kill -9: %+v %v", res, err)
	}
	// How often a kill hit between archive and checkpoint, and between
	// APPEND and recording it: the cases this test is about.
	out := logs.String()
	t.Logf("%d messages, %d encrypted, 8 kills; %d processed again after a kill, %d copies found already appended",
		delivered, encrypted, strings.Count(out, "again=true"), strings.Count(out, "user copy already in the archive folder"))
}
