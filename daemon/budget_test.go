package daemon

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
)

// TestScenarioConnectionBudget (issue 14): four mailboxes of one master
// user block on Dovecot, each with its INBOX and an archive folder, and
// daemon.max_connections = 3. Two folders get an IDLE, the others are
// polled (status says so); every message is archived and copied, mail
// arriving later in a polled folder too; and Dovecot's own list of
// connections (doveadm who, sampled all along) never shows more than 3.
func TestScenarioConnectionBudget(t *testing.T) {
	t.Parallel()
	e := newSvcEnv(t)
	users := []string{"u1", "u2", "u3", "u4"}
	for _, u := range users {
		e.d.AddUser(t, u, "unknown to smimed")
		e.d.Deliver(t, u, "INBOX", testenv.Testdata(t, "msg", "enc-aes256.eml"))
	}
	e.d.AddMaster(t, "smimed", testenv.Password("smimed"))
	testenv.WritePasswordFile(t, e.dir, "smimed")
	block := "[[accounts]]\nname = \"staff\"\nserver = \"" + e.d.Addr() + "\"\ntls = \"none\"\nusername = \"smimed\"\npassword_file = \"smimed.pass\"\n" +
		"users = [\"u1\", \"u2\", \"u3\", \"u4\"]\nfolders = [\"INBOX\"]\narchive_folder = \"Decrypted\"\n"
	e.writeConfig(t, "[daemon]\nmax_connections = 3\npoll_interval = \"5s\"\n", []string{"org-new"}, block)

	var most atomic.Int32
	done := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			out, err := e.d.DoveadmInput(nil, "who", "-1")
			if err != nil {
				continue
			}
			n := int32(0)
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, "imap") {
					n++
				}
			}
			if n > most.Load() {
				most.Store(n)
			}
		}
	}()
	logs := &testenv.LockedBuffer{}
	svc, stop := runService(t, e.cfgPath, logs)
	defer stop()
	waitArchived(t, svc, logs, 4)
	for _, u := range users {
		waitUntil(t, u+"'s copy", func() bool { return len(copies(t, e.d, u, "Decrypted")) == 1 }, func() string { return logs.String() })
	}
	if n := strings.Count(logs.String(), "folder polled: the server's connection budget"); n != 2 {
		t.Errorf("%d folders polled, want 2 (3 connections: 2 IDLE, 1 for polls and copies)", n)
	}
	polled := ""
	waitUntil(t, "two folders polled in status", func() bool {
		st, err := svc.Status()
		if err != nil {
			return false
		}
		n := 0
		for _, f := range st.Folders {
			if f.State == "polled" {
				n++
				polled = strings.TrimPrefix(f.Account, "staff/")
			}
		}
		return n == 2
	}, func() string { return logs.String() })
	// Mail to a polled mailbox arrives with a poll.
	e.d.Deliver(t, polled, "INBOX", testenv.Testdata(t, "msg", "enc-aes256.eml"))
	waitArchived(t, svc, logs, 5)
	waitUntil(t, polled+"'s second copy", func() bool { return len(copies(t, e.d, polled, "Decrypted")) == 2 }, func() string { return logs.String() })
	close(done)
	sampler.Wait()
	if n := most.Load(); n > 3 || n == 0 {
		t.Errorf("doveadm who saw %d connections at most, want 1 to 3", n)
	}
}

// TestConnBudget: IDLE slots leave the reserve free; Acquire waits for a
// Release, or for its context.
func TestConnBudget(t *testing.T) {
	b := newConnBudget(4) // 2 IDLE, 2 reserved
	if !b.TryIdle() || !b.TryIdle() || b.TryIdle() {
		t.Fatal("want exactly 2 IDLE slots of 4")
	}
	ctx := context.Background()
	if b.Acquire(ctx) != nil || b.Acquire(ctx) != nil {
		t.Fatal("the 2 reserved slots")
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := b.Acquire(short); err == nil {
		t.Fatal("a fifth connection of 4")
	}
	got := make(chan error, 1)
	go func() { got <- b.Acquire(ctx) }()
	b.ReleaseIdle()
	if err := <-got; err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if b.High() != 4 {
		t.Errorf("high = %d, want 4", b.High())
	}
	var nilBudget *connBudget
	if !nilBudget.TryIdle() || nilBudget.Acquire(ctx) != nil {
		t.Error("no budget: everything allowed")
	}
}
