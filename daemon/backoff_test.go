package daemon

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

// The ceilings of successive attempts: 1 s doubling, capped at 5 min.
var wantCeilings = []time.Duration{
	1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second,
	16 * time.Second, 32 * time.Second, 64 * time.Second, 128 * time.Second,
	256 * time.Second, 300 * time.Second, 300 * time.Second, 300 * time.Second,
}

func TestBackoffExtremes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		jitter Jitter
		lo     func(c time.Duration) time.Duration
	}{
		{"equal", EqualJitter, func(c time.Duration) time.Duration { return max(c/2, time.Second) }},
		{"full", FullJitter, func(time.Duration) time.Duration { return time.Second }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			low := NewBackoff(tc.jitter)
			low.Rand = func(n int64) int64 { return 0 }
			high := NewBackoff(tc.jitter)
			high.Rand = func(n int64) int64 { return n - 1 }
			for i, c := range wantCeilings {
				if got, want := low.Next(), tc.lo(c); got != want {
					t.Errorf("attempt %d: Next() with rand 0 = %v, want %v", i, got, want)
				}
				if got := high.Next(); got != c {
					t.Errorf("attempt %d: Next() with rand n-1 = %v, want %v", i, got, c)
				}
			}
		})
	}
}

func TestBackoffBoundsRandom(t *testing.T) {
	for _, j := range []Jitter{EqualJitter, FullJitter} {
		b := NewBackoff(j)
		rng := rand.New(rand.NewPCG(1, 2))
		b.Rand = func(n int64) int64 {
			v := rng.Int64N(n)
			if v < 0 || v >= n {
				t.Fatalf("Int64N(%d) = %d", n, v)
			}
			return v
		}
		for round := 0; round < 50; round++ {
			for i := 0; i < 100; i++ {
				c := wantCeilings[min(i, len(wantCeilings)-1)]
				d := b.Next()
				lo := time.Second
				if j == EqualJitter {
					lo = max(c/2, time.Second)
				}
				if d < lo || d > c {
					t.Fatalf("jitter %d attempt %d: Next() = %v, want in [%v, %v]", j, i, d, lo, c)
				}
			}
			b.Reset()
		}
	}
}

func TestBackoffReset(t *testing.T) {
	b := NewBackoff(FullJitter)
	b.Rand = func(n int64) int64 { return n - 1 }
	for range 20 {
		b.Next()
	}
	if got := b.Next(); got != 5*time.Minute {
		t.Fatalf("Next() after 20 attempts = %v, want 5m0s", got)
	}
	b.Reset()
	if got := b.Next(); got != time.Second {
		t.Errorf("Next() after Reset = %v, want 1s", got)
	}
	if got := b.Next(); got != 2*time.Second {
		t.Errorf("second Next() after Reset = %v, want 2s", got)
	}
}

func TestBackoffDefaultRand(t *testing.T) {
	b := NewBackoff(EqualJitter)
	for range 1000 {
		if d := b.Next(); d < time.Second || d > 5*time.Minute {
			t.Fatalf("Next() = %v, want in [1s, 5m]", d)
		}
	}
}

func TestAuthRetry(t *testing.T) {
	if AuthRetry != 15*time.Minute {
		t.Errorf("AuthRetry = %v, want 15m0s", AuthRetry)
	}
}

func TestBackoffWaitCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := NewBackoff(EqualJitter)
	b.Min, b.Max = time.Hour, time.Hour
	if err := b.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait(cancelled) = %v, want %v", err, context.Canceled)
	}
}
