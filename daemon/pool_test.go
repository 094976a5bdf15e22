package daemon

import (
	"context"
	"errors"
	"testing"
	"time"
)

// acquireAsync starts f.Acquire and returns a channel with its result.
func acquireAsync(ctx context.Context, f *PoolFolder) chan error {
	c := make(chan error, 1)
	go func() { c <- f.Acquire(ctx) }()
	return c
}

func waitQueued(t *testing.T, p *Pool, n int) {
	t.Helper()
	deadline := time.Now().Add(watchTimeout)
	for p.waiting() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d Acquire calls queued, want %d", p.waiting(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func granted(t *testing.T, c chan error, what string) {
	t.Helper()
	select {
	case err := <-c:
		if err != nil {
			t.Fatalf("%s: Acquire() = %v", what, err)
		}
	case <-time.After(watchTimeout):
		t.Fatalf("%s: Acquire() did not return", what)
	}
}

func notYet(t *testing.T, c chan error, what string) {
	t.Helper()
	select {
	case err := <-c:
		t.Fatalf("%s: Acquire() = %v, want it still waiting", what, err)
	default:
	}
}

func TestPoolShare(t *testing.T) {
	ctx := context.Background()
	p := NewPool(4)
	a := p.Join()
	// Alone, a folder may use every slot.
	if got := a.Share(); got != 4 {
		t.Errorf("alone: Share() = %d, want 4", got)
	}
	for range 4 {
		granted(t, acquireAsync(ctx, a), "lone folder")
	}
	for range 4 {
		a.Release()
	}

	b := p.Join()
	if got := a.Share(); got != 2 {
		t.Errorf("with another folder: Share() = %d, want 2", got)
	}
	// Two folders: a (the backlog) gets 4/2 = 2 slots, its third waits
	// although two slots are free.
	granted(t, acquireAsync(ctx, a), "a 1")
	granted(t, acquireAsync(ctx, a), "a 2")
	a3 := acquireAsync(ctx, a)
	waitQueued(t, p, 1)
	notYet(t, a3, "a 3")
	// b's fresh mail gets the free slots at once.
	granted(t, acquireAsync(ctx, b), "b 1")
	granted(t, acquireAsync(ctx, b), "b 2")
	b3 := acquireAsync(ctx, b)
	waitQueued(t, p, 2)
	// b releasing does not help a, which is at its share.
	b.Release()
	granted(t, b3, "b 3")
	notYet(t, a3, "a 3 after b's release")
	// a releasing lets a's waiter in.
	a.Release()
	granted(t, a3, "a 3 after a's release")
	if p.waiting() != 0 {
		t.Errorf("%d waiters left", p.waiting())
	}

	// b leaves: a is alone again and may take every slot.
	b.Release()
	b.Release()
	b.Leave()
	granted(t, acquireAsync(ctx, a), "a alone 3")
	granted(t, acquireAsync(ctx, a), "a alone 4")
}

func TestPoolFirstComeFirstServed(t *testing.T) {
	ctx := context.Background()
	p := NewPool(2)
	a, b, c := p.Join(), p.Join(), p.Join() // share 1 each
	granted(t, acquireAsync(ctx, a), "a")
	granted(t, acquireAsync(ctx, b), "b")
	cw := acquireAsync(ctx, c)
	waitQueued(t, p, 1)
	aw := acquireAsync(ctx, a)
	waitQueued(t, p, 2)
	// b's slot goes to c, queued first; a is at its share anyway.
	b.Release()
	granted(t, cw, "c")
	notYet(t, aw, "a")
	bw := acquireAsync(ctx, b)
	waitQueued(t, p, 2)
	// a's release: a's own waiter (queued before b) gets it.
	a.Release()
	granted(t, aw, "a again")
	notYet(t, bw, "b")
	c.Release()
	granted(t, bw, "b after c")
}

func TestPoolCancelAndResize(t *testing.T) {
	p := NewPool(1)
	a, b := p.Join(), p.Join()
	granted(t, acquireAsync(context.Background(), a), "a")
	ctx, cancel := context.WithCancel(context.Background())
	bw := acquireAsync(ctx, b)
	waitQueued(t, p, 1)
	cancel()
	select {
	case err := <-bw:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Acquire() = %v, want context.Canceled", err)
		}
	case <-time.After(watchTimeout):
		t.Fatal("cancelled Acquire() did not return")
	}
	waitQueued(t, p, 0)
	// Growing the pool serves a waiter at once.
	bw = acquireAsync(context.Background(), b)
	waitQueued(t, p, 1)
	p.Resize(2)
	granted(t, bw, "b after Resize(2)")
	a.Release()
	b.Release()
	p.mu.Lock()
	busy := p.busy
	p.mu.Unlock()
	if busy != 0 {
		t.Errorf("busy = %d after every release, want 0", busy)
	}
}

// TestInHand: workers = 1 keeps one message in hand (strict UID order);
// more workers keep inHandPerWorker each.
func TestInHand(t *testing.T) {
	for _, tt := range []struct{ workers, want int }{{0, 1}, {1, 1}, {2, 2 * inHandPerWorker}, {4, 4 * inHandPerWorker}} {
		if got := inHand(tt.workers); got != tt.want {
			t.Errorf("inHand(%d) = %d, want %d", tt.workers, got, tt.want)
		}
	}
}
