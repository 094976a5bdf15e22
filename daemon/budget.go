package daemon

import (
	"context"
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

	mu    sync.Mutex
	inUse int
	idle  int
	freed chan struct{} // closed and replaced when a slot comes free
	high  int           // the most in use at once
}

// newConnBudget is a budget of max connections, of which at most max
// less a reserve (1 of up to 3, else 2) hold an IDLE.
func newConnBudget(max int) *connBudget {
	reserve := 2
	if max <= 3 {
		reserve = 1
	}
	return &connBudget{max: max, idleMax: max - reserve, freed: make(chan struct{})}
}

// TryIdle takes a slot for an IDLE folder if the budget leaves one; the
// caller gives it back with ReleaseIdle.
func (b *connBudget) TryIdle() bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.idle >= b.idleMax || b.inUse >= b.max {
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

// Acquire waits for a slot (a poll, a copy connection).
func (b *connBudget) Acquire(ctx context.Context) error {
	if b == nil {
		return nil
	}
	for {
		b.mu.Lock()
		if b.inUse < b.max {
			b.take()
			b.mu.Unlock()
			return nil
		}
		ch := b.freed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// take counts a slot taken; called with mu held.
func (b *connBudget) take() {
	b.inUse++
	b.high = max(b.high, b.inUse)
}

// Release gives back an Acquire slot.
func (b *connBudget) Release() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.inUse--
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}

// High is the most connections held at once so far.
func (b *connBudget) High() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.high
}
