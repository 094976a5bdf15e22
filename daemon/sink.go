package daemon

// This file is what the service does with each fetched message: run the
// engine, make both forms durable in the archive, put the readable copy into
// the user's archive folder, and log one line. Only then does Deliver
// return, and only then may the folder's checkpoint pass the message.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-message/textproto"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/imapwatch"
	"github.com/smimed/smimed/harvest"
)

// archiveSink delivers the messages of one account.
type archiveSink struct {
	engine   *atomic.Pointer[harvest.Engine] // replaced by a reload
	arch     *archive.Archive
	metrics  *Metrics // nil-safe
	copier   *copier  // nil: the account has no archive_folder
	mode     string   // archive_folder_messages
	authserv string
	account  string
	log      *slog.Logger

	failMu   sync.Mutex
	failures map[uint64]int // record → copies failed in a row
}

func (k *archiveSink) Deliver(ctx context.Context, m Message) error {
	src := archive.Source{Account: m.Account, Folder: m.Folder, UIDValidity: m.UIDValidity, UID: m.UID, InternalDate: m.InternalDate}
	log := k.log.With("folder", m.Folder, "uid", m.UID, "uidvalidity", m.UIDValidity)
	if m.TooLarge {
		rec, _, err := k.arch.PutUnfetched(src, m.Size, fmt.Sprintf("not fetched: %d bytes is larger than max_message_size", m.Size))
		if err != nil {
			return Temporary(err)
		}
		log.Warn("message not fetched: larger than max_message_size", "size", m.Size, "record", rec.ID)
		k.metrics.Processed(m, nil)
		return nil
	}
	raw, err := os.ReadFile(m.Path)
	if err != nil {
		return Temporary(fmt.Errorf("read fetched message: %w", err))
	}
	sha := archive.Sum(raw)
	// Already archived (a crash after the archive, before the
	// checkpoint; or the same bytes before a UIDVALIDITY change): do not
	// run the engine again, only finish the copy.
	rec, err := k.arch.Seen(src, sha)
	if err != nil {
		return Temporary(err)
	}
	again := rec != nil
	var plaintext []byte // in hand when just archived; else read back
	if rec == nil {
		received := m.InternalDate
		if received.IsZero() {
			received = time.Now()
		}
		res, err := k.engine.Load().Process(raw, received)
		if err != nil {
			// Our certificate store could not be written.
			return Temporary(err)
		}
		if rec, _, err = k.arch.PutSum(src, raw, sha, res); err != nil {
			return Temporary(err)
		}
		plaintext = res.Plaintext
	}
	copied, err := k.copy(ctx, rec, plaintext, false)
	if err != nil {
		log.Warn("user copy not stored; will retry", "record", rec.ID, "err", err)
		return Temporary(err)
	}
	var verdicts, signers, harvested []string
	for _, sig := range rec.Signatures {
		verdicts = append(verdicts, sig.Status)
		signers = append(signers, sig.Fingerprint)
	}
	for _, h := range rec.Harvested {
		harvested = append(harvested, h.Email+"="+h.Fingerprint)
	}
	log.Info("message processed",
		"record", rec.ID,
		"again", again,
		"message_id", rec.MessageID,
		"status", strings.Join(rec.Status, ","),
		"layers", strings.Join(rec.Layers, ">"),
		"decryption", rec.Decryption.Status,
		"cipher", rec.Decryption.Cipher,
		"key", rec.Decryption.Key,
		"verdicts", strings.Join(verdicts, ","),
		"signers", strings.Join(signers, ","),
		"harvested", strings.Join(harvested, ","),
		"copy", copied,
		"error", rec.Error)
	k.metrics.Processed(m, rec.Report())
	return nil
}

// maxCopyAttempts is how often the copy of one message may fail in a row
// before it is set aside as pending, so that the folder moves on.
const maxCopyAttempts = 5

// copy puts the user's readable copy of rec into the archive folder unless
// that is not wanted or already done, and returns where it went ("" for
// none). A copy the server refuses (NO to APPEND: over quota, too big), or
// that failed maxCopyAttempts times in a row, is recorded as failed and
// left to updateCopies, which tries again every copyInterval: the archive
// holds the message, so the folder does not stop over its copy. With
// pending (updateCopies), an earlier failure is tried again. pt is rec's
// plaintext when the caller has it, else nil: it is read from the archive.
func (k *archiveSink) copy(ctx context.Context, rec *archive.Record, pt []byte, pending bool) (string, error) {
	if k.copier == nil || !archive.WantCopy(k.mode, rec.Report()) {
		return "", nil
	}
	c, err := k.arch.GetCopy(rec.ID)
	switch {
	case err != nil:
		return "", err
	case c != nil && c.Kind == archive.CopyStored:
		return c.String(), nil
	case c != nil && !pending:
		return c.String(), nil
	}
	if pt == nil {
		if pt, err = k.arch.ReadPlaintext(rec); err != nil {
			return "", err
		}
	}
	msg := archive.UserCopyRecord(pt, rec.Report(), rec.Source(), k.authserv, rec.ID)
	date := rec.Received
	if date.IsZero() {
		date = rec.ArchivedAt
	}
	uid, err := k.copier.put(ctx, msg, date)
	if err != nil {
		if !imapwatch.IsRefusal(err) && k.failedAgain(rec.ID) < maxCopyAttempts {
			return "", err
		}
		// Set aside: recorded, pending, and the message is done. The
		// same refusal again is one problem, said once and shown by
		// smimed status until a copy goes through.
		if k.metrics.CopyRefused(k.account, k.copier.folder, err.Error()) {
			k.log.Error("user copy refused; the message is archived, its copy is tried again every 5m; the same refusal again is shown by smimed status, not logged", "record", rec.ID, "folder", k.copier.folder, "err", err)
		} else {
			k.log.Debug("user copy refused again for the same reason", "record", rec.ID, "folder", k.copier.folder)
		}
		if err := k.arch.SetCopy(rec.ID, archive.CopyState{Kind: archive.CopyPending, Folder: k.copier.folder, Reason: err.Error(), At: time.Now().UTC()}); err != nil {
			return "", err
		}
		if err := k.arch.CopyPending(rec.ID); err != nil {
			return "", err
		}
		k.failedClear(rec.ID)
		return "pending: " + err.Error(), nil
	}
	k.failedClear(rec.ID)
	if k.metrics.CopyStored(k.account) {
		k.log.Info("user copies go through again", "record", rec.ID, "folder", k.copier.folder)
	}
	if err := k.arch.SetCopy(rec.ID, archive.CopyState{Kind: archive.CopyStored, Folder: k.copier.folder, UID: uid, At: time.Now().UTC()}); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s/%d", k.copier.folder, uid), nil
}

// failedAgain counts one more failed copy of record id and returns the
// count.
func (k *archiveSink) failedAgain(id uint64) int {
	k.failMu.Lock()
	defer k.failMu.Unlock()
	if k.failures == nil {
		k.failures = map[uint64]int{}
	}
	k.failures[id]++
	return k.failures[id]
}

func (k *archiveSink) failedClear(id uint64) {
	k.failMu.Lock()
	defer k.failMu.Unlock()
	delete(k.failures, id)
}

// copier APPENDs the users' copies of one account over a connection of its
// own (the watchers' connections stay in IDLE on their folders).
type copier struct {
	cfg    imapwatch.Config
	folder string
	tmpDir string
	log    *slog.Logger

	mu     sync.Mutex
	conn   *imapwatch.Conn
	closed bool // after close: no new connection
}

// errCopierClosed is returned by a copier used after its account stopped.
var errCopierClosed = errors.New("daemon: the account's APPEND connection is closed (account stopped)")

// markerFields are the header fields of a copy that identify it: the
// message it came from and the archive record (version) it shows.
var markerFields = []string{archive.UserCopySourceField, archive.UserCopyRecordField}

// connLocked returns the copier's connection, dialling when needed.
func (c *copier) connLocked(ctx context.Context) (*imapwatch.Conn, error) {
	if c.closed {
		return nil, errCopierClosed
	}
	if c.conn == nil {
		conn, err := imapwatch.Dial(ctx, c.cfg)
		if err != nil {
			return nil, err
		}
		c.conn = conn
	}
	return c.conn, nil
}

// put appends msg unless a copy with the same marker fields is there
// already (a crash between APPEND and recording it), and returns the
// copy's UID (0 when the server does not say).
func (c *copier) put(ctx context.Context, msg []byte, date time.Time) (uint32, error) {
	want, err := copyMarker(msg)
	if err != nil {
		return 0, err
	}
	var uid uint32
	err = c.with(ctx, func(conn *imapwatch.Conn) error {
		var err error
		uid, err = c.putLocked(ctx, conn, msg, want, date)
		return err
	})
	return uid, err
}

// with runs fn on the copier's connection. The connection is kept between
// copies, and the server may have closed it meanwhile (a restart, an idle
// timeout): when fn fails on a kept connection with an error it marked
// safe to repeat (safeAgain: nothing was sent that could have changed the
// folder), it runs once more on a new one. An APPEND that failed midway
// is not repeated here: the server may still store it, and a search at
// once could miss it; the message's next delivery, after the folder's
// backoff, searches again. After any error the connection is dropped.
func (c *copier) with(ctx context.Context, fn func(*imapwatch.Conn) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	kept := c.conn != nil
	for {
		conn, err := c.connLocked(ctx)
		if err != nil {
			return err
		}
		err = fn(conn)
		if err == nil {
			return nil
		}
		conn.Close()
		c.conn = nil
		var again safeAgain
		if !kept || !errors.As(err, &again) || imapwatch.IsRefusal(err) || ctx.Err() != nil {
			return err
		}
		kept = false
	}
}

// safeAgain marks an error after which the copier's operation may simply
// be repeated on a new connection.
type safeAgain struct{ error }

func (e safeAgain) Unwrap() error { return e.error }

func (c *copier) putLocked(ctx context.Context, conn *imapwatch.Conn, msg []byte, want map[string]string, date time.Time) (uint32, error) {
	found, err := conn.FindCopies(ctx, c.folder, want)
	if err != nil {
		return 0, safeAgain{err}
	}
	if len(found) > 0 {
		c.log.Info("user copy already in the archive folder", "copy_uid", found[0])
		return found[0], nil
	}
	f, err := os.CreateTemp(c.tmpDir, "copy-*.eml")
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
	return conn.Append(ctx, c.folder, f.Name(), date)
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

func (c *copier) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// remove deletes a copy this daemon made earlier from folder, if that UID
// still holds it (its marker fields are want).
func (c *copier) remove(ctx context.Context, folder string, uid uint32, want map[string]string) (bool, error) {
	var gone bool
	err := c.with(ctx, func(conn *imapwatch.Conn) error {
		var err error
		gone, err = conn.Remove(ctx, folder, uid, want)
		if err != nil {
			return safeAgain{err} // STORE \Deleted and UID EXPUNGE repeat harmlessly
		}
		return nil
	})
	return gone, err
}

// updateCopies brings the users' copies up to date after messages were
// re-processed (archive retry): the new version's copy is appended, then
// the old version's copy is removed from the archive folder. What fails
// stays pending for the next call. sinkFor returns the sink of an account,
// nil when the account is no longer configured.
func updateCopies(ctx context.Context, arch *archive.Archive, sinkFor func(account string) *archiveSink, log *slog.Logger) {
	ids, err := arch.PendingCopies()
	if err != nil {
		log.Warn("cannot read the pending user copies", "err", err)
		return
	}
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		rec, err := arch.Get(id)
		if err != nil {
			log.Warn("pending user copy: record unreadable", "record", id, "err", err)
			continue
		}
		k := sinkFor(rec.Account)
		if cur, err := arch.Current(id); err == nil && cur.ID != id || k == nil || k.copier == nil {
			// A newer version has its own entry, or there is nowhere
			// to copy to any more.
			arch.CopyDone(id)
			continue
		}
		where, err := k.copy(ctx, rec, nil, true)
		if err == nil && strings.HasPrefix(where, "pending: ") {
			continue // refused again; stays pending
		}
		if err != nil {
			log.Warn("user copy not stored; will retry", "account", rec.Account, "record", id, "err", err)
			continue
		}
		if where != "" && rec.Supersedes != 0 {
			if err := removeOldCopy(ctx, arch, k, rec, log); err != nil {
				log.Warn("old user copy not removed; will retry", "account", rec.Account, "record", id, "err", err)
				continue
			}
		}
		log.Info("user copy updated after re-processing", "account", rec.Account, "record", id, "supersedes", rec.Supersedes, "copy", where)
		if err := arch.CopyDone(id); err != nil {
			log.Warn("pending user copy not cleared", "record", id, "err", err)
		}
	}
}

// removeOldCopy removes the copy of the newest earlier version of rec that
// has one (versions retried while the daemon was stopped may have none),
// unless it is the very copy rec now has.
func removeOldCopy(ctx context.Context, arch *archive.Archive, k *archiveSink, rec *archive.Record, log *slog.Logger) error {
	now, err := arch.GetCopy(rec.ID)
	if err != nil {
		return err
	}
	for id, hops := rec.Supersedes, 0; id != 0 && hops < 100; hops++ {
		old, err := arch.Get(id)
		if err != nil {
			return err
		}
		c, err := arch.GetCopy(id)
		if err != nil {
			return err
		}
		if c == nil || c.Kind != archive.CopyStored || c.UID == 0 {
			id = old.Supersedes
			continue
		}
		if now != nil && c.Folder == now.Folder && c.UID == now.UID {
			return nil
		}
		want := map[string]string{
			archive.UserCopySourceField: old.Source().Marker(),
			archive.UserCopyRecordField: strconv.FormatUint(old.ID, 10),
		}
		gone, err := k.copier.remove(ctx, c.Folder, c.UID, want)
		if err != nil {
			return err
		}
		if !gone {
			log.Info("old user copy left in place: gone already, another message under its UID, or only flagged \\Deleted (no UIDPLUS)", "account", rec.Account, "folder", c.Folder, "uid", c.UID)
		}
		return nil
	}
	return nil
}
