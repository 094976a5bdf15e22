package daemon

import (
	"context"
	"slices"
	"sync"
)

// connBudget bounds the connections smimed holds to one IMAP server
// ([daemon] max_connections; Dovecot allows 10 per user and address by
// default). Folders take an IDLE connection for good while two slots
// (three from a budget of 5) stay free: for polls (and copies), and one
// for the copies alone. A folder
// left without IDLE is polled: a connection for a short STATUS check every
// poll_interval. The copies' connections take a slot while open and close
// when idle, at once when others wait.
//
// The copies' own slot keeps the budget from locking up: a poll holds its
// connection while it waits for worker slots, and those may be held by
// deliveries that wait for a copy; a copy needs no worker slot.
type connBudget struct {
	max, idleMax int

	mu      sync.Mutex
	inUse   int
	idle    int
	waiters []budgetWaiter // first come first served, as far as each may
	high    int            // the most in use at once
}

type budgetWaiter struct {
	ch   chan struct{}
	copy bool
}

// newConnBudget is a budget of n (at least 2) connections: all but 2 (3
// from 5 on: two for polls) may hold an IDLE.
func newConnBudget(n int) *connBudget {
	n = max(n, 2)
	keep := 2
	if n >= 5 {
		keep = 3
	}
	return &connBudget{max: n, idleMax: n - keep}
}

// TryIdle takes a slot for an IDLE folder if the budget leaves one; the
// caller gives it back with ReleaseIdle.
func (b *connBudget) TryIdle() bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.idle >= b.idleMax || b.inUse >= b.max-2 || len(b.waiters) > 0 {
		return false
	}
	b.idle++
	b.take()
	return true
}

// ReleaseIdle gives back a TryIdle slot.
func (b *connBudget) ReleaseIdle() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.idle--
	b.mu.Unlock()
	b.Release()
}

// Acquire waits for a slot for a poll (the last slot is the copies'); see
// acquire.
func (b *connBudget) Acquire(ctx context.Context) error { return b.acquire(ctx, false) }

// AcquireCopy waits for a slot for a copier's connection.
func (b *connBudget) AcquireCopy(ctx context.Context) error { return b.acquire(ctx, true) }

// may reports whether a waiter of that kind may take a slot now; called
// with mu held.
func (b *connBudget) may(copy bool) bool {
	if copy {
		return b.inUse < b.max
	}
	return b.inUse < b.max-1
}

// acquire waits for a slot; the waiters are served in the order they
// came, as far as the copies' slot allows, so that no polled folder
// starves.
func (b *connBudget) acquire(ctx context.Context, copy bool) error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	// Release serves every waiter that may take a slot, so those still
	// waiting cannot use a free one: whoever may, takes it (a copy, while
	// polls wait for a slot that is not the copies').
	if b.may(copy) {
		b.take()
		b.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	b.waiters = append(b.waiters, budgetWaiter{ch, copy})
	b.mu.Unlock()
	select {
	case <-ch:
		return nil // the slot was taken for us
	case <-ctx.Done():
		b.mu.Lock()
		if i := slices.IndexFunc(b.waiters, func(w budgetWaiter) bool { return w.ch == ch }); i >= 0 {
			b.waiters = slices.Delete(b.waiters, i, i+1)
			b.mu.Unlock()
			return ctx.Err()
		}
		b.mu.Unlock()
		b.Release() // granted meanwhile: given back
		return ctx.Err()
	}
}

// take counts a slot taken; called with mu held.
func (b *connBudget) take() {
	b.inUse++
	b.high = max(b.high, b.inUse)
}

// Release gives back a slot, to the first waiters that may take it.
func (b *connBudget) Release() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inUse--
	for i := 0; i < len(b.waiters) && b.inUse < b.max; {
		if w := b.waiters[i]; b.may(w.copy) {
			b.waiters = slices.Delete(b.waiters, i, i+1)
			b.take()
			close(w.ch)
			continue
		}
		i++
	}
}

// Contended reports whether a waiter could use the slot a copier's
// connection would give back (the copier then closes it at once).
func (b *connBudget) Contended() bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, w := range b.waiters {
		if w.copy || b.inUse-1 < b.max-1 {
			return true
		}
	}
	return false
}

// High is the most connections held at once so far.
func (b *connBudget) High() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.high
}
