package imapconn

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Fetched is one message fetched into a file.
type Fetched struct {
	UID          uint32
	Path         string // a 0600 file in the directory given; "" when TooLarge
	Size         int64  // bytes in Path, or RFC822.SIZE when TooLarge
	InternalDate time.Time
	TooLarge     bool // over maxSize: the body was not downloaded
}

// FetchToFile fetches message uid of the examined folder into a new 0600
// temporary file in dir, streaming the literal (never whole in memory). It
// asks for UID, RFC822.SIZE and INTERNALDATE first; a message larger than
// maxSize (when > 0) is not downloaded and comes back with TooLarge set. The
// body is fetched with BODY.PEEK[], so \Seen is not set. When the server
// returns nothing for uid (expunged, or a server that puts the literal before
// the UID, which go-imap cannot route), the error is ErrGone. The caller owns
// and removes the file.
func (c *Conn) FetchToFile(ctx context.Context, uid uint32, dir string, maxSize int64) (*Fetched, error) {
	set := imap.UIDSetNum(imap.UID(uid))
	op := fmt.Sprintf("UID FETCH %d", uid)

	var meta *imapclient.FetchMessageBuffer
	err := c.run(ctx, 0, op+" (UID RFC822.SIZE INTERNALDATE)", func() error {
		msgs, err := c.client.Fetch(set, &imap.FetchOptions{UID: true, RFC822Size: true, InternalDate: true}).Collect()
		for _, m := range msgs {
			if uint32(m.UID) == uid {
				meta = m
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if meta == nil {
		return nil, fmt.Errorf("%w: %s", ErrGone, op)
	}
	f := &Fetched{UID: uid, Size: meta.RFC822Size, InternalDate: meta.InternalDate}
	if maxSize > 0 && meta.RFC822Size > maxSize {
		f.TooLarge = true
		return f, nil
	}

	file, err := os.CreateTemp(dir, "imapconn-*.eml") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("imapconn: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			file.Close()
			os.Remove(file.Name())
		}
	}()

	var (
		got     bool
		written int64
		tooBig  bool
		copyErr error
	)
	err = c.runMoving(ctx, op+" (UID BODY.PEEK[])", func(moved func()) error {
		cmd := c.client.Fetch(set, &imap.FetchOptions{
			UID:         true,
			BodySection: []*imap.FetchItemBodySection{{Peek: true}},
		})
		for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
			for item := msg.Next(); item != nil; item = msg.Next() {
				body, ok := item.(imapclient.FetchItemDataBodySection)
				if !ok || got || body.Literal == nil {
					continue // unread literals are discarded by Next
				}
				got = true
				// The reader blocks until the literal is consumed: straight
				// to the file, bounded by maxSize.
				lit := &movingReader{r: body.Literal, moved: moved}
				var r io.Reader = lit
				if maxSize > 0 {
					r = io.LimitReader(r, maxSize+1)
				}
				written, copyErr = io.Copy(file, r)
				if lit.err != nil && lit.err != io.EOF {
					// The connection failed inside the literal: go-imap's
					// reader has already moved on, and draining this
					// command (Next, Close) would read the same buffer
					// at the same time. Drop the connection instead.
					c.broken = fmt.Errorf("%w: %s failed while reading the body", ErrClosed, op)
					c.client.Close()
					return fmt.Errorf("reading the body: %w", lit.err)
				}
				if copyErr == nil && maxSize > 0 && written > maxSize {
					tooBig = true
				}
			}
		}
		return cmd.Close()
	})
	if err != nil {
		return nil, err
	}
	if copyErr != nil {
		return nil, fmt.Errorf("imapconn: %s: writing %s: %w", op, file.Name(), copyErr)
	}
	if !got {
		// The message exists (its UID, size and date came back), but the
		// body did not reach us — e.g. a server that sends the literal
		// before the UID, which go-imap cannot route. Never "gone": the
		// caller must retry, not skip.
		return nil, fmt.Errorf("%w: %s: the server returned no body for an existing message", ErrNoBody, op)
	}
	if tooBig {
		f.TooLarge = true
		return f, nil
	}
	if err := file.Close(); err != nil {
		return nil, fmt.Errorf("imapconn: %w", err)
	}
	keep = true
	f.Path = file.Name()
	f.Size = written
	return f, nil
}
