package archive

// The life of a user's copy (docs/verdicts.md, "The user's copy"): built
// from the archived plaintext (usercopy.go), looked for in the archive
// folder first (a crash between APPEND and recording it must not make a
// second copy), APPENDed, recorded (copystate.go); set aside as pending
// when the server refuses it, and tried again with the pending queue; after
// archive retry, the new version's copy replaces the old one.
//
// The IMAP side is a Mailbox: one connection of the account's own, which
// daemon/imapconn provides.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/emersion/go-message/textproto"
)

// Mailbox is what a Copier needs of an IMAP connection. Folder names are
// as configured; the connection places them on its server.
type Mailbox interface {
	// FindCopies returns the UIDs of the messages in folder whose header
	// has every field of want with exactly that value, creating the
	// folder when missing.
	FindCopies(ctx context.Context, folder string, want map[string]string) ([]uint32, error)
	// Append stores the message in the file at path into folder, unread,
	// with INTERNALDATE date, and returns its UID (0 when the server does
	// not say).
	Append(ctx context.Context, folder, path string, date time.Time) (uint32, error)
	// AppendMany stores msgs into folder in one command, all or none,
	// each unread with its date, and returns their UIDs in order (nil when
	// the server does not say). An error wrapping errors.ErrUnsupported
	// says the server cannot, and that nothing was sent. After any other
	// error the connection is not used again.
	AppendMany(ctx context.Context, folder string, msgs [][]byte, dates []time.Time) ([]uint32, error)
	// Remove deletes message uid from folder if its header still has
	// every field of want, and reports whether it is gone.
	Remove(ctx context.Context, folder string, uid uint32, want map[string]string) (bool, error)
	// Noop checks that the connection still works (timeout 0: the
	// connection's own).
	Noop(ctx context.Context, timeout time.Duration) error
	Close() error
}

// CopyMonitor is told how an account's copies fare (the daemon's status
// and metrics).
type CopyMonitor interface {
	// CopyRefused says the server refuses account's copies into folder for
	// reason, and reports whether that is news (no refusal before, or
	// another reason).
	CopyRefused(account, folder, reason string) bool
	// CopyStored says a copy of account's went through, and reports
	// whether copies were refused until then.
	CopyStored(account string) bool
}

// CopierConfig configures the Copier of one account.
type CopierConfig struct {
	Account    string
	Folder     string // archive_folder, as configured
	Mode       string // archive_folder_messages: UserCopyEncrypted, UserCopySMIME, UserCopyAll
	AuthservID string // of the copies' Authentication-Results
	TempDir    string // where a copy is written before its APPEND

	// Dial opens a connection for the copies. It is kept between copies
	// and dialled again when it failed.
	Dial func(ctx context.Context) (Mailbox, error)
	// Refused reports whether err is the server's refusal (a NO it would
	// repeat), as opposed to a failure of the connection. nil: none is.
	Refused func(err error) bool
	Monitor CopyMonitor  // nil: none
	Log     *slog.Logger // the account's
	// IdleClose, when set, closes the connection once it has been idle
	// that long (it holds a slot of the server's connection budget);
	// 0: it is kept. Contended, when set and true after a copy, closes it
	// at once (others wait for a slot).
	IdleClose time.Duration
	Contended func() bool
}

// Copier puts the users' copies of one account into its archive folder,
// over a connection of its own (the watchers' connections stay in IDLE on
// their folders). It is safe for concurrent use.
//
// One connection: Dovecot 2.3 (maildir) took an APPEND in 10 ms on one
// connection and in 48 ms on each of four, which wait for each other's
// lock on the folder (BenchmarkBackfill, issue 12), so more connections
// only made the copies slower. Copies that wait for the connection go
// together in one MULTIAPPEND when the server has it (see putQueued).
type Copier struct {
	arch *Archive
	cfg  CopierConfig
	log  *slog.Logger // the account's
	flog *slog.Logger // with the archive folder

	busy   chan struct{} // holds a token while the connection is in use
	mb     Mailbox
	used   time.Time // when mb last answered
	closed bool      // after Close: no new connection

	idleMu    sync.Mutex
	idleTimer *time.Timer // IdleClose's

	qmu   sync.Mutex
	queue []*queuedCopy // copies waiting for the connection, oldest first

	failMu   sync.Mutex
	failures map[uint64]int // record → copies failed in a row
}

// NewCopier returns the Copier for the account cfg describes.
func NewCopier(a *Archive, cfg CopierConfig) *Copier {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Copier{arch: a, cfg: cfg, log: log, flog: log.With("archive_folder", cfg.Folder), busy: make(chan struct{}, 1)}
}

// copySettle is how long after an unrecorded APPEND began its copy is
// looked for: a server may finish saving an APPEND whose client has gone
// (Courier was seen to need most of a second under load), and a search
// before that would miss it and make a second copy.
var copySettle = 10 * time.Second

// maxCopyAttempts is how often the copy of one message may fail in a row
// before it is set aside as pending, so that the folder moves on.
const maxCopyAttempts = 5

// ErrCopierClosed is returned by a Copier used after Close (its account
// stopped).
var ErrCopierClosed = errors.New("archive: the account's APPEND connection is closed (account stopped)")

// Copy puts the user's readable copy of rec into the archive folder unless
// that is not wanted or done already, and returns its state. A copy the
// server refuses, or that failed maxCopyAttempts times in a row, is
// recorded as CopyPending and left to UpdateCopies, which tries again: the
// archive holds the message, so its folder does not stop over its copy; a
// copy pending already is not tried here. Any other failure is returned
// (the message is delivered again). plaintext is rec's plaintext when the
// caller has it, else nil: it is read from the archive.
func (c *Copier) Copy(ctx context.Context, rec *Record, plaintext []byte) (CopyState, error) {
	return c.copy(ctx, rec, plaintext, false, true)
}

// CopyNew is Copy for a record the caller has just created (Put said
// created): no copy of it can be in the archive folder yet, since a copy
// names its record and is only appended after the record is committed, so
// none is looked for. That saves a SEARCH of the growing archive folder
// per message; a record handed over again (after a crash, possibly between
// the APPEND and recording it) goes through Copy, which looks.
func (c *Copier) CopyNew(ctx context.Context, rec *Record, plaintext []byte) (CopyState, error) {
	return c.copy(ctx, rec, plaintext, false, false)
}

// copy is Copy; with retry (UpdateCopies), a pending copy is tried again;
// look says whether a copy may be there already.
func (c *Copier) copy(ctx context.Context, rec *Record, pt []byte, retry, look bool) (CopyState, error) {
	if rec.IsOutgoing() || !WantCopy(c.cfg.Mode, rec.Report()) {
		// Outgoing mail has no mailbox it came from: the sender's client
		// keeps its own copy.
		return CopyState{Kind: CopyNotWanted}, nil
	}
	st, err := c.arch.GetCopy(rec.ID)
	switch {
	case err != nil:
		return CopyState{}, err
	case st != nil && (st.Kind == CopyStored || !retry):
		return *st, nil
	}
	began, inFlight, err := c.arch.AppendBegan(rec.ID)
	if err != nil {
		return CopyState{}, err
	}
	if inFlight {
		// An APPEND began and was not recorded (a crash, or a failure
		// midway): the copy may be in the folder, or still being saved
		// by the server for the client that went away. Look for it, once
		// that has had time to end.
		look = true
		if d := time.Until(began.Add(copySettle)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return CopyState{}, ctx.Err()
			}
		}
	}
	if pt == nil {
		if pt, err = c.arch.ReadPlaintext(rec); err != nil {
			return CopyState{}, err
		}
	}
	msg := UserCopyRecord(pt, rec.Report(), rec.Source(), c.cfg.AuthservID, rec.ID)
	date := rec.Received
	if date.IsZero() {
		date = rec.ArchivedAt
	}
	if err := c.arch.AppendBegins(rec.ID, time.Now()); err != nil {
		return CopyState{}, err
	}
	var uid uint32
	if look {
		uid, err = c.put(ctx, msg, date, true)
	} else {
		uid, err = c.putQueued(ctx, msg, date)
	}
	if err != nil {
		if !c.refused(err) && c.failedAgain(rec.ID) < maxCopyAttempts {
			return CopyState{}, err
		}
		return c.setAside(rec.ID, err)
	}
	c.failedClear(rec.ID)
	if c.cfg.Monitor != nil && c.cfg.Monitor.CopyStored(c.cfg.Account) {
		c.log.Info("user copies go through again", "record", rec.ID, "folder", c.cfg.Folder)
	}
	st = &CopyState{Kind: CopyStored, Folder: c.cfg.Folder, UID: uid, At: time.Now().UTC()}
	if err := c.arch.SetCopy(rec.ID, *st); err != nil {
		return CopyState{}, err
	}
	return *st, nil
}

// setAside records the copy of record id as pending for reason err and
// queues it: the message is done. The same refusal again is one problem,
// said once and shown by smimed status until a copy goes through.
func (c *Copier) setAside(id uint64, err error) (CopyState, error) {
	news := true
	if c.cfg.Monitor != nil {
		news = c.cfg.Monitor.CopyRefused(c.cfg.Account, c.cfg.Folder, err.Error())
	}
	if news {
		c.log.Error("user copy refused; the message is archived, its copy is tried again every 5m; the same refusal again is shown by smimed status, not logged", "record", id, "folder", c.cfg.Folder, "err", err)
	} else {
		c.log.Debug("user copy refused again for the same reason", "record", id, "folder", c.cfg.Folder)
	}
	st := CopyState{Kind: CopyPending, Folder: c.cfg.Folder, Reason: err.Error(), At: time.Now().UTC()}
	if err := c.arch.SetCopy(id, st); err != nil {
		return CopyState{}, err
	}
	if err := c.arch.CopyPending(id); err != nil {
		return CopyState{}, err
	}
	c.failedClear(id)
	return st, nil
}

func (c *Copier) refused(err error) bool {
	return c.cfg.Refused != nil && c.cfg.Refused(err)
}

// failedAgain counts one more failed copy of record id and returns the
// count.
func (c *Copier) failedAgain(id uint64) int {
	c.failMu.Lock()
	defer c.failMu.Unlock()
	if c.failures == nil {
		c.failures = map[uint64]int{}
	}
	c.failures[id]++
	return c.failures[id]
}

func (c *Copier) failedClear(id uint64) {
	c.failMu.Lock()
	defer c.failMu.Unlock()
	delete(c.failures, id)
}

// UpdateCopies brings the users' copies up to date for the records in
// PendingCopies: the new version's copy after Reprocess is appended, then
// the old version's copy is removed from the archive folder; a copy set
// aside as pending is tried again. What fails stays pending for the next
// call. copierFor returns the Copier of an account, nil when the account
// is no longer configured or has no archive folder.
func (a *Archive) UpdateCopies(ctx context.Context, copierFor func(account string) *Copier, log *slog.Logger) {
	ids, err := a.PendingCopies()
	if err != nil {
		log.Warn("cannot read the pending user copies", "err", err)
		return
	}
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		rec, err := a.Get(id)
		if err != nil {
			log.Warn("pending user copy: record unreadable", "record", id, "err", err)
			continue
		}
		var c *Copier
		if !rec.IsOutgoing() {
			c = copierFor(rec.Account)
		}
		if cur, err := a.Current(id); err == nil && cur.ID != id || c == nil {
			// A newer version has its own entry, or there is nowhere
			// to copy to any more.
			a.CopyDone(id)
			continue
		}
		st, err := c.copy(ctx, rec, nil, true, true)
		if err != nil {
			log.Warn("user copy not stored; will retry", "account", rec.Account, "record", id, "err", err)
			continue
		}
		if st.Kind == CopyPending {
			continue // refused again; stays pending
		}
		if st.Kind == CopyStored && rec.Supersedes != 0 {
			if err := c.removeOld(ctx, rec, log); err != nil {
				log.Warn("old user copy not removed; will retry", "account", rec.Account, "record", id, "err", err)
				continue
			}
		}
		log.Info("user copy updated after re-processing", "account", rec.Account, "record", id, "supersedes", rec.Supersedes, "copy", st.String())
		if err := a.CopyDone(id); err != nil {
			log.Warn("pending user copy not cleared", "record", id, "err", err)
		}
	}
}

// removeOld removes the copy of the newest earlier version of rec that has
// one (versions retried while the daemon was stopped may have none),
// unless it is the very copy rec now has.
func (c *Copier) removeOld(ctx context.Context, rec *Record, log *slog.Logger) error {
	now, err := c.arch.GetCopy(rec.ID)
	if err != nil {
		return err
	}
	for id, hops := rec.Supersedes, 0; id != 0 && hops < 100; hops++ {
		old, err := c.arch.Get(id)
		if err != nil {
			return err
		}
		st, err := c.arch.GetCopy(id)
		if err != nil {
			return err
		}
		if st == nil || st.Kind != CopyStored || st.UID == 0 {
			id = old.Supersedes
			continue
		}
		if now != nil && st.Folder == now.Folder && st.UID == now.UID {
			return nil
		}
		want := map[string]string{
			UserCopySourceField: old.Source().Marker(),
			UserCopyRecordField: strconv.FormatUint(old.ID, 10),
		}
		gone, err := c.remove(ctx, st.Folder, st.UID, want)
		if err != nil {
			return err
		}
		if !gone {
			log.Info("old user copy left in place: gone already, another message under its UID, or only flagged \\Deleted (no UIDPLUS)", "account", rec.Account, "folder", st.Folder, "uid", st.UID)
		}
		return nil
	}
	return nil
}

// markerFields are the header fields of a copy that identify it: the
// message it came from and the archive record (version) it shows.
var markerFields = []string{UserCopySourceField, UserCopyRecordField}

// put appends msg unless (with look) a copy with the same marker fields is
// there already (a crash between APPEND and recording it), and returns the
// copy's UID (0 when the server does not say).
func (c *Copier) put(ctx context.Context, msg []byte, date time.Time, look bool) (uint32, error) {
	want, err := copyMarker(msg)
	if err != nil {
		return 0, err
	}
	if err := c.lock(ctx); err != nil {
		return 0, err
	}
	defer c.unlock()
	return c.putLocked(ctx, msg, want, date, look)
}

func (c *Copier) putLocked(ctx context.Context, msg []byte, want map[string]string, date time.Time, look bool) (uint32, error) {
	var uid uint32
	err := c.withLocked(ctx, func(mb Mailbox) error {
		var err error
		uid, err = c.putOn(ctx, mb, msg, want, date, look)
		return err
	})
	return uid, err
}

// A queuedCopy waits for the copier's connection.
type queuedCopy struct {
	msg  []byte
	date time.Time
	done chan struct{} // closed when uid and err are set
	uid  uint32
	err  error
}

// Bounds of one MULTIAPPEND.
const (
	maxBatchCopies = 64
	maxBatchBytes  = 16 << 20
)

// putQueued appends msg, a copy that no earlier APPEND can have stored,
// together with the others waiting for the connection: whoever gets the
// connection takes the waiting copies, oldest first, and stores them with
// one MULTIAPPEND (RFC 3502) when there are several and the server has
// it, else one by one. The server stores a MULTIAPPEND all or none, so
// when it refuses one it is done again one by one, and only the copy it
// refuses is set aside. Copies that need looking for first (put with
// look) are never batched.
func (c *Copier) putQueued(ctx context.Context, msg []byte, date time.Time) (uint32, error) {
	q := &queuedCopy{msg: msg, date: date, done: make(chan struct{})}
	c.qmu.Lock()
	c.queue = append(c.queue, q)
	c.qmu.Unlock()
	select {
	case <-q.done: // taken with another's batch while we waited
		return q.uid, q.err
	case c.busy <- struct{}{}:
	case <-ctx.Done():
		if c.dequeue(q) {
			return 0, ctx.Err()
		}
		<-q.done // in a batch already: its outcome is ours
		return q.uid, q.err
	}
	defer c.unlock()
	for {
		select {
		case <-q.done:
			return q.uid, q.err
		default:
		}
		c.appendBatchLocked(ctx, c.takeBatch())
	}
}

// takeBatch takes the oldest waiting copies, within the bounds of one
// MULTIAPPEND (a copy larger than maxBatchBytes goes alone).
func (c *Copier) takeBatch() []*queuedCopy {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	n, size := 0, 0
	for n < len(c.queue) && n < maxBatchCopies {
		if n > 0 && size+len(c.queue[n].msg) > maxBatchBytes {
			break
		}
		size += len(c.queue[n].msg)
		n++
	}
	batch := slices.Clone(c.queue[:n])
	c.queue = slices.Delete(c.queue, 0, n)
	return batch
}

// dequeue removes q from the waiting copies, and reports whether it was
// still there.
func (c *Copier) dequeue(q *queuedCopy) bool {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	i := slices.Index(c.queue, q)
	if i < 0 {
		return false
	}
	c.queue = slices.Delete(c.queue, i, i+1)
	return true
}

// appendBatchLocked stores the copies of batch and tells each its
// outcome.
func (c *Copier) appendBatchLocked(ctx context.Context, batch []*queuedCopy) {
	finish := func(q *queuedCopy, uid uint32, err error) {
		q.uid, q.err = uid, err
		close(q.done)
	}
	if len(batch) > 1 {
		msgs := make([][]byte, len(batch))
		dates := make([]time.Time, len(batch))
		for i, q := range batch {
			msgs[i], dates[i] = q.msg, q.date
		}
		var uids []uint32
		err := c.withLocked(ctx, func(mb Mailbox) error {
			var err error
			uids, err = mb.AppendMany(ctx, c.cfg.Folder, msgs, dates)
			return err
		})
		switch {
		case err == nil:
			for i, q := range batch {
				var uid uint32
				if uids != nil {
					uid = uids[i]
				}
				finish(q, uid, nil)
			}
			return
		case errors.Is(err, errors.ErrUnsupported):
			// One by one below.
		case c.refused(err):
			c.flog.Info("the server refused a MULTIAPPEND; its copies are appended one by one", "copies", len(batch), "err", err)
		default:
			// Not stored, or stored for all we know: each copy's
			// message comes again and looks first (AppendBegan).
			for _, q := range batch {
				finish(q, 0, err)
			}
			return
		}
	}
	for _, q := range batch {
		want, err := copyMarker(q.msg)
		if err != nil {
			finish(q, 0, err)
			continue
		}
		uid, err := c.putLocked(ctx, q.msg, want, q.date, false)
		finish(q, uid, err)
	}
}

func (c *Copier) putOn(ctx context.Context, mb Mailbox, msg []byte, want map[string]string, date time.Time, look bool) (uint32, error) {
	if look {
		found, err := mb.FindCopies(ctx, c.cfg.Folder, want)
		if err != nil {
			return 0, safeAgain{err}
		}
		if len(found) > 0 {
			c.flog.Info("user copy already in the archive folder", "copy_uid", found[0])
			return found[0], nil
		}
	}
	f, err := os.CreateTemp(c.cfg.TempDir, "copy-*.eml")
	if err != nil {
		return 0, fmt.Errorf("user copy: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(msg)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("user copy: %w", err)
	}
	return mb.Append(ctx, c.cfg.Folder, f.Name(), date)
}

// copyMarker reads the marker fields out of a copy's header.
func copyMarker(msg []byte) (map[string]string, error) {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(msg)))
	if err != nil && h.Len() == 0 {
		return nil, fmt.Errorf("user copy: unreadable header: %w", err)
	}
	want := map[string]string{}
	for _, f := range markerFields {
		v := h.Get(f)
		if v == "" {
			return nil, fmt.Errorf("user copy: no %s field", f)
		}
		want[f] = v
	}
	return want, nil
}

// remove deletes a copy made earlier from folder, if that UID still holds
// it (its marker fields are want).
func (c *Copier) remove(ctx context.Context, folder string, uid uint32, want map[string]string) (bool, error) {
	if err := c.lock(ctx); err != nil {
		return false, err
	}
	defer c.unlock()
	var gone bool
	err := c.withLocked(ctx, func(mb Mailbox) error {
		var err error
		gone, err = mb.Remove(ctx, folder, uid, want)
		if err != nil {
			return safeAgain{err} // STORE \Deleted and UID EXPUNGE repeat harmlessly
		}
		return nil
	})
	return gone, err
}

// lock takes the copier's connection for its caller.
func (c *Copier) lock(ctx context.Context) error {
	select {
	case c.busy <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Copier) unlock() {
	if c.cfg.Contended != nil && c.mb != nil && c.cfg.Contended() {
		c.mb.Close() // others wait for the server's connection budget
		c.mb = nil
	}
	<-c.busy
	if c.cfg.IdleClose > 0 {
		c.idleMu.Lock()
		if c.idleTimer == nil {
			c.idleTimer = time.AfterFunc(c.cfg.IdleClose, c.closeIdle)
		} else {
			c.idleTimer.Reset(c.cfg.IdleClose)
		}
		c.idleMu.Unlock()
	}
}

// closeIdle closes the connection when nobody used it for IdleClose; a
// copier busy now is left alone (its unlock sets the timer again).
func (c *Copier) closeIdle() {
	select {
	case c.busy <- struct{}{}:
	default:
		return
	}
	defer func() { <-c.busy }()
	if c.mb != nil && time.Since(c.used) >= c.cfg.IdleClose {
		c.mb.Close()
		c.mb = nil
	}
}

// withLocked runs fn on the copier's connection, which the caller holds
// (lock). The connection is kept between
// copies, and the server may have closed it meanwhile (a restart, an idle
// timeout): when fn fails on a kept connection with an error it marked
// safe to repeat (safeAgain: nothing was sent that could have changed the
// folder), it runs once more on a new one. An APPEND that failed midway is
// not repeated here: the server may still store it, and a search at once
// could miss it; the message's next delivery searches again, once the
// APPEND had time to end (copySettle). After any error the connection is
// dropped.
func (c *Copier) withLocked(ctx context.Context, fn func(Mailbox) error) error {
	kept := c.mb != nil
	for {
		mb, err := c.mailboxLocked(ctx)
		if err != nil {
			return err
		}
		if kept && time.Since(c.used) > copyCheckAfter {
			// Idle a while: the server may have closed it. A NOOP is
			// safe to repeat; an APPEND that fails may still be stored.
			if err = mb.Noop(ctx, 0); err != nil {
				err = safeAgain{err}
			}
		}
		if err == nil {
			err = fn(mb)
		}
		if err == nil {
			c.used = time.Now()
			return nil
		}
		mb.Close()
		c.mb = nil
		var again safeAgain
		if !kept || !errors.As(err, &again) || c.refused(err) || ctx.Err() != nil {
			return err
		}
		kept = false
	}
}

// mailboxLocked returns the copier's connection, dialling when needed.
func (c *Copier) mailboxLocked(ctx context.Context) (Mailbox, error) {
	if c.closed {
		return nil, ErrCopierClosed
	}
	if c.mb == nil {
		mb, err := c.cfg.Dial(ctx)
		if err != nil {
			return nil, err
		}
		c.mb = mb
	}
	return c.mb, nil
}

// copyCheckAfter is how long the copier's connection may have been idle
// before it is checked with a NOOP ahead of the next command: while a
// backlog is copied it never is; a message after a pause costs one round
// trip more, and a server that restarted meanwhile is noticed safely
// instead of by a failed APPEND (which stops the folder for a retry).
var copyCheckAfter = time.Second

// safeAgain marks an error after which the copier's operation may simply
// be repeated on a new connection.
type safeAgain struct{ error }

func (e safeAgain) Unwrap() error { return e.error }

// Close closes the connection; the Copier dials no new one.
func (c *Copier) Close() {
	c.idleMu.Lock()
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
	c.idleMu.Unlock()
	c.busy <- struct{}{}
	defer c.unlock()
	c.closed = true
	if c.mb != nil {
		c.mb.Close()
		c.mb = nil
	}
}
