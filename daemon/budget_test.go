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
// daemon.max_connections = 3. One folder gets an IDLE, the others are
// polled (status says so); every message is archived and copied, mail
// arriving later in a polled folder too; and Dovecot's own list of
// connections (doveadm who, sampled all along) never shows more than 3.
func TestScenarioConnectionBudget(t *testing.T) {
	t.Parallel()
	e := newSvcEnv(t)
	users := []string{"u1", "u2", "u3", "u4"}
	e.masterUsers(t, users...)
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
	if n := strings.Count(logs.String(), "folder polled: the server's connection budget"); n != 3 {
		t.Errorf("%d folders polled, want 3 (3 connections: 1 IDLE, 1 for polls and copies, 1 for copies)", n)
	}
	polled := ""
	waitUntil(t, "three folders polled in status", func() bool {
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
		return n == 3
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

// TestConnBudget: IDLE slots leave two free; a poll may not take the last
// slot, which is the copies'; a copy takes a free slot even while polls
// wait; waiters are served in order as far as they may; a waiter gives up
// with its context.
func TestConnBudget(t *testing.T) {
	b := newConnBudget(4) // 2 IDLE, 1 poll, 1 copies only
	if !b.TryIdle() || !b.TryIdle() || b.TryIdle() {
		t.Fatal("want exactly 2 IDLE slots of 4")
	}
	ctx := context.Background()
	if err := b.Acquire(ctx); err != nil {
		t.Fatal("the poll slot")
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := b.Acquire(short); err == nil {
		t.Fatal("a second poll took the copies' slot")
	}
	poll := make(chan error, 1)
	go func() { poll <- b.Acquire(ctx) }()
	for !b.Contended() {
		time.Sleep(time.Millisecond)
	}
	// A poll waits; the copies' slot is free: a copy takes it at once.
	copyCtx, cancelCopy := context.WithTimeout(ctx, 5*time.Second)
	defer cancelCopy()
	if err := b.AcquireCopy(copyCtx); err != nil {
		t.Fatalf("a copy while a poll waits: %v", err)
	}
	// All 4 in use; a copy giving its slot back would not help the poll.
	if b.Contended() {
		t.Error("contended for a copy's slot no poll may use")
	}
	b.Release() // the copy's: 3 in use, still not the poll's
	select {
	case <-poll:
		t.Fatal("a poll took the copies' slot")
	case <-time.After(50 * time.Millisecond):
	}
	b.ReleaseIdle() // 2 in use: the poll may
	if err := <-poll; err != nil {
		t.Fatalf("the poll after a release: %v", err)
	}
	if b.High() != 4 {
		t.Errorf("high = %d, want 4", b.High())
	}
	var nilBudget *connBudget
	if !nilBudget.TryIdle() || nilBudget.Acquire(ctx) != nil {
		t.Error("no budget: everything allowed")
	}
}
