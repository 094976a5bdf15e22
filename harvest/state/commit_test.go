package state

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// groupRun makes n Commit calls queue behind one that holds its
// transaction, then lets them go. fail(i) says whether call i's fn
// fails. It returns each call's result and the transactions its fn ran
// in (the *bbolt.Tx it got; kept, so no address is reused).
func groupRun(t *testing.T, d *DB, n int, fail func(i int) bool) ([]error, map[int][]*bbolt.Tx) {
	t.Helper()
	release, started := make(chan struct{}), make(chan struct{})
	var first sync.WaitGroup
	first.Go(func() {
		err := d.Commit(func(tx *bbolt.Tx) error {
			close(started)
			<-release
			return tx.Bucket([]byte("b")).Put([]byte("first"), []byte("1"))
		})
		if err != nil {
			t.Errorf("first Commit = %v", err)
		}
	})
	<-started
	var mu sync.Mutex
	txOf := map[int][]*bbolt.Tx{}
	results := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			results[i] = d.Commit(func(tx *bbolt.Tx) error {
				mu.Lock()
				txOf[i] = append(txOf[i], tx)
				mu.Unlock()
				if fail(i) {
					return errBad
				}
				return tx.Bucket([]byte("b")).Put(fmt.Appendf(nil, "k%02d", i), []byte("v"))
			})
		})
	}
	for { // until all are queued behind the first
		d.group.mu.Lock()
		queued := len(d.group.queue)
		d.group.mu.Unlock()
		if queued == n {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	first.Wait()
	wg.Wait()
	return results, txOf
}

var errBad = errors.New("bad call")

// TestCommitGroups: calls that arrive while a transaction is being
// committed all share the next one (the *bbolt.Tx their fns get says so),
// and each of their writes is there afterwards.
func TestCommitGroups(t *testing.T) {
	path := filepath.Join(t.TempDir(), "smimed.db")
	d := mustOpen(t, path, false, []Bucket{{Name: "b", Version: 1}})
	const n = 20
	results, txOf := groupRun(t, d, n, func(int) bool { return false })
	for i := range n {
		if results[i] != nil || len(txOf[i]) != 1 || txOf[i][0] != txOf[0][0] {
			t.Errorf("call %d = %v, ran in %d transactions (the shared one: %v); want nil, once, in the one all share",
				i, results[i], len(txOf[i]), len(txOf[i]) > 0 && txOf[i][0] == txOf[0][0])
		}
	}
	d.Close()
	got := dump(t, path)
	for i := range n {
		if want := fmt.Sprintf("b/k%02d=v", i); !slices.Contains(got, want) {
			t.Errorf("%s missing after the commit", want)
		}
	}
}

// TestCommitIsolatesFailure: when one fn of a shared transaction fails,
// that call gets its error and nothing of it is written; every other call
// runs again in a transaction of its own and succeeds.
func TestCommitIsolatesFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "smimed.db")
	d := mustOpen(t, path, false, []Bucket{{Name: "b", Version: 1}})
	const n, bad = 20, 7
	results, txOf := groupRun(t, d, n, func(i int) bool { return i == bad })
	var shared *bbolt.Tx
	if len(txOf[bad]) > 0 {
		shared = txOf[bad][0]
	}
	if !errors.Is(results[bad], errBad) || len(txOf[bad]) != 2 {
		t.Errorf("failing call = %v after %d runs, want its own error after 2 (shared, then alone)", results[bad], len(txOf[bad]))
	}
	finals := map[*bbolt.Tx]int{}
	for i := range n {
		runs := txOf[i]
		if len(runs) == 0 {
			t.Fatalf("call %d never ran", i)
		}
		finals[runs[len(runs)-1]]++
		if i != bad && results[i] != nil {
			t.Errorf("call %d = %v, want nil: another call's failure must not fail it", i, results[i])
		}
		if len(runs) == 2 && runs[0] != shared {
			t.Errorf("call %d ran twice, first not in the shared transaction", i)
		}
	}
	if len(finals) != n || finals[shared] != 0 {
		t.Errorf("the calls' last runs were in %d transactions (the shared one among them: %v), want %d of their own", len(finals), finals[shared] > 0, n)
	}
	d.Close()
	got := dump(t, path)
	for i := range n {
		want := fmt.Sprintf("b/k%02d=v", i)
		if has := slices.Contains(got, want); has == (i == bad) {
			t.Errorf("after the commits, %s present = %v, want %v", want, has, i != bad)
		}
	}
	if !slices.Contains(got, "b/first=1") {
		t.Error("the first call's write is missing")
	}
}

// TestCommitFilesSyncs: a directory that cannot be synced fails the call
// that named it, and nothing of that call is committed.
func TestCommitFilesSyncs(t *testing.T) {
	dir := t.TempDir()
	d := mustOpen(t, filepath.Join(dir, "smimed.db"), false, []Bucket{{Name: "b", Version: 1}})
	defer d.Close()
	put := func(k string) func(*bbolt.Tx) error {
		return func(tx *bbolt.Tx) error { return tx.Bucket([]byte("b")).Put([]byte(k), nil) }
	}
	if err := d.CommitFiles([]string{dir, dir}, put("ok")); err != nil {
		t.Errorf("CommitFiles(existing dir) = %v", err)
	}
	if err := d.CommitFiles([]string{dir, filepath.Join(dir, "missing")}, put("bad")); err == nil {
		t.Error("CommitFiles(missing dir) = nil, want the sync's error")
	}
	var ok, bad bool
	d.Bolt().View(func(tx *bbolt.Tx) error {
		ok, bad = tx.Bucket([]byte("b")).Get([]byte("ok")) != nil, tx.Bucket([]byte("b")).Get([]byte("bad")) != nil
		return nil
	})
	if !ok || bad {
		t.Errorf("committed: ok %v, bad %v; want true, false", ok, bad)
	}
}
