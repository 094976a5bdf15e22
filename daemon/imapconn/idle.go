package imapconn

import (
	"context"
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Idle waits in IDLE (RFC 2177) on the examined folder until the server
// announces a new message (EXISTS: woke is true), maxWait passes or ctx ends
// (woke false, with ctx's error). It always leaves IDLE with DONE and waits
// for the server's answer, so the Conn can go on. An EXISTS that arrived
// since the last UIDsAfter makes it return at once. Without IDLE on the
// server it returns ErrNoIdle: poll with UIDsAfter instead.
func (c *Conn) Idle(ctx context.Context, maxWait time.Duration) (woke bool, err error) {
	if c.broken != nil {
		return false, c.broken
	}
	if !c.caps.Has(imap.CapIdle) && !c.caps.Has(imap.CapIMAP4rev2) {
		return false, ErrNoIdle
	}
	select {
	case <-c.exists:
		return true, nil
	default:
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}

	var idle *imapclient.IdleCommand
	err = c.run(ctx, 0, "IDLE", func() error {
		var err error
		idle, err = c.client.Idle()
		return err
	})
	if err != nil {
		return false, err
	}
	// go-imap re-issues IDLE by itself every 28 minutes and stops silently
	// when that fails: watch for the end of the command too.
	ended := make(chan error, 1)
	go func() { ended <- idle.Wait() }()

	timer := time.NewTimer(maxWait)
	defer timer.Stop()
	var cause error
	select {
	case <-c.exists:
		woke = true
	case <-timer.C:
	case <-ctx.Done():
		cause = ctx.Err()
	case err := <-ended:
		c.client.Close()
		c.broken = fmt.Errorf("%w: IDLE ended by itself", ErrClosed)
		return false, c.withBye(fmt.Errorf("imapconn: IDLE ended: %v: %w", err, ErrClosed))
	}

	// Leave IDLE cleanly even when ctx is done; bounded by the command
	// timeout (shorter after a cancellation, so callers are not held up).
	timeout := c.cfg.CommandTimeout
	if cause != nil {
		timeout = min(timeout, 5*time.Second)
	}
	err = c.run(context.WithoutCancel(ctx), timeout, "DONE", func() error {
		if err := idle.Close(); err != nil {
			return err
		}
		return <-ended
	})
	if err != nil {
		return woke, err
	}
	if cause != nil {
		return false, cause
	}
	return woke, nil
}
