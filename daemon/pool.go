package daemon

// This file holds the worker pool: `[daemon] workers` slots shared by every
// watched folder of every account. A slot is held from the fetch of one
// message until its delivery is finished, so it bounds both the engine's
// work and the temporary files on disk.
//
// Fairness: one mailbox's big backlog must not stall another's fresh mail.
// Two rules give that:
//   - a folder holds at most its share of the slots: all of them while it
//     is the only folder, otherwise half (at least one), so even a folder
//     whose deliveries hang leaves slots to the others;
//   - folders waiting for a slot are served first come, first served, and
//     a folder's dispatcher asks for one slot at a time, so a waiting
//     folder gets a slot after at most one delivery of each folder queued
//     ahead of it (round robin under load).

import (
	"context"
	"slices"
	"sync"
)

// Pool is the set of worker slots shared by the folders that Join it. It is
// safe for concurrent use.
type Pool struct {
	mu      sync.Mutex
	size    int
	busy    int
	folders int
	queue   []*poolWaiter // first come, first served
}

type poolWaiter struct {
	f     *PoolFolder
	ready chan struct{} // closed when the slot is granted
}

// PoolFolder is one folder's access to a Pool.
type PoolFolder struct {
	p    *Pool
	held int // guarded by p.mu
}

// NewPool returns a pool of workers slots (at least one).
func NewPool(workers int) *Pool {
	return &Pool{size: max(1, workers)}
}

// Resize changes the number of slots. Slots held above a smaller size are
// kept until released.
func (p *Pool) Resize(workers int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.size = max(1, workers)
	p.grant()
}

// Size returns the number of slots.
func (p *Pool) Size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.size
}

// Join registers a folder; call Leave when its watcher ends.
func (p *Pool) Join() *PoolFolder {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.folders++
	return &PoolFolder{p: p}
}

// Leave unregisters the folder. Its slots must have been released.
func (f *PoolFolder) Leave() {
	f.p.mu.Lock()
	defer f.p.mu.Unlock()
	f.p.folders--
	f.p.grant() // the others' share may have grown
}

// share is the most slots one folder may hold. Called with mu held.
func (p *Pool) share() int {
	if p.folders <= 1 {
		return p.size
	}
	return max(1, p.size/2)
}

// Acquire waits for a slot for one message of the folder, or for ctx to
// end (then it returns ctx's error and holds nothing).
func (f *PoolFolder) Acquire(ctx context.Context) error {
	p := f.p
	p.mu.Lock()
	// A queued folder is either over its share or waiting for a busy pool
	// (grant runs on every release), so a free slot within our share is
	// not owed to anyone ahead of us.
	if p.busy < p.size && f.held < p.share() {
		p.busy++
		f.held++
		p.mu.Unlock()
		return nil
	}
	w := &poolWaiter{f: f, ready: make(chan struct{})}
	p.queue = append(p.queue, w)
	p.mu.Unlock()

	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if i := slices.Index(p.queue, w); i >= 0 {
		p.queue = slices.Delete(p.queue, i, i+1)
	} else { // granted meanwhile: give it back
		p.busy--
		f.held--
		p.grant()
	}
	return ctx.Err()
}

// Share is how many slots the folder may hold at most now.
func (f *PoolFolder) Share() int {
	f.p.mu.Lock()
	defer f.p.mu.Unlock()
	return f.p.share()
}

// TryAcquire takes a slot for the folder when one is free within its
// share and no folder is waiting for one; it never waits.
func (f *PoolFolder) TryAcquire() bool {
	p := f.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) > 0 || p.busy >= p.size || f.held >= p.share() {
		return false
	}
	p.busy++
	f.held++
	return true
}

// Release returns a slot taken by Acquire or TryAcquire.
func (f *PoolFolder) Release() {
	f.p.mu.Lock()
	defer f.p.mu.Unlock()
	f.p.busy--
	f.held--
	f.p.grant()
}

// grant hands free slots to the waiters in queue order, skipping those
// at their share. Called with mu held.
func (p *Pool) grant() {
	share := p.share()
	for i := 0; i < len(p.queue) && p.busy < p.size; {
		w := p.queue[i]
		if w.f.held >= share {
			i++
			continue
		}
		p.busy++
		w.f.held++
		close(w.ready)
		p.queue = slices.Delete(p.queue, i, i+1)
	}
}

// waiting returns how many Acquire calls are queued, for tests.
func (p *Pool) waiting() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue)
}

// inHandPerWorker is how many messages a worker may have in hand: the
// pool has this many slots per `[daemon] workers`, while the engine runs
// on at most workers at once (Gate). The others are being fetched, or
// written to the archive and committed together with the rest (group
// commit), or copied together (MULTIAPPEND): waiting for the disk or the
// server, not for a CPU. Once copies went in batches, 32 took
// BenchmarkBackfill/mix from about 3.0 s to 2.5 s against 8 (issue 12);
// memory stays bounded because only workers messages larger than
// imapconn.MemoryBodyMax are delivered at once (archiveSink.large).
const inHandPerWorker = 32

// inHand is the pool's size for workers: inHandPerWorker × workers, but
// one for workers = 1, which means one message at a time, taken in UID
// order and done before the next (archive records then follow the order
// of delivery, as the demo shows).
func inHand(workers int) int {
	if workers <= 1 {
		return 1
	}
	return workers * inHandPerWorker
}

// Gate bounds how many goroutines run the engine at once: `[daemon]
// workers`. It is safe for concurrent use.
type Gate struct {
	mu   sync.Mutex
	cond *sync.Cond
	size int
	busy int
}

// NewGate returns a gate for n at once (at least one).
func NewGate(n int) *Gate {
	g := &Gate{size: max(1, n)}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// Resize changes how many may run at once; those running above a smaller
// size finish.
func (g *Gate) Resize(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.size = max(1, n)
	g.cond.Broadcast()
}

// Do runs fn once fewer than the gate's size are running.
func (g *Gate) Do(fn func()) {
	g.mu.Lock()
	for g.busy >= g.size {
		g.cond.Wait()
	}
	g.busy++
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.busy--
		g.cond.Signal()
		g.mu.Unlock()
	}()
	fn()
}
