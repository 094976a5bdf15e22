package daemon

// This file holds the reconnect delays of the IMAP watchers: exponential
// backoff with jitter, so that many accounts losing one server do not come
// back in lockstep, and a fixed long pause after a refused login, so that
// a wrong password does not lock the account at the server.

import (
	"context"
	"math/rand/v2"
	"time"
)

// Reconnect delays.
const (
	MinBackoff = time.Second      // the first delay's ceiling, and the floor of every delay
	MaxBackoff = 5 * time.Minute  // the ceiling never grows beyond this
	AuthRetry  = 15 * time.Minute // after an authentication failure, instead of Backoff
)

// Jitter selects how a delay is drawn below the current ceiling c.
type Jitter int

const (
	// EqualJitter draws uniformly from [c/2, c]: the delay still grows
	// steadily.
	EqualJitter Jitter = iota
	// FullJitter draws uniformly from [MinBackoff, c]: it spreads
	// reconnects best.
	FullJitter
)

// Backoff computes successive reconnect delays: the ceiling starts at Min
// and doubles with every Next up to Max; Reset starts over. The caller
// decides when a session was healthy enough to Reset (e.g. connected for
// more than a minute). A Backoff is not safe for concurrent use; each
// watcher owns one.
type Backoff struct {
	Min, Max time.Duration
	Jitter   Jitter
	// Rand returns a uniform random number in [0, n); nil means
	// math/rand/v2's Int64N. Tests inject their own.
	Rand func(n int64) int64

	attempt int
}

// NewBackoff returns a Backoff from MinBackoff to MaxBackoff.
func NewBackoff(j Jitter) *Backoff {
	return &Backoff{Min: MinBackoff, Max: MaxBackoff, Jitter: j}
}

// ceiling returns min(Max, Min * 2^attempt).
func (b *Backoff) ceiling() time.Duration {
	c := b.Min
	for i := 0; i < b.attempt && c < b.Max; i++ {
		c *= 2
	}
	return min(c, b.Max)
}

// Next returns the delay before the next attempt and grows the ceiling.
func (b *Backoff) Next() time.Duration {
	c := b.ceiling()
	if c < b.Max {
		b.attempt++
	}
	lo := b.Min
	if b.Jitter == EqualJitter {
		lo = max(c/2, b.Min)
	}
	if c <= lo {
		return lo
	}
	rnd := b.Rand
	if rnd == nil {
		rnd = rand.Int64N
	}
	return lo + time.Duration(rnd(int64(c-lo)+1))
}

// Reset starts over from Min, after a healthy session.
func (b *Backoff) Reset() { b.attempt = 0 }

// Wait sleeps for Next(), or until ctx is done, and returns ctx.Err() in
// that case.
func (b *Backoff) Wait(ctx context.Context) error {
	return sleepCtx(ctx, b.Next())
}

// sleepCtx sleeps for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
