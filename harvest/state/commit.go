package state

// Group commit: the writes of concurrent callers share one bbolt
// transaction, and so one pair of fdatasyncs. A message's archive record,
// the certificates harvested from it, its user copy's state and the
// folder's checkpoint are each written by their owner at about the same
// time as those of the other messages in hand; committing them together is
// what lets a backlog go faster than one commit (two syncs) per write.
//
// There is no timer: whoever finds no transaction running commits at once
// with what is queued, and what arrives meanwhile goes into the next one.
// A lone caller waits for nothing but its own commit.

import (
	"fmt"
	"os"
	"sync"

	"go.etcd.io/bbolt"
)

// group queues the Commit calls of one DB.
type group struct {
	mu      sync.Mutex
	queue   []*groupCall
	leading bool // a caller is committing, or has been told to
}

type groupCall struct {
	dirs []string // to sync before the transaction
	fn   func(*bbolt.Tx) error
	done chan error    // the call's result
	lead chan struct{} // this caller commits the queue
}

// maxGroup bounds how many calls share one transaction, so that one commit
// does not hold everybody's memory at once.
const maxGroup = 256

// Commit runs fn in a read-write transaction, committed and synced before
// Commit returns, shared with the calls of other goroutines that arrive
// meanwhile. Its error is fn's or the commit's. fn may run more than once:
// when a shared transaction fails, every call in it runs again in a
// transaction of its own, so that one fn's error fails only its own call.
// fn must therefore only depend on the transaction, not on what an earlier
// run left behind. Like bbolt's Update, Commit must not be called inside
// another transaction of this DB.
func (d *DB) Commit(fn func(*bbolt.Tx) error) error {
	return d.CommitFiles(nil, fn)
}

// CommitFiles is Commit for a caller that has renamed files into the
// directories dirs (their data synced already): the directories are
// synced, each once for all the calls that share the transaction, before
// it runs, so that the files are durable before the records that name
// them. A failed sync fails the calls that named that directory.
func (d *DB) CommitFiles(dirs []string, fn func(*bbolt.Tx) error) error {
	c := &groupCall{dirs: dirs, fn: fn, done: make(chan error, 1), lead: make(chan struct{}, 1)}
	g := &d.group
	g.mu.Lock()
	g.queue = append(g.queue, c)
	if !g.leading {
		g.leading = true
		c.lead <- struct{}{}
	}
	g.mu.Unlock()

	select {
	case err := <-c.done:
		return err
	case <-c.lead:
	}
	// This caller commits what is queued (its own call among it), then
	// hands on to the first of those that came meanwhile.
	g.mu.Lock()
	n := min(len(g.queue), maxGroup)
	batch := g.queue[:n:n]
	g.queue = g.queue[n:]
	g.mu.Unlock()

	d.commitBatch(batch)

	g.mu.Lock()
	if len(g.queue) > 0 {
		g.queue[0].lead <- struct{}{}
	} else {
		g.leading = false
	}
	g.mu.Unlock()
	return <-c.done
}

// commitBatch runs the calls in one transaction and answers each; when it
// fails, each call runs in a transaction of its own.
func (d *DB) commitBatch(batch []*groupCall) {
	failed := syncDirs(batch)
	if len(failed) > 0 {
		var rest []*groupCall
		for _, c := range batch {
			if err := firstFailed(c.dirs, failed); err != nil {
				c.done <- err
			} else {
				rest = append(rest, c)
			}
		}
		if batch = rest; len(batch) == 0 {
			return
		}
	}
	err := d.db.Update(func(tx *bbolt.Tx) error {
		for _, c := range batch {
			if err := c.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || len(batch) == 1 {
		for _, c := range batch {
			c.done <- err
		}
		return
	}
	for _, c := range batch {
		c.done <- d.db.Update(c.fn)
	}
}

// syncDirs fsyncs every directory the calls name, once each and at the
// same time (the file system's journal commits them together), and returns
// the errors by directory.
func syncDirs(batch []*groupCall) map[string]error {
	var dirs []string
	seen := map[string]bool{}
	for _, c := range batch {
		for _, d := range c.dirs {
			if !seen[d] {
				seen[d] = true
				dirs = append(dirs, d)
			}
		}
	}
	if len(dirs) == 0 {
		return nil
	}
	errs := make([]error, len(dirs))
	var wg sync.WaitGroup
	for i, d := range dirs {
		wg.Go(func() { errs[i] = SyncDir(d) })
	}
	wg.Wait()
	var failed map[string]error
	for i, err := range errs {
		if err != nil {
			if failed == nil {
				failed = map[string]error{}
			}
			failed[dirs[i]] = err
		}
	}
	return failed
}

func firstFailed(dirs []string, failed map[string]error) error {
	for _, d := range dirs {
		if err := failed[d]; err != nil {
			return fmt.Errorf("sync %s: %w", d, err)
		}
	}
	return nil
}

// SyncDir fsyncs a directory, so that the entries created or renamed in
// it survive a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
