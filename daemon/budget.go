package daemon

import (
	"context"
	"slices"
	"sync"
)

// connBudget bounds the connections smimed holds to one IMAP server
// ([daemon] max_connections; Dovecot allows 10 per user and address by
// default). Folders take an IDLE connection for good while the budget
// leaves room for the others' needs (reserved slots); the rest are polled:
// a connection for a short STATUS check every poll_interval. The copies'
// connections take a slot while they are open (they close when idle).
type connBudget struct {
	max, idleMax int

	mu      sync.Mutex
	inUse   int
	idle    int
	waiters []chan struct{} // Acquire callers, first come first served
	high    int             // the most in use at once
}

// newConnBudget is a budget of max connections, of which at most max
// less a reserve (1 of up to 3, else 2) hold an IDLE.
func newConnBudget(max int) *connBudget {
	reserve := 2
	if max <= 3 {
		reserve = 1
	}
	return &connBudget{max: max, idleMax: max - reserve}
}

// TryIdle takes a slot for an IDLE folder if the budget leaves one; the
// caller gives it back with ReleaseIdle.
func (b *connBudget) TryIdle() bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.idle >= b.idleMax || b.inUse >= b.max || len(b.waiters) > 0 {
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

// Acquire waits for a slot (a poll, a copy connection); the waiters are
// served in the order they came, so that no polled folder starves.
func (b *connBudget) Acquire(ctx context.Context) error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	if b.inUse < b.max && len(b.waiters) == 0 {
		b.take()
		b.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	b.waiters = append(b.waiters, ch)
	b.mu.Unlock()
	select {
	case <-ch:
		return nil // the slot was taken for us
	case <-ctx.Done():
		b.mu.Lock()
		if i := slices.Index(b.waiters, ch); i >= 0 {
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

// Release gives back an Acquire slot, to the first waiter if any.
func (b *connBudget) Release() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inUse--
	for b.inUse < b.max && len(b.waiters) > 0 {
		ch := b.waiters[0]
		b.waiters = b.waiters[1:]
		b.take()
		close(ch)
	}
}

// High is the most connections held at once so far.
func (b *connBudget) High() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.high
}
