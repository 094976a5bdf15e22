package daemon

// This file holds the per-folder watch loop: it connects to the IMAP
// server, EXAMINEs one folder, hands every message above the folder's
// checkpoint to a Sink exactly once per successful delivery, advances the
// checkpoint in UID order (Tracker) and then waits for new mail in IDLE (or
// polls). The folder is only ever EXAMINEd and fetched with BODY.PEEK, so it
// is never changed.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/smimed/smimed/daemon/imapconn"
)

// ErrTemporary marks a Sink error as temporary: the same message is tried
// again later and the folder's checkpoint does not pass it meanwhile.
var ErrTemporary = errors.New("daemon: temporary failure")

// Temporary wraps err so that errors.Is(err, ErrTemporary) holds.
func Temporary(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrTemporary, err)
}

// Sink receives each fetched message. It must be idempotent on (Account,
// Folder, UIDValidity, UID): after a crash or a temporary failure the same
// message may be handed over again. An error for which errors.Is(err,
// ErrTemporary) holds means "retry this message later, stop this folder for
// now"; any other error is a permanent problem with the message that the
// sink has already recorded, and the checkpoint moves on.
//
// The context given to Deliver is not cancelled when the watcher is told to
// stop: messages in hand are finished.
type Sink interface {
	Deliver(ctx context.Context, m Message) error
}

// Message is one fetched message.
type Message struct {
	Account, Folder  string
	UIDValidity, UID uint32
	// Path is a temporary file with the message; the sink may read it
	// during Deliver, the watcher removes it after Deliver returns. It is
	// "" when TooLarge, or when the message is in Data.
	Path string
	// Data is the message when it was small enough to be fetched into
	// memory (imapconn.MemoryBodyMax); the sink must not keep it.
	Data         []byte
	Size         int64 // bytes in Path or Data, or the server's RFC822.SIZE when TooLarge
	InternalDate time.Time
	TooLarge     bool // larger than MaxMessageSize: the body was not downloaded
}

// WatchConfig configures the watcher of one folder.
type WatchConfig struct {
	Account, Folder string
	IMAP            imapconn.Config
	TempDir         string // state_dir/tmp
	MaxMessageSize  int64  // 0: no limit
	// Pool is the worker pool shared with other folders (see pool.go).
	// When nil the folder gets a pool of its own of Workers slots
	// (default 1).
	Pool    *Pool
	Workers int

	IdleRestart      time.Duration // leave and re-enter IDLE after this; default 25m
	LivenessInterval time.Duration // NOOP at least this often; default 5m
	PollInterval     time.Duration // without IDLE, poll this often; default 60s

	// Backfill is what to do at the first start (no checkpoint yet):
	// "all" (the default) from UID 1, "none" only mail arriving from now on
	// (UIDNEXT-1), "since:2006-01-02" from the first message whose
	// INTERNALDATE is on or after that day (UTC), see backfillSince.
	Backfill string
	Logger   *slog.Logger
	Metrics  *Metrics // folder states and backlog; nil: not recorded
	// Budget bounds the connections to the server (max_connections): a
	// folder it gives no IDLE slot is polled. nil: no bound, IDLE.
	Budget *connBudget
}

// Watcher watches one folder; see Run.
type Watcher struct {
	cfg  WatchConfig
	cps  *Checkpoints
	sink Sink
	log  *slog.Logger

	backoff   *Backoff
	authRetry time.Duration

	// tracker survives reconnects while the UIDVALIDITY stays the same, so
	// messages already done above a stuck checkpoint are not handed over
	// again within this process.
	tracker     *Tracker
	uidValidity uint32

	commitMu sync.Mutex
	stored   uint32    // highest checkpoint stored under uidValidity
	storedAt time.Time // when it was stored
	// flushTimer writes a checkpoint whose write done skipped.
	flushTimer *time.Timer
	listed     map[uint32]bool // the last listing's UIDs not done yet: the backlog

	// polledNext is the UIDNEXT of the last full poll: a STATUS that says
	// the same finds nothing new even when the highest UID went before it
	// was archived (the checkpoint then stays below UIDNEXT-1).
	polledNext uint32

	// quietMisses counts new mail found after an IDLE that ended without a
	// word from the server (its IDLE polls); said once, at the second.
	quietMisses int

	// onReady, for tests, is called in every session once the starting
	// checkpoint is known, before any message is listed.
	onReady func(start uint32)
}

// NewWatcher returns a Watcher of cfg.Account's cfg.Folder that keeps its
// checkpoint in cps and hands messages to sink.
func NewWatcher(cfg WatchConfig, cps *Checkpoints, sink Sink) *Watcher {
	if cfg.Pool == nil {
		cfg.Pool = NewPool(cfg.Workers)
	}
	if cfg.IdleRestart <= 0 {
		cfg.IdleRestart = 25 * time.Minute
	}
	if cfg.LivenessInterval <= 0 {
		cfg.LivenessInterval = 5 * time.Minute
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 60 * time.Second
	}
	if cfg.Backfill == "" {
		cfg.Backfill = "all"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Watcher{
		cfg:       cfg,
		cps:       cps,
		sink:      sink,
		log:       log.With("account", cfg.Account, "folder", cfg.Folder),
		backoff:   NewBackoff(FullJitter),
		authRetry: AuthRetry,
	}
}

// errStopped ends a session after a temporary sink failure.
var errStopped = errors.New("daemon: folder stopped after a temporary delivery failure")

// errPolled ends a polled folder's session: checked, and what was new
// handed over; the next poll comes after PollInterval.
var errPolled = errors.New("daemon: folder polled")

// errPermanent marks errors that retrying cannot fix (configuration).
type errPermanent struct{ error }

func (e errPermanent) Unwrap() error { return e.error }

// Run watches the folder until ctx ends, then finishes the messages in
// hand, stores the checkpoint, logs out and returns nil. Connection and
// server errors are retried with Backoff, refused logins after AuthRetry.
// It returns an error only for problems that retrying cannot fix: an
// invalid configuration (imapconn.ErrConfig, a bad Backfill) or an unusable
// checkpoint key.
func (w *Watcher) Run(ctx context.Context) error {
	if _, err := parseBackfill(w.cfg.Backfill); err != nil {
		return err
	}
	slots := w.cfg.Pool.Join()
	defer slots.Leave()
	acc, folder, mx := w.cfg.Account, w.cfg.Folder, w.cfg.Metrics
	mx.FolderConnecting(acc, folder)
	authFailing := false
	// A folder the connection budget gives no IDLE is polled: a
	// connection for each check, given back at once.
	idle := w.cfg.Budget.TryIdle()
	if idle {
		defer w.cfg.Budget.ReleaseIdle()
	} else {
		w.log.Info("folder polled: the server's connection budget (daemon.max_connections) holds no IDLE for it", "poll_interval", w.cfg.PollInterval)
	}
	for {
		if ctx.Err() != nil {
			return nil
		}
		started := time.Now()
		release := func() {}
		if !idle {
			if err := w.cfg.Budget.Acquire(ctx); err != nil {
				return nil
			}
			release = sync.OnceFunc(w.cfg.Budget.Release)
		}
		err := w.session(ctx, slots, !idle, release)
		release()
		w.flush() // the messages done in the session, whatever ended it
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errPolled) {
			authFailing = false
			w.backoff.Reset()
			mx.FolderPolled(acc, folder, w.cfg.PollInterval)
			if sleepCtx(ctx, w.cfg.PollInterval) != nil {
				return nil
			}
			continue
		}
		var perm errPermanent
		switch {
		case errors.As(err, &perm), errors.Is(err, imapconn.ErrConfig), errors.Is(err, ErrCheckpointKey):
			w.log.Error("folder watcher stopped", "err", err)
			mx.FolderError(acc, folder, err)
			mx.FolderDown(acc, folder, stateStopped, 0)
			return err
		case errors.Is(err, imapconn.ErrAuth):
			if !authFailing {
				w.log.Error("imap login refused; retrying later", "retry_in", w.authRetry, "err", err)
			} else {
				w.log.Debug("imap login still refused", "retry_in", w.authRetry, "err", err)
			}
			authFailing = true
			mx.FolderError(acc, folder, err)
			mx.FolderDown(acc, folder, stateLoginRefused, w.authRetry)
			if sleepCtx(ctx, w.authRetry) != nil {
				return nil
			}
			continue
		}
		authFailing = false // got past login: a later refusal is news again
		if err == nil {
			mx.FolderDown(acc, folder, stateReconnecting, 0)
			continue
		}
		if time.Since(started) > time.Minute {
			w.backoff.Reset()
		}
		d := w.backoff.Next()
		mx.FolderError(acc, folder, err)
		mx.FolderDown(acc, folder, stateReconnecting, d)
		if errors.Is(err, errStopped) {
			w.log.Info("retrying from the checkpoint later", "retry_in", d)
		} else {
			w.log.Warn("folder watcher session ended", "err", err, "retry_in", d)
		}
		if sleepCtx(ctx, d) != nil {
			return nil
		}
	}
}

// parseBackfill checks a Backfill setting; for "since:" it returns the day.
func parseBackfill(s string) (time.Time, error) {
	switch s {
	case "all", "none":
		return time.Time{}, nil
	}
	if day, ok := strings.CutPrefix(s, "since:"); ok {
		t, err := time.Parse("2006-01-02", day)
		if err == nil {
			return t, nil
		}
	}
	return time.Time{}, errPermanent{fmt.Errorf("daemon: backfill %q: want all, none or since:YYYY-MM-DD", s)}
}

// session is one connection: it returns why it ended.
//
// A polled session (poll) first asks STATUS and ends at once when nothing
// came; else it hands over what is new, closes the connection and gives
// its budget slot back (release) before waiting for the deliveries, and
// ends with errPolled.
func (w *Watcher) session(ctx context.Context, slots *PoolFolder, poll bool, release func()) error {
	conn, err := imapconn.Dial(ctx, w.cfg.IMAP)
	if err != nil {
		return err
	}
	defer conn.Close()
	if poll && w.tracker != nil {
		st, err := conn.Status(ctx, w.cfg.Folder)
		if err != nil {
			return err
		}
		nothingNew := st.UIDNext > 0 && st.UIDNext-1 <= w.tracker.Checkpoint() || st.UIDNext == w.polledNext
		if st.UIDValidity == w.uidValidity && nothingNew && len(w.tracker.Retryable()) == 0 {
			w.cfg.Metrics.Checked(w.cfg.Account, w.cfg.Folder)
			return errPolled
		}
	}
	mb, err := conn.Examine(ctx, w.cfg.Folder)
	if err != nil {
		return err
	}
	if err := w.start(ctx, conn, mb); err != nil {
		return err
	}
	if w.onReady != nil {
		w.onReady(w.tracker.Checkpoint())
	}
	w.cfg.Metrics.FolderUp(w.cfg.Account, w.cfg.Folder)

	// sctx ends the session early after a temporary sink failure.
	sctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	var wg sync.WaitGroup
	defer wg.Wait()
	nextNoop := time.Now().Add(w.cfg.LivenessInterval)
	var highest uint32 // the highest UID listed so far in this session
	quiet := false     // the last wait was an IDLE the server said nothing in

	for {
		uids, err := conn.UIDsAfter(sctx, w.tracker.Checkpoint())
		if err != nil {
			return w.ended(ctx, sctx, &wg, err)
		}
		if n := len(uids); n > 0 {
			if quiet && highest > 0 && uids[n-1] > highest {
				w.idleMissed()
			}
			highest = max(highest, uids[n-1])
		}
		w.cfg.Metrics.Checked(w.cfg.Account, w.cfg.Folder)
		w.setListed(uids)
		// A message that failed earlier and is no longer in the folder
		// (moved or deleted meanwhile) cannot be retried: it must not hold
		// the checkpoint back for ever.
		for _, uid := range w.tracker.Retryable() {
			if slices.Contains(uids, uid) {
				continue
			}
			// Not listed: confirm before skipping (a short answer alone
			// must not move the checkpoint past an unarchived message).
			there, err := conn.HasUID(sctx, uid)
			if err != nil {
				return w.ended(ctx, sctx, &wg, err)
			}
			if !there {
				w.log.Info("a message that failed earlier is no longer in the folder; skipped", "uid", uid, "uidvalidity", w.uidValidity)
				w.done(uid)
			}
		}
		if err := w.fetchAll(ctx, sctx, stop, conn, slots, &wg, uids); err != nil {
			return w.ended(ctx, sctx, &wg, err)
		}
		if poll {
			w.polledNext = mb.UIDNext
			// Everything new is in hand: the connection goes back to the
			// budget before the deliveries (whose copies may need it).
			conn.Close()
			release()
			if err := w.ended(ctx, sctx, &wg, nil); err != nil {
				return err
			}
			return errPolled
		}

		// Wait for new mail, with a NOOP at least every LivenessInterval.
		if now := time.Now(); !now.Before(nextNoop) {
			if err := conn.Noop(sctx, 0); err != nil {
				return w.ended(ctx, sctx, &wg, err)
			}
			w.cfg.Metrics.Checked(w.cfg.Account, w.cfg.Folder)
			nextNoop = now.Add(w.cfg.LivenessInterval)
		}
		wait := min(w.cfg.IdleRestart, time.Until(nextNoop))
		woke, err := conn.Idle(sctx, wait)
		quiet = err == nil && !woke
		if errors.Is(err, imapconn.ErrNoIdle) {
			err = sleepCtx(sctx, min(w.cfg.PollInterval, time.Until(nextNoop)))
		}
		if err != nil {
			return w.ended(ctx, sctx, &wg, err)
		}
	}
}

// Batches of messages are fetched with one pair of commands each
// (imapconn.FetchMany), as many as the pool gives slots for at once, up to
// these bounds.
const (
	fetchBatchCount = 64
	fetchBatchBytes = 16 << 20 // a larger message comes alone
	// batchWait is the longest a batch waits for more slots than the
	// first: under a backlog they come free within milliseconds.
	batchWait = 50 * time.Millisecond
)

// fetchAll fetches the listed uids in batches and hands each message to a
// delivery goroutine as soon as it is in its file, so the engine works on
// a batch's first messages while the rest arrive. Every message holds a
// pool slot from before its fetch until its delivery ends. It returns nil
// when all were handed over, else why the session must end (the messages
// not handed over are marked Failed: the checkpoint waits for them).
func (w *Watcher) fetchAll(ctx, sctx context.Context, stop context.CancelCauseFunc, conn *imapconn.Conn, slots *PoolFolder, wg *sync.WaitGroup, uids []uint32) error {
	for next := 0; next < len(uids); {
		// A batch waits a little for half the folder's share of the pool
		// (or what is left to fetch, if less): one or two messages a
		// batch would pay the two commands' round trips for each, and the
		// fetch would be what the backlog waits for. The other half is
		// being processed meanwhile. The wait is bounded: the share may
		// shrink meanwhile (another folder, a reload), and slots held
		// while waiting for one the pool will not give would never come
		// back.
		if slots.Acquire(sctx) != nil {
			return nil // the session ends (ended tells why)
		}
		held := 1
		if want := min(len(uids)-next, fetchBatchCount, max(1, slots.Share()/2)); held < want {
			actx, cancel := context.WithTimeout(sctx, batchWait)
			for held < want && slots.Acquire(actx) == nil {
				held++
			}
			cancel()
		}
		var batch []uint32
		for ; next < len(uids) && len(batch) < fetchBatchCount; next++ {
			if len(batch) == held {
				if !slots.TryAcquire() {
					break
				}
				held++
			}
			if w.tracker.Dispatch(uids[next]) { // else in flight or done already
				batch = append(batch, uids[next])
			}
		}
		var bytes int64
		admit := func(f *imapconn.Fetched) bool {
			if bytes > 0 && bytes+f.Size > fetchBatchBytes {
				return false
			}
			bytes += f.Size
			return true
		}
		handed := map[uint32]bool{}
		missed, err := conn.FetchMany(sctx, batch, w.cfg.TempDir, w.cfg.MaxMessageSize, admit, func(f *imapconn.Fetched) {
			handed[f.UID] = true
			held--
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer slots.Release()
				w.deliver(ctx, stop, f)
			}()
		})
		for range held {
			slots.Release()
		}
		if len(missed.Later) > 0 {
			// Left for the next batch: back to the first of them.
			for _, uid := range missed.Later {
				w.tracker.Failed(uid)
			}
			next = slices.Index(uids, missed.Later[0])
		}
		if err == nil {
			err = w.missed(sctx, conn, missed)
		}
		if err != nil {
			for _, uid := range batch {
				if !handed[uid] {
					w.tracker.Failed(uid)
				}
			}
			return err
		}
	}
	return nil
}

// missed deals with the messages of a batch the server returned nothing
// for: a message a search confirms is gone is skipped (done), never one
// only the empty FETCH answer says is gone; any other ends the session, to
// be fetched again.
func (w *Watcher) missed(ctx context.Context, conn *imapconn.Conn, m imapconn.Missed) error {
	for _, uid := range m.Gone {
		there, err := conn.HasUID(ctx, uid)
		if err != nil {
			return err
		}
		if there {
			return fmt.Errorf("uid %d: the server returned nothing for a message it still lists: %w", uid, imapconn.ErrGone)
		}
		w.log.Info("message expunged before it was fetched; skipped", "uid", uid, "uidvalidity", w.uidValidity)
		w.done(uid)
	}
	if len(m.NoBody) > 0 {
		return fmt.Errorf("%w: UID %d: the server returned no body for an existing message", imapconn.ErrNoBody, m.NoBody[0])
	}
	return nil
}

// idleMissed notes new mail that IDLE did not announce (found by the
// search after an IDLE the server said nothing in). One such message may
// have come just as the wait ended; the second means the server's IDLE
// only polls, which is said once, with the settings that fix it.
func (w *Watcher) idleMissed() {
	w.quietMisses++
	if w.quietMisses == 2 {
		w.log.Warn("the server did not announce new mail during IDLE (its IDLE polls): new mail waits for liveness_interval; "+
			"Cyrus: run idled (cyrus.conf DAEMON idled); Courier: IMAP_ENHANCEDIDLE=1; or lower liveness_interval",
			"liveness_interval", w.cfg.LivenessInterval)
	}
}

// ended waits for the messages in hand and tells why the session ends.
func (w *Watcher) ended(ctx, sctx context.Context, wg *sync.WaitGroup, err error) error {
	w.flush() // what is done already, before waiting for a slow message
	wg.Wait()
	w.flush()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if cause := context.Cause(sctx); errors.Is(cause, errStopped) {
		return cause
	}
	if err == nil {
		err = context.Cause(sctx)
	}
	return err
}

// start sets the tracker for the examined folder: from the stored
// checkpoint, from 0 after a UIDVALIDITY change, or from Backfill at the
// very first start (stored at once, so a restart does not move it).
func (w *Watcher) start(ctx context.Context, conn *imapconn.Conn, mb imapconn.Mailbox) error {
	cp, ok, err := w.cps.Get(w.cfg.Account, w.cfg.Folder)
	if err != nil {
		return err
	}
	var from uint32
	switch {
	case ok && cp.UIDValidity == mb.UIDValidity:
		if w.tracker != nil && w.uidValidity == mb.UIDValidity && w.tracker.Checkpoint() >= cp.UID {
			return nil // keep what this process knows is done
		}
		from = cp.UID
	case ok:
		w.log.Warn("UIDVALIDITY changed: the folder was recreated or renumbered; processing every message again from UID 1",
			"old_uidvalidity", cp.UIDValidity, "new_uidvalidity", mb.UIDValidity, "old_checkpoint", cp.UID)
		from = 0
	default:
		from, err = w.backfill(ctx, conn, mb)
		if err != nil {
			return err
		}
		w.log.Info("first start of this folder", "backfill", w.cfg.Backfill, "checkpoint", from, "uidvalidity", mb.UIDValidity)
	}
	if !ok || cp.UIDValidity != mb.UIDValidity || cp.UID != from {
		if err := w.cps.Set(w.cfg.Account, w.cfg.Folder, Checkpoint{UIDValidity: mb.UIDValidity, UID: from}); err != nil {
			return err
		}
	}
	w.commitMu.Lock()
	w.tracker = NewTracker(from)
	w.uidValidity = mb.UIDValidity
	w.stored = from
	w.commitMu.Unlock()
	return nil
}

// backfill returns the starting checkpoint of a folder seen for the first
// time.
func (w *Watcher) backfill(ctx context.Context, conn *imapconn.Conn, mb imapconn.Mailbox) (uint32, error) {
	since, err := parseBackfill(w.cfg.Backfill)
	if err != nil {
		return 0, err
	}
	switch w.cfg.Backfill {
	case "all":
		return 0, nil
	case "none":
		if mb.UIDNext > 0 {
			return mb.UIDNext - 1, nil
		}
		uids, err := conn.UIDsAfter(ctx, 0)
		if err != nil || len(uids) == 0 {
			return 0, err
		}
		return uids[len(uids)-1], nil
	}
	return w.backfillSince(ctx, conn, since)
}

// backfillSince returns the UID before the first message whose INTERNALDATE
// is on or after since. imapconn has no SEARCH SINCE, so it binary-searches
// the UIDs, fetching only the metadata of each probe (FetchToFile with a
// 1-byte limit reports TooLarge without downloading the body). It assumes
// INTERNALDATE grows with the UID, which holds for delivered mail but not
// for messages APPENDed with old dates: such a message after the start is
// processed although it is older than since (never the reverse, except for
// a message older than its predecessor's date at the boundary). A probe
// that was expunged counts as "on or after", which only starts earlier.
func (w *Watcher) backfillSince(ctx context.Context, conn *imapconn.Conn, since time.Time) (uint32, error) {
	uids, err := conn.UIDsAfter(ctx, 0)
	if err != nil {
		return 0, err
	}
	var probeErr error
	i := sort.Search(len(uids), func(i int) bool {
		if probeErr != nil {
			return true
		}
		f, err := conn.FetchToFile(ctx, uids[i], w.cfg.TempDir, 1)
		if errors.Is(err, imapconn.ErrGone) {
			return true
		}
		if err != nil {
			probeErr = err
			return true
		}
		if f.Path != "" {
			os.Remove(f.Path)
		}
		return !f.InternalDate.Before(since)
	})
	if probeErr != nil {
		return 0, probeErr
	}
	if i == 0 {
		return 0, nil
	}
	return uids[i-1], nil
}

// deliver hands f to the sink and records the outcome.
func (w *Watcher) deliver(ctx context.Context, stop context.CancelCauseFunc, f *imapconn.Fetched) {
	if f.Path != "" {
		defer os.Remove(f.Path)
	}
	m := Message{
		Account: w.cfg.Account, Folder: w.cfg.Folder,
		UIDValidity: w.uidValidity, UID: f.UID,
		Path: f.Path, Data: f.Data, Size: f.Size, InternalDate: f.InternalDate, TooLarge: f.TooLarge,
	}
	err := w.sink.Deliver(context.WithoutCancel(ctx), m)
	switch {
	case err == nil:
	case errors.Is(err, ErrTemporary):
		w.log.Warn("temporary delivery failure; stopping the folder to retry from the checkpoint", "uid", f.UID, "err", err)
		w.tracker.Failed(f.UID)
		stop(errStopped)
		return
	default:
		w.log.Warn("message failed permanently (recorded by the sink); moving on", "uid", f.UID, "err", err)
	}
	w.done(f.UID)
}

// setListed records the UIDs just listed (all above the checkpoint) as
// the backlog, less those already done.
func (w *Watcher) setListed(uids []uint32) {
	w.commitMu.Lock()
	defer w.commitMu.Unlock()
	w.listed = make(map[uint32]bool, len(uids))
	for _, uid := range uids {
		if !w.tracker.Finished(uid) {
			w.listed[uid] = true
		}
	}
	w.cfg.Metrics.Backlog(w.cfg.Account, w.cfg.Folder, len(w.listed))
}

// done marks uid done and stores the checkpoint if it advanced. The lock
// keeps the stored checkpoints in order when workers finish together.
func (w *Watcher) done(uid uint32) {
	w.commitMu.Lock()
	defer w.commitMu.Unlock()
	_, cp := w.tracker.Done(uid)
	if w.listed[uid] {
		delete(w.listed, uid)
		w.cfg.Metrics.Backlog(w.cfg.Account, w.cfg.Folder, len(w.listed))
	}
	if cp <= w.stored {
		return
	}
	// While a backlog is worked off, the checkpoint is written at most
	// every checkpointEvery: each write is an fsync, and a message done
	// but not yet under the stored checkpoint is only handed over again
	// after a crash, when the archive recognises it (no second record,
	// no second copy). Once the folder is idle, and when the session
	// ends, it is written at once (flush).
	if len(w.listed) > 0 && time.Since(w.storedAt) < checkpointEvery {
		// Written by the next advance, or by this timer if none comes.
		if w.flushTimer == nil {
			w.flushTimer = time.AfterFunc(checkpointEvery, w.flush)
		}
		return
	}
	w.storeLocked(cp)
}

// checkpointEvery is the most often a folder's checkpoint is written while
// a backlog is processed.
const checkpointEvery = time.Second

// flush writes the checkpoint if done messages went past the stored one.
func (w *Watcher) flush() {
	w.commitMu.Lock()
	defer w.commitMu.Unlock()
	if w.flushTimer != nil {
		w.flushTimer.Stop()
		w.flushTimer = nil
	}
	if w.tracker == nil {
		return
	}
	if cp := w.tracker.Checkpoint(); cp > w.stored {
		w.storeLocked(cp)
	}
}

func (w *Watcher) storeLocked(cp uint32) {
	if err := w.cps.Set(w.cfg.Account, w.cfg.Folder, Checkpoint{UIDValidity: w.uidValidity, UID: cp}); err != nil {
		// The next advance stores it; until then a restart redelivers.
		w.log.Error("storing the checkpoint failed", "checkpoint", cp, "err", err)
		return
	}
	w.stored = cp
	w.storedAt = time.Now()
}
