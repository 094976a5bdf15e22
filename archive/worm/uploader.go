package worm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/harvest/state"
)

// Options tune an Uploader; zero values take the defaults.
type Options struct {
	// Mode is "COMPLIANCE" (default) or "GOVERNANCE".
	Mode string
	// RetainUntil gives a record's lock end (default
	// YearsAfterReceipt(10)).
	RetainUntil RetainUntil
	// Held tells whether a legal hold covers a record when its objects
	// are first written (default: none).
	Held   Held
	Logger *slog.Logger
	// Poll is how often the archive is looked at for new records (5 s).
	Poll time.Duration
	// MinBackoff and MaxBackoff bound the pause after a failed upload
	// (5 s and 5 min).
	MinBackoff, MaxBackoff time.Duration
}

// Uploader writes the outbox's objects to the bucket. Its methods are safe
// for concurrent use; Run runs at most once at a time.
type Uploader struct {
	a    *archive.Archive
	db   *state.DB
	c    *Client
	opt  Options
	log  *slog.Logger
	wake chan struct{}
	now  func() time.Time

	queued, uploaded, failures, holds atomic.Int64
	mu                                sync.Mutex
	failing                           int       // consecutive failed attempts
	downUntil                         time.Time // no attempt before (server unreachable)
	locked                            bool      // the bucket was seen with Object Lock
	lastErr                           string    // of the last failed attempt, "" after a success
}

// NewUploader returns an uploader of archive a (indexed in db, opened
// read-write) to the bucket c talks to.
func NewUploader(a *archive.Archive, db *state.DB, c *Client, opt Options) *Uploader {
	if opt.Mode == "" {
		opt.Mode = "COMPLIANCE"
	}
	if opt.RetainUntil == nil {
		opt.RetainUntil = YearsAfterReceipt(10)
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Poll == 0 {
		opt.Poll = 5 * time.Second
	}
	if opt.MinBackoff == 0 {
		opt.MinBackoff = 5 * time.Second
	}
	if opt.MaxBackoff == 0 {
		opt.MaxBackoff = 5 * time.Minute
	}
	return &Uploader{a: a, db: db, c: c, opt: opt, log: opt.Logger.With("pkg", "worm"), wake: make(chan struct{}, 1), now: time.Now}
}

// Bucket is the bucket's name.
func (u *Uploader) Bucket() string { return u.c.Bucket() }

// Client is the uploader's S3 client (for Verify).
func (u *Uploader) Client() *Client { return u.c }

// Stats are the uploader's counters since it was made.
type Stats struct {
	Queued   int64 `json:"queued"`   // objects added to the outbox
	Uploaded int64 `json:"uploaded"` // objects written (or found written) to the bucket
	Failures int64 `json:"failures"` // failed attempts (uploads, holds, the lock check)
	Holds    int64 `json:"holds"`    // legal holds set or cleared
}

// Stats returns the counters.
func (u *Uploader) Stats() Stats {
	return Stats{Queued: u.queued.Load(), Uploaded: u.uploaded.Load(), Failures: u.failures.Load(), Holds: u.holds.Load()}
}

// Backlog reads the outbox; LastError is the uploader's last failure
// while it has not succeeded since (else an entry's).
func (u *Uploader) Backlog() (Backlog, error) {
	bl, err := ReadBacklog(u.a, u.db)
	u.mu.Lock()
	if u.lastErr != "" {
		bl.LastError = u.lastErr
	}
	u.mu.Unlock()
	return bl, err
}

// Notify wakes the uploader (new records, a hold): it looks at once
// instead of at its next poll.
func (u *Uploader) Notify() {
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// Run queues and uploads until ctx ends; it returns nil then. Failures
// are logged, counted and retried; they never end Run.
func (u *Uploader) Run(ctx context.Context) error {
	for {
		next := u.Flush(ctx)
		wait := u.opt.Poll
		if !next.IsZero() {
			if d := next.Sub(u.now()); d < wait {
				wait = max(d, 10*time.Millisecond)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-u.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// Flush queues the new records and tries every object and hold that is
// due once; it returns when the next one that failed is due (zero when
// none waits).
func (u *Uploader) Flush(ctx context.Context) time.Time {
	for {
		n, err := u.Queue()
		if err != nil {
			u.log.Error("worm: queueing records", "err", err)
			break
		}
		if n == 0 {
			break
		}
	}
	return u.pass(ctx)
}

// queueBatch is how many records one Queue transaction takes.
const queueBatch = 256

// Queue adds the objects of up to queueBatch records after the cursor to
// the outbox, moving the cursor in the same transaction; it returns how
// many records it took.
func (u *Uploader) Queue() (int, error) {
	head, _, err := u.a.Head()
	if err != nil {
		return 0, fmt.Errorf("worm: reading the archive's head: %w", err)
	}
	var cur uint64
	if err := u.db.Bolt().View(func(tx *bbolt.Tx) error { cur = getCursor(tx); return nil }); err != nil {
		return 0, fmt.Errorf("worm: reading the outbox: %w", err)
	}
	if cur >= head {
		return 0, nil
	}
	last := min(head, cur+queueBatch)
	now := u.now().UTC()
	type put struct {
		key string
		e   entry
	}
	var puts []put
	for id := cur + 1; id <= last; id++ {
		r, ok := recordAt(u.a, id)
		if !ok {
			continue // a gap: archive verify reports it
		}
		until := u.retainUntil(r, now)
		hold := u.opt.Held != nil && u.opt.Held(r)
		for k, e := range objectsOf(r) {
			e.RetainUntil, e.Hold, e.Queued = until, hold, now
			puts = append(puts, put{k, e})
		}
	}
	err = u.db.Commit(func(tx *bbolt.Tx) error {
		if getCursor(tx) != cur {
			return errConflict
		}
		b := tx.Bucket(bucketOutbox)
		for _, p := range puts {
			if err := addPut(b, p.key, p.e); err != nil {
				return err
			}
		}
		return putCursor(tx, last)
	})
	if errors.Is(err, errConflict) {
		return 0, nil // another Queue ran meanwhile
	}
	if err != nil {
		return 0, fmt.Errorf("worm: writing the outbox: %w", err)
	}
	u.queued.Add(int64(len(puts)))
	return int(last - cur), nil
}

var errConflict = errors.New("worm: outbox changed meanwhile")

// recordAt returns record id for its objects; ok is false when there is
// none (a gap). A record that is not a message (a seal) or cannot be read
// as one has no files: its own JSON is its only object, and StoredRecord
// reads it when it is uploaded.
func recordAt(a *archive.Archive, id uint64) (r *archive.Record, ok bool) {
	r, err := a.Get(id)
	switch {
	case errors.Is(err, archive.ErrNotFound):
		return nil, false
	case errors.Is(err, archive.ErrNotMessage):
		return &archive.Record{ID: id, Kind: archive.KindSeal}, true
	case err != nil:
		return &archive.Record{ID: id}, true
	}
	return r, true
}

// minLock is the shortest lock an object gets: a message whose retention
// already ended when it reaches the bucket (a late backfill) is still
// locked this long, as S3 wants a retain-until date in the future.
const minLock = 24 * time.Hour

func (u *Uploader) retainUntil(r *archive.Record, now time.Time) time.Time {
	if r.When().IsZero() { // no date to count from (a seal, an unreadable record): from now
		c := *r
		c.ArchivedAt = now
		r = &c
	}
	t := u.opt.RetainUntil(r)
	if floor := now.Add(minLock); t.Before(floor) {
		t = floor
	}
	return t
}

// Enqueue adds a file (a seal's timestamp token, a TSA certificate) to
// the outbox as files/NAME, locked until retainUntil. The file must stay
// unchanged at path; its SHA-256 is taken now and checked again before
// the upload.
func (u *Uploader) Enqueue(name, path string, retainUntil time.Time) error {
	sum, _, err := fileSHA256(path)
	if err != nil {
		return fmt.Errorf("worm: enqueue %s: %w", name, err)
	}
	now := u.now().UTC()
	if floor := now.Add(minLock); retainUntil.Before(floor) {
		retainUntil = floor
	}
	e := entry{Kind: KindFile, Path: path, SHA256: hex.EncodeToString(sum), RetainUntil: retainUntil, Queued: now}
	if err := u.db.Commit(func(tx *bbolt.Tx) error { return addPut(tx.Bucket(bucketOutbox), "files/"+name, e) }); err != nil {
		return fmt.Errorf("worm: enqueue %s: %w", name, err)
	}
	u.queued.Add(1)
	u.Notify()
	return nil
}

// SetLegalHold sets (on) or clears the legal hold on the objects of
// record r (QueueLegalHold) and wakes the uploader.
func (u *Uploader) SetLegalHold(r *archive.Record, on bool) error {
	if err := QueueLegalHold(u.db, r, on); err != nil {
		return err
	}
	u.Notify()
	return nil
}

// QueueLegalHold records in the outbox that the legal hold on the objects
// of record r is to be set (on) or cleared; the uploader does it in the
// background (a running service at once, else at its next start).
// Objects not written yet get it with their upload. It needs only the
// state file, opened read-write, so an admin command can call it when no
// service runs. An original or plaintext that several records share has
// one object: clear its hold only when no hold covers any of them.
func QueueLegalHold(db *state.DB, r *archive.Record, on bool) error {
	err := db.Commit(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		for key := range objectsOf(r) {
			pk := append(append([]byte{}, prefixPut...), key...)
			if v := b.Get(pk); v != nil {
				var e entry
				if json.Unmarshal(v, &e) == nil {
					e.Hold = on
					nv, err := json.Marshal(e)
					if err != nil {
						return err
					}
					if err := b.Put(pk, nv); err != nil {
						return err
					}
				}
			}
			v, err := json.Marshal(holdOp{On: on})
			if err != nil {
				return err
			}
			if err := b.Put(append(append([]byte{}, prefixHold...), key...), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("worm: legal hold on record %d: %w", r.ID, err)
	}
	return nil
}

// QueueLegalHolds is QueueLegalHold for the records ids of archive a
// (what a hold covers now, or no hold covers any more); an id that is no
// record is skipped.
func QueueLegalHolds(db *state.DB, a *archive.Archive, ids []uint64, on bool) error {
	for _, id := range ids {
		r, ok := recordAt(a, id)
		if !ok {
			continue
		}
		if err := QueueLegalHold(db, r, on); err != nil {
			return err
		}
	}
	return nil
}

// passBatch is how many outbox entries one read takes.
const passBatch = 64

// pass tries every due entry once: puts first, then holds (a hold needs
// its object). It returns when the next failed entry is due.
func (u *Uploader) pass(ctx context.Context) time.Time {
	var next time.Time
	note := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if err := u.checkLock(ctx); err != nil {
		if ctx.Err() == nil {
			u.mu.Lock()
			n := u.failing + 1
			u.mu.Unlock()
			t := u.failed("the bucket's Object Lock configuration", err, n)
			u.mu.Lock()
			u.downUntil = t // nothing is written meanwhile
			u.mu.Unlock()
			note(t)
		}
		return next
	}
	for _, prefix := range [][]byte{prefixPut, prefixHold} {
		after := append([]byte{}, prefix...)
		for {
			if ctx.Err() != nil {
				return next
			}
			u.mu.Lock()
			down := u.downUntil
			u.mu.Unlock()
			if u.now().Before(down) {
				note(down)
				return next
			}
			type item struct{ k, v []byte }
			var items []item
			_ = u.db.Bolt().View(func(tx *bbolt.Tx) error {
				c := tx.Bucket(bucketOutbox).Cursor()
				k, v := c.Seek(after)
				if bytes.Equal(k, after) && len(after) > len(prefix) {
					k, v = c.Next()
				}
				for ; k != nil && bytes.HasPrefix(k, prefix) && len(items) < passBatch; k, v = c.Next() {
					items = append(items, item{bytes.Clone(k), bytes.Clone(v)})
				}
				return nil
			})
			if len(items) == 0 {
				break
			}
			for _, it := range items {
				after = it.k
				key := string(it.k[len(prefix):])
				var t time.Time
				if bytes.Equal(prefix, prefixPut) {
					t = u.tryPut(ctx, key, it.v)
				} else {
					t = u.tryHold(ctx, key, it.v)
				}
				note(t)
				if u.isDown() {
					u.mu.Lock()
					note(u.downUntil)
					u.mu.Unlock()
					return next
				}
			}
		}
	}
	return next
}

// checkLock asks once (until it succeeds) whether the bucket has Object
// Lock enabled: nothing is written to a bucket without, where it could be
// deleted. The service checks at start too; this covers a server that
// was down then.
func (u *Uploader) checkLock(ctx context.Context) error {
	u.mu.Lock()
	ok := u.locked
	u.mu.Unlock()
	if ok {
		return nil
	}
	if _, err := u.c.ObjectLock(ctx); err != nil {
		return err
	}
	u.mu.Lock()
	u.locked = true
	u.mu.Unlock()
	return nil
}

func (u *Uploader) isDown() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.now().Before(u.downUntil)
}

// failed records a failed attempt: an unreachable server (or one that
// says try later) pauses every upload with a growing backoff; any other
// failure only postpones this entry. It returns when to try again.
func (u *Uploader) failed(what string, err error, attempts int) time.Time {
	u.failures.Add(1)
	u.mu.Lock()
	defer u.mu.Unlock()
	u.failing++
	u.lastErr = limit(what+": "+err.Error(), 300)
	d := backoff(u.opt.MinBackoff, u.opt.MaxBackoff, u.failing)
	if temporary(err) {
		u.downUntil = u.now().Add(d)
		u.log.Warn("worm: bucket unreachable, retrying", "object", what, "retry_in", d.Round(time.Millisecond), "err", err)
		return u.downUntil
	}
	d = backoff(u.opt.MinBackoff, 6*time.Hour, attempts)
	u.log.Error("worm: upload failed, retrying", "object", what, "attempts", attempts, "retry_in", d.Round(time.Millisecond), "err", err)
	return u.now().Add(d)
}

func (u *Uploader) succeeded() {
	u.mu.Lock()
	u.failing, u.downUntil, u.lastErr = 0, time.Time{}, ""
	u.mu.Unlock()
}

// backoff doubles min n-1 times, caps it at max and adds up to 20% jitter.
func backoff(lo, hi time.Duration, n int) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d + time.Duration(rand.Int64N(int64(d)/5+1))
}

// temporary tells a server that is down or busy from a refusal.
func temporary(err error) bool {
	var se *S3Error
	if errors.As(err, &se) {
		return se.Temporary()
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, context.DeadlineExceeded)
}

// tryPut writes one object unless the bucket has it already; on success
// the entry leaves the outbox (unless it changed meanwhile).
func (u *Uploader) tryPut(ctx context.Context, key string, raw []byte) time.Time {
	var e entry
	if err := json.Unmarshal(raw, &e); err != nil {
		u.log.Error("worm: dropping a corrupt outbox entry", "object", key, "err", err)
		u.remove(prefixPut, key, raw)
		return time.Time{}
	}
	if !e.NextTry.IsZero() && u.now().Before(e.NextTry) {
		return e.NextTry
	}
	err := u.put(ctx, key, e)
	if err == nil {
		u.succeeded()
		u.uploaded.Add(1)
		u.remove(prefixPut, key, raw)
		return time.Time{}
	}
	if ctx.Err() != nil {
		return time.Time{}
	}
	e.Attempts++
	e.LastError = limit(err.Error(), 300)
	t := u.failed(key, err, e.Attempts)
	if !temporary(err) {
		e.NextTry = t
	}
	u.update(prefixPut, key, raw, e)
	return t
}

func (u *Uploader) put(ctx context.Context, key string, e entry) error {
	body, size, sum, err := u.open(e)
	if err != nil {
		return err
	}
	if c, ok := body.(io.Closer); ok {
		defer c.Close()
	}
	if o, err := u.c.HeadObject(ctx, key, ""); err == nil {
		if bytes.Equal(o.SHA256, sum) && !o.RetainUntil.Before(e.RetainUntil) && o.Mode == u.opt.Mode {
			if e.Hold && !o.LegalHold {
				return u.c.SetLegalHold(ctx, key, o.VersionID, true)
			}
			return nil // written before (a crash after the upload, or a shared file)
		}
	} else if !errors.Is(err, ErrNoSuchKey) {
		return err
	}
	_, err = u.c.PutObject(ctx, Put{Key: key, Body: body, Size: size, SHA256: sum, Mode: u.opt.Mode, RetainUntil: e.RetainUntil, LegalHold: e.Hold, ContentType: contentType(e.Kind)})
	return err
}

func contentType(kind string) string {
	switch kind {
	case KindOriginal, KindPlaintext:
		return "message/rfc822"
	case KindRecord:
		return "application/json"
	}
	return "application/octet-stream"
}

// errLocal marks a local file that cannot be uploaded as it is.
var errLocal = errors.New("worm: local file")

// open returns the entry's bytes, their size and SHA-256, checked against
// the SHA-256 the entry expects.
func (u *Uploader) open(e entry) (io.ReadSeeker, int64, []byte, error) {
	var path string
	switch e.Kind {
	case KindRecord:
		b, err := u.a.StoredRecord(e.Record)
		if err != nil {
			return nil, 0, nil, fmt.Errorf("%w: %w", errLocal, err)
		}
		sum := sha256.Sum256(b)
		return bytes.NewReader(b), int64(len(b)), sum[:], nil
	case KindOriginal:
		path = u.a.OriginalPath(e.SHA256)
	case KindPlaintext:
		r, err := u.a.Get(e.Record)
		if err != nil {
			return nil, 0, nil, fmt.Errorf("%w: %w", errLocal, err)
		}
		if path, err = u.a.PlaintextPath(r); err != nil {
			return nil, 0, nil, fmt.Errorf("%w: %w", errLocal, err)
		}
	case KindFile:
		path = e.Path
	default:
		return nil, 0, nil, fmt.Errorf("%w: unknown kind %q", errLocal, e.Kind)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("%w: %w", errLocal, err)
	}
	sum, n, err := readerSHA256(f)
	if err != nil {
		f.Close()
		return nil, 0, nil, fmt.Errorf("%w: %s: %w", errLocal, path, err)
	}
	if got := hex.EncodeToString(sum); e.SHA256 != "" && got != e.SHA256 {
		f.Close()
		return nil, 0, nil, fmt.Errorf("%w: %s was changed (SHA-256 %s, want %s); not uploaded: run smimed archive verify", errLocal, path, got, e.SHA256)
	}
	return f, n, sum, nil
}

func readerSHA256(r io.Reader) ([]byte, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return h.Sum(nil), n, err
}

func fileSHA256(path string) ([]byte, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	return readerSHA256(f)
}

func (u *Uploader) tryHold(ctx context.Context, key string, raw []byte) time.Time {
	var h holdOp
	if err := json.Unmarshal(raw, &h); err != nil {
		u.remove(prefixHold, key, raw)
		return time.Time{}
	}
	if !h.NextTry.IsZero() && u.now().Before(h.NextTry) {
		return h.NextTry
	}
	var pending bool
	_ = u.db.Bolt().View(func(tx *bbolt.Tx) error {
		pending = tx.Bucket(bucketOutbox).Get(append(append([]byte{}, prefixPut...), key...)) != nil
		return nil
	})
	if pending {
		return time.Time{} // after the upload (puts go first in every pass)
	}
	err := u.c.SetLegalHold(ctx, key, "", h.On)
	if errors.Is(err, ErrNoSuchKey) && !h.On {
		err = nil // nothing to clear
	}
	if err == nil {
		u.succeeded()
		u.holds.Add(1)
		u.remove(prefixHold, key, raw)
		return time.Time{}
	}
	if ctx.Err() != nil {
		return time.Time{}
	}
	h.Attempts++
	h.LastError = limit(err.Error(), 300)
	t := u.failed("legal hold "+key, err, h.Attempts)
	if !temporary(err) {
		h.NextTry = t
	}
	u.update(prefixHold, key, raw, h)
	return t
}

// remove deletes an outbox entry unless it changed since it was read as
// old.
func (u *Uploader) remove(prefix []byte, key string, old []byte) {
	u.change(prefix, key, old, nil)
}

func (u *Uploader) update(prefix []byte, key string, old []byte, v any) {
	nv, err := json.Marshal(v)
	if err == nil {
		u.change(prefix, key, old, nv)
	}
}

func (u *Uploader) change(prefix []byte, key string, old, nv []byte) {
	k := append(append([]byte{}, prefix...), key...)
	err := u.db.Commit(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		if !bytes.Equal(b.Get(k), old) {
			return nil // changed meanwhile (a hold): the next pass sees it
		}
		if nv == nil {
			return b.Delete(k)
		}
		return b.Put(k, nv)
	})
	if err != nil {
		u.log.Error("worm: writing the outbox", "object", key, "err", err)
	}
}

// HoldObserver sets and clears the objects' legal holds when an archive
// hold is added or removed (archive.SetHoldObserver): queued in the
// outbox (QueueLegalHolds), so it works without a running uploader;
// notify (may be nil) wakes one.
func HoldObserver(db *state.DB, a *archive.Archive, notify func()) archive.HoldObserver {
	return holdObserver{db: db, a: a, notify: notify}
}

type holdObserver struct {
	db     *state.DB
	a      *archive.Archive
	notify func()
}

func (h holdObserver) HoldChanged(_ archive.Hold, added bool, ids []uint64) error {
	if err := QueueLegalHolds(h.db, h.a, ids, added); err != nil {
		return fmt.Errorf("WORM copy: legal holds: %w", err)
	}
	if h.notify != nil {
		h.notify()
	}
	return nil
}
