package imapconn

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Fetched is one message fetched into a file or into memory.
type Fetched struct {
	UID          uint32
	Path         string // a 0600 file in the directory given; "" when TooLarge or in Data
	Data         []byte // the message, when it was small enough to be kept in memory
	Size         int64  // bytes in Path or Data, or RFC822.SIZE when TooLarge
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
	var f *Fetched
	missed, err := c.fetchMany(ctx, []uint32{uid}, dir, maxSize, 0, nil, func(got *Fetched) { f = got })
	switch {
	case err != nil:
		return nil, err
	case f != nil:
		return f, nil
	case len(missed.NoBody) > 0:
		// The message exists (its UID, size and date came back), but the
		// body did not reach us — e.g. a server that sends the literal
		// before the UID, which go-imap cannot route. Never "gone": the
		// caller must retry, not skip.
		return nil, fmt.Errorf("%w: UID FETCH %d: the server returned no body for an existing message", ErrNoBody, uid)
	}
	return nil, fmt.Errorf("%w: UID FETCH %d", ErrGone, uid)
}

// Missed is what FetchMany did not fetch: the UIDs the server returned
// nothing for (Gone: expunged, or an answer go-imap could not route), and
// those whose size and date came back but not their body (NoBody). Neither
// proves a message gone: HasUID does.
type Missed struct {
	Gone, NoBody []uint32
	// Later are the messages admit turned down, with those after them:
	// not fetched, for a later call.
	Later []uint32
}

// FetchMany fetches the messages uids of the examined folder, each into a
// new 0600 file in dir (streamed, never whole in memory), in two commands
// however many they are: UID, RFC822.SIZE and INTERNALDATE of all, then
// UID and BODY.PEEK[] of those not larger than maxSize (when > 0), so a
// larger message is never downloaded and comes back with TooLarge set, and
// \Seen is never set. got is called, in this goroutine, with each message
// as soon as its file is complete (a TooLarge one after the first
// command), in the server's order; the caller owns the files passed to it,
// also when FetchMany then fails. Before the bodies are fetched, admit
// (when not nil) is asked about each message not TooLarge, in the order of
// uids, with its size and date known: once it says no, that message and
// the ones after it are left for later (the caller bounds the bytes of a
// batch so). The messages not passed to got are in Missed.
func (c *Conn) FetchMany(ctx context.Context, uids []uint32, dir string, maxSize int64, admit func(*Fetched) bool, got func(*Fetched)) (Missed, error) {
	return c.fetchMany(ctx, uids, dir, maxSize, MemoryBodyMax, admit, got)
}

// MemoryBodyMax is the largest message FetchMany keeps in memory (by its
// RFC822.SIZE) rather than in a file: creating and removing a file cost
// more than the engine's work on a small message (issue 12), and a
// message in hand is read whole by the sink anyway. A body that turns out
// longer than announced goes on into a file.
const MemoryBodyMax = 256 << 10

// fetchMany is FetchMany keeping bodies up to memMax bytes in memory (0:
// every body in a file).
func (c *Conn) fetchMany(ctx context.Context, uids []uint32, dir string, maxSize, memMax int64, admit func(*Fetched) bool, got func(*Fetched)) (Missed, error) {
	var missed Missed
	if len(uids) == 0 {
		return missed, nil
	}
	var set imap.UIDSet
	for _, u := range uids {
		set.AddNum(imap.UID(u))
	}
	op := "UID FETCH " + set.String()
	if len(uids) > 1 {
		op = fmt.Sprintf("UID FETCH of %d messages", len(uids))
	}

	meta := make(map[uint32]*Fetched, len(uids))
	err := c.run(ctx, 0, op+" (UID RFC822.SIZE INTERNALDATE)", func() error {
		cmd := c.client.Fetch(set, &imap.FetchOptions{UID: true, RFC822Size: true, InternalDate: true})
		for {
			m := cmd.Next()
			if m == nil {
				break
			}
			buf, err := m.Collect()
			if err != nil {
				cmd.Close()
				return err
			}
			if u := uint32(buf.UID); u != 0 {
				meta[u] = &Fetched{UID: u, Size: buf.RFC822Size, InternalDate: buf.InternalDate}
			}
		}
		return cmd.Close()
	})
	if err != nil {
		return missed, err
	}
	var bodies imap.UIDSet
	want := 0
	later := false
	for _, u := range uids {
		f := meta[u]
		switch {
		case f == nil:
			missed.Gone = append(missed.Gone, u)
		case maxSize > 0 && f.Size > maxSize:
			f.TooLarge = true
			got(f)
			delete(meta, u)
		case later || admit != nil && !admit(f):
			later = true
			missed.Later = append(missed.Later, u)
			delete(meta, u)
		default:
			bodies.AddNum(imap.UID(u))
			want++
		}
	}
	if want == 0 {
		return missed, nil
	}
	var files []*os.File // created and not yet handed over
	defer func() {
		for _, f := range files {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	err = c.runMoving(ctx, op+" (UID BODY.PEEK[])", func(moved func()) error {
		cmd := c.client.Fetch(bodies, &imap.FetchOptions{
			UID:         true,
			BodySection: []*imap.FetchItemBodySection{{Peek: true}},
		})
		var failed error // writing a file; the command is read to its end
		for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
			var (
				uid     uint32
				file    *os.File
				data    []byte // the body, when kept in memory
				inMem   bool
				written int64
				tooBig  bool
			)
			for item := msg.Next(); item != nil; item = msg.Next() {
				switch item := item.(type) {
				case imapclient.FetchItemDataUID:
					uid = uint32(item.UID)
				case imapclient.FetchItemDataBodySection:
					if file != nil || inMem || item.Literal == nil || failed != nil {
						continue // unread literals are discarded by Next
					}
					// The reader blocks until the literal is consumed:
					// into memory when small, else straight to the file,
					// bounded by maxSize.
					lit := &movingReader{r: item.Literal, moved: moved}
					var r io.Reader = lit
					if maxSize > 0 {
						r = io.LimitReader(r, maxSize+1)
					}
					var err error
					if m := meta[uid]; m != nil && m.Size <= memMax {
						var buf bytes.Buffer
						buf.Grow(int(m.Size))
						written, err = io.Copy(&buf, io.LimitReader(r, memMax+1))
						data, inMem = buf.Bytes(), err == nil && written <= memMax
						if data == nil {
							data = []byte{} // an empty message is in memory too
						}
						if lit.err != nil && lit.err != io.EOF {
							return c.bodyBroken(op, lit.err)
						}
						if err != nil {
							failed = fmt.Errorf("imapconn: reading a body: %w", err)
							continue
						}
						if inMem {
							tooBig = maxSize > 0 && written > maxSize
							continue
						}
						// Longer than announced: the rest into a file.
					}
					if file, err = os.CreateTemp(dir, "imapconn-*.eml"); err != nil { // mode 0600
						failed = fmt.Errorf("imapconn: %w", err)
						continue
					}
					files = append(files, file)
					var n int64
					if _, err = file.Write(data); err == nil {
						n, err = io.Copy(file, r)
					}
					data, written = nil, written+n
					if lit.err != nil && lit.err != io.EOF {
						return c.bodyBroken(op, lit.err)
					}
					if err != nil {
						failed = fmt.Errorf("writing %s: %w", file.Name(), err)
						continue
					}
					tooBig = maxSize > 0 && written > maxSize
				}
			}
			f := meta[uid]
			if f == nil || file == nil && !inMem || failed != nil {
				continue // not asked for, twice, or without a body
			}
			delete(meta, uid)
			if inMem {
				if tooBig {
					f.TooLarge = true
				} else {
					f.Data, f.Size = data, written
				}
				got(f)
				continue
			}
			files = files[:len(files)-1]
			if err := file.Close(); err != nil {
				os.Remove(file.Name())
				failed = fmt.Errorf("imapconn: %w", err)
				continue
			}
			if tooBig {
				os.Remove(file.Name())
				f.TooLarge = true
			} else {
				f.Path, f.Size = file.Name(), written
			}
			got(f)
		}
		if err := cmd.Close(); err != nil {
			return err
		}
		return failed
	})
	for _, u := range uids {
		if meta[u] != nil && !meta[u].TooLarge {
			missed.NoBody = append(missed.NoBody, u)
		}
	}
	return missed, err
}

// bodyBroken ends a fetch whose connection failed inside a body's literal:
// go-imap's reader has already moved on, and draining the command (Next,
// Close) would read the same buffer at the same time, so the connection is
// dropped instead.
func (c *Conn) bodyBroken(op string, err error) error {
	c.broken = fmt.Errorf("%w: %s failed while reading a body", ErrClosed, op)
	c.client.Close()
	return fmt.Errorf("reading a body: %w", err)
}
