package revocation

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// flights runs the fetches of CRLs, OCSP answers and issuer certificates:
// one at a time per key (a URL, for one CA where it matters), on its own
// (bounded by its own timeout), so that a caller whose deadline is short
// stops waiting without failing the fetch for the callers after it; and a
// key whose fetch failed is not tried again before retryFailed, so that
// messages do not each wait for a server that is down. What a fetch that
// succeeded gives is kept by its caller.
type flights struct {
	now func() time.Time

	mu     sync.Mutex
	failed map[string]failure
	active map[string]*flight
}

type flight struct {
	done chan struct{}
	val  any
	err  error
}

type failure struct {
	until time.Time
	err   error
}

// maxFailures bounds the failures remembered (the URLs come from
// strangers' certificates).
const maxFailures = 1000

func newFlights(now func() time.Time) *flights {
	return &flights{now: now, failed: map[string]failure{}, active: map[string]*flight{}}
}

// do runs fetch for key, or waits for the run under way, within ctx; a
// failure of the last retryFailed is returned without a run. fetch runs
// without the caller's context and must bound itself; onFail is called
// once when a run fails.
func (fs *flights) do(ctx context.Context, key string, fetch func(context.Context) (any, error), onFail func(error)) (any, error) {
	fs.mu.Lock()
	if f, ok := fs.failed[key]; ok && fs.now().Before(f.until) {
		fs.mu.Unlock()
		return nil, f.err
	}
	fl, busy := fs.active[key]
	if !busy {
		fl = &flight{done: make(chan struct{})}
		fs.active[key] = fl
		go func() {
			fl.val, fl.err = fetch(context.Background())
			fs.mu.Lock()
			delete(fs.active, key)
			if fl.err != nil {
				if len(fs.failed) >= maxFailures {
					// Expired ones first; only a flood of fresh failures
					// (strangers' URLs) clears the rest.
					now := fs.now()
					for k, f := range fs.failed {
						if !now.Before(f.until) {
							delete(fs.failed, k)
						}
					}
					if len(fs.failed) >= maxFailures {
						clear(fs.failed)
					}
				}
				fs.failed[key] = failure{until: fs.now().Add(retryFailed), err: fl.err}
			} else {
				delete(fs.failed, key)
			}
			fs.mu.Unlock()
			close(fl.done)
			if fl.err != nil && onFail != nil {
				onFail(fl.err)
			}
		}()
	}
	fs.mu.Unlock()
	select {
	case <-fl.done:
		return fl.val, fl.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w", keyURL(key), ctx.Err())
	}
}

// keyURL is the URL a flight key begins with.
func keyURL(key string) string {
	for i := 0; i < len(key); i++ {
		if key[i] == 0 {
			return key[:i]
		}
	}
	return key
}
