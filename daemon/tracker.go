package daemon

// This file advances a folder's checkpoint in UID order while a pool of
// workers finishes messages in any order. The checkpoint means "every
// message with a UID <= checkpoint is done" (see checkpoint.go), so it may
// only move to the highest UID below which every dispatched UID is done.
// UIDs are strictly ascending but sparse (RFC 9051 2.3.1.1): a UID that was
// never dispatched, such as one expunged before we fetched it, is not
// waited for.

import (
	"container/heap"
	"slices"
	"sync"
)

type uidState uint8

const (
	uidInFlight uidState = iota + 1
	uidFailed
	uidDone
)

// Tracker tracks the dispatched UIDs of one folder above its checkpoint.
// It is safe for concurrent use by the dispatcher and the workers.
type Tracker struct {
	mu         sync.Mutex
	checkpoint uint32
	state      map[uint32]uidState // dispatched UIDs above checkpoint
	undone     uidHeap             // in-flight and failed UIDs; stale entries skipped lazily
	done       uidHeap             // done UIDs above checkpoint
	pending    int                 // in-flight + failed
}

// NewTracker returns a Tracker for a folder whose checkpoint is start.
func NewTracker(start uint32) *Tracker {
	return &Tracker{checkpoint: start, state: make(map[uint32]uidState)}
}

// Dispatch registers uid as handed to a worker. It returns false, and
// changes nothing, for a UID at or below the checkpoint or one already in
// flight or done; a UID that Failed is taken back (true).
func (t *Tracker) Dispatch(uid uint32) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if uid <= t.checkpoint {
		return false
	}
	switch t.state[uid] {
	case uidFailed:
		t.state[uid] = uidInFlight
		return true
	case 0:
		t.state[uid] = uidInFlight
		heap.Push(&t.undone, uid)
		t.pending++
		return true
	}
	return false
}

// Done marks uid as durably processed and returns the checkpoint: the
// largest UID such that every dispatched UID at or below it is done.
// advanced reports whether this call moved it, i.e. whether the caller
// should store it. A UID that is not pending (never dispatched, already
// done, at or below the checkpoint) is ignored.
func (t *Tracker) Done(uid uint32) (advanced bool, checkpoint uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.state[uid]; uid <= t.checkpoint || (s != uidInFlight && s != uidFailed) {
		return false, t.checkpoint
	}
	t.state[uid] = uidDone
	t.pending--
	heap.Push(&t.done, uid)

	// The lowest UID not done bounds the checkpoint; skip stale entries.
	limit, bounded := uint32(0), false
	for t.undone.Len() > 0 {
		u := t.undone[0]
		if s := t.state[u]; s == uidInFlight || s == uidFailed {
			limit, bounded = u, true
			break
		}
		heap.Pop(&t.undone)
	}
	old := t.checkpoint
	for t.done.Len() > 0 && (!bounded || t.done[0] < limit) {
		u := heap.Pop(&t.done).(uint32)
		delete(t.state, u)
		t.checkpoint = u
	}
	return t.checkpoint != old, t.checkpoint
}

// Failed records a temporary failure of uid: it stays pending and the
// checkpoint does not pass it until it is dispatched again and done.
func (t *Tracker) Failed(uid uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state[uid] == uidInFlight {
		t.state[uid] = uidFailed
	}
}

// Retryable returns the UIDs that Failed and were not dispatched again,
// in ascending order.
func (t *Tracker) Retryable() []uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var uids []uint32
	for u, s := range t.state {
		if s == uidFailed {
			uids = append(uids, u)
		}
	}
	slices.Sort(uids)
	return uids
}

// Finished reports whether uid is done: at or below the checkpoint, or
// marked Done above it.
func (t *Tracker) Finished(uid uint32) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return uid <= t.checkpoint || t.state[uid] == uidDone
}

// Checkpoint returns the current checkpoint.
func (t *Tracker) Checkpoint() uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.checkpoint
}

// Pending returns how many dispatched UIDs are not done (in flight or
// failed).
func (t *Tracker) Pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pending
}

// uidHeap is a min-heap of UIDs for container/heap.
type uidHeap []uint32

func (h uidHeap) Len() int           { return len(h) }
func (h uidHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h uidHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *uidHeap) Push(x any)        { *h = append(*h, x.(uint32)) }
func (h *uidHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
