package daemon

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

func TestTrackerExample(t *testing.T) {
	tr := NewTracker(10)
	for _, uid := range []uint32{12, 15, 16, 20} { // 11, 13, 14, 17-19 expunged: gaps
		if !tr.Dispatch(uid) {
			t.Fatalf("Dispatch(%d) = false, want true", uid)
		}
	}
	for _, uid := range []uint32{5, 10, 15} {
		if tr.Dispatch(uid) {
			t.Errorf("Dispatch(%d) = true, want false (at/below checkpoint or known)", uid)
		}
	}
	steps := []struct {
		uid     uint32
		advance bool
		cp      uint32
	}{
		{16, false, 10},
		{15, false, 10},
		{12, true, 16},
		{12, false, 16}, // twice
		{99, false, 16}, // never dispatched
		{20, true, 20},
	}
	for _, s := range steps {
		adv, cp := tr.Done(s.uid)
		if adv != s.advance || cp != s.cp {
			t.Errorf("Done(%d) = %v, %d, want %v, %d", s.uid, adv, cp, s.advance, s.cp)
		}
	}
	if n := tr.Pending(); n != 0 {
		t.Errorf("Pending() = %d, want 0", n)
	}
}

func TestTrackerFailedBlocks(t *testing.T) {
	tr := NewTracker(0)
	for _, uid := range []uint32{1, 2, 3} {
		tr.Dispatch(uid)
	}
	tr.Failed(2)
	if adv, cp := tr.Done(1); !adv || cp != 1 {
		t.Errorf("Done(1) = %v, %d, want true, 1", adv, cp)
	}
	if adv, cp := tr.Done(3); adv || cp != 1 {
		t.Errorf("Done(3) with 2 failed = %v, %d, want false, 1", adv, cp)
	}
	if n := tr.Pending(); n != 1 {
		t.Errorf("Pending() = %d, want 1", n)
	}
	if got := tr.Retryable(); len(got) != 1 || got[0] != 2 {
		t.Errorf("Retryable() = %v, want [2]", got)
	}
	if !tr.Dispatch(2) {
		t.Fatalf("Dispatch(2) after Failed = false, want true")
	}
	if got := tr.Retryable(); len(got) != 0 {
		t.Errorf("Retryable() after re-dispatch = %v, want []", got)
	}
	if tr.Dispatch(2) {
		t.Errorf("Dispatch(2) while in flight = true, want false")
	}
	if adv, cp := tr.Done(2); !adv || cp != 3 {
		t.Errorf("Done(2) = %v, %d, want true, 3", adv, cp)
	}
}

// trackerModel is the specification, computed by brute force: the
// checkpoint is the largest done UID below every UID that is not done.
type trackerModel struct {
	start uint32
	state map[uint32]uidState
}

func (m *trackerModel) checkpoint() uint32 {
	minUndone, bounded := uint32(0), false
	for u, s := range m.state {
		if s != uidDone && (!bounded || u < minUndone) {
			minUndone, bounded = u, true
		}
	}
	cp := m.start
	for u, s := range m.state {
		if s == uidDone && (!bounded || u < minUndone) && u > cp {
			cp = u
		}
	}
	return cp
}

func (m *trackerModel) dispatchable(uid uint32) bool {
	s := m.state[uid]
	return uid > m.checkpoint() && (s == 0 || s == uidFailed)
}

func (m *trackerModel) pending() int {
	n := 0
	for _, s := range m.state {
		if s != uidDone {
			n++
		}
	}
	return n
}

func TestTrackerRandomSchedules(t *testing.T) {
	for seed := uint64(1); seed <= 300; seed++ {
		rng := rand.New(rand.NewPCG(seed, 42))
		start := uint32(rng.IntN(50))
		// A sparse UID set above (and a few at or below) the start.
		var uids []uint32
		for u := uint32(1); u < start+200; u++ {
			if rng.IntN(3) == 0 {
				uids = append(uids, u)
			}
		}
		rng.Shuffle(len(uids), func(i, j int) { uids[i], uids[j] = uids[j], uids[i] })

		tr := NewTracker(start)
		m := &trackerModel{start: start, state: map[uint32]uidState{}}
		pick := func(want uidState) (uint32, bool) {
			var c []uint32
			for u, s := range m.state {
				if s == want {
					c = append(c, u)
				}
			}
			if len(c) == 0 {
				return 0, false
			}
			return c[rng.IntN(len(c))], true
		}
		next := 0
		for step := 0; step < 2000; step++ {
			prev := tr.Checkpoint()
			switch op := rng.IntN(10); {
			case op < 3 && next < len(uids): // dispatch a new UID, in random order
				uid := uids[next]
				next++
				want := m.dispatchable(uid)
				if got := tr.Dispatch(uid); got != want {
					t.Fatalf("seed %d: Dispatch(%d) = %v, want %v", seed, uid, got, want)
				}
				if want {
					m.state[uid] = uidInFlight
				}
			case op < 6: // a worker finishes
				uid, ok := pick(uidInFlight)
				if !ok {
					continue
				}
				m.state[uid] = uidDone
				adv, cp := tr.Done(uid)
				if want := m.checkpoint(); cp != want || adv != (want != prev) {
					t.Fatalf("seed %d: Done(%d) = %v, %d, want %v, %d", seed, uid, adv, cp, want != prev, want)
				}
			case op < 7: // a worker fails temporarily
				if uid, ok := pick(uidInFlight); ok {
					tr.Failed(uid)
					m.state[uid] = uidFailed
				}
			case op < 8: // a failed UID is retried
				if uid, ok := pick(uidFailed); ok {
					if !tr.Dispatch(uid) {
						t.Fatalf("seed %d: Dispatch(%d) of a failed UID = false", seed, uid)
					}
					m.state[uid] = uidInFlight
				}
			case op < 9: // repeated dispatch or done of a known UID is ignored
				if uid, ok := pick(uidDone); ok {
					if tr.Dispatch(uid) {
						t.Fatalf("seed %d: Dispatch(%d) of a done UID = true", seed, uid)
					}
					if adv, cp := tr.Done(uid); adv || cp != prev {
						t.Fatalf("seed %d: second Done(%d) = %v, %d, want false, %d", seed, uid, adv, cp, prev)
					}
				}
			default: // Done of a never dispatched UID is ignored
				uid := uint32(rng.IntN(int(start) + 300))
				if m.state[uid] != 0 {
					continue
				}
				if adv, cp := tr.Done(uid); adv || cp != prev {
					t.Fatalf("seed %d: Done(%d) of an undispatched UID = %v, %d, want false, %d", seed, uid, adv, cp, prev)
				}
			}
			cp := tr.Checkpoint()
			if want := m.checkpoint(); cp != want {
				t.Fatalf("seed %d step %d: checkpoint = %d, want %d", seed, step, cp, want)
			}
			for u, s := range m.state {
				if s != uidDone && cp >= u {
					t.Fatalf("seed %d: checkpoint %d passes undone UID %d", seed, cp, u)
				}
			}
			if cp < prev {
				t.Fatalf("seed %d: checkpoint went back from %d to %d", seed, prev, cp)
			}
			if got, want := tr.Pending(), m.pending(); got != want {
				t.Fatalf("seed %d: Pending() = %d, want %d", seed, got, want)
			}
		}
		// Finish everything: the checkpoint ends at the highest dispatched UID.
		for _, uid := range tr.Retryable() {
			tr.Dispatch(uid)
		}
		maxUID := start
		for u := range m.state {
			tr.Done(u)
			maxUID = max(maxUID, u)
		}
		if cp, n := tr.Checkpoint(), tr.Pending(); cp != maxUID || n != 0 {
			t.Fatalf("seed %d: after all done: checkpoint %d, pending %d, want %d, 0", seed, cp, n, maxUID)
		}
	}
}

func TestTrackerConcurrentDone(t *testing.T) {
	const n = 2000
	rng := rand.New(rand.NewPCG(7, 7))
	var uids []uint32
	for u := uint32(1); len(uids) < n; u++ {
		if rng.IntN(4) != 0 {
			uids = append(uids, u)
		}
	}
	tr := NewTracker(0)
	for _, u := range uids {
		if !tr.Dispatch(u) {
			t.Fatalf("Dispatch(%d) = false", u)
		}
	}
	maxUID := uids[len(uids)-1]
	started := make([]atomic.Bool, maxUID+1) // Done(u) has been called
	work := make(chan uint32)
	var wg sync.WaitGroup
	var bad atomic.Value
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := uint32(0)
			for u := range work {
				started[u].Store(true)
				_, cp := tr.Done(u)
				if cp < last {
					bad.Store("checkpoint went backwards")
				}
				last = cp
				for _, v := range uids {
					if v > cp {
						break
					}
					if !started[v].Load() {
						bad.Store("checkpoint passed a UID whose Done was never called")
					}
				}
			}
		}()
	}
	order := rng.Perm(len(uids))
	for _, i := range order {
		work <- uids[i]
	}
	close(work)
	wg.Wait()
	if msg := bad.Load(); msg != nil {
		t.Fatal(msg)
	}
	if cp, p := tr.Checkpoint(), tr.Pending(); cp != maxUID || p != 0 {
		t.Fatalf("after all done: checkpoint %d, pending %d, want %d, 0", cp, p, maxUID)
	}
}
