package daemon

// This file is what the service does with each fetched message: run the
// engine, make both forms durable in the archive, put the readable copy into
// the user's archive folder, and log one line. Only then does Deliver
// return, and only then may the folder's checkpoint pass the message.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
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
	log      *slog.Logger
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
	sha := sha256.Sum256(raw)
	// Already archived (a crash after the archive, before the
	// checkpoint; or the same bytes before a UIDVALIDITY change): do not
	// run the engine again, only finish the copy.
	rec, err := k.arch.Seen(src, hex.EncodeToString(sha[:]))
	if err != nil {
		return Temporary(err)
	}
	again := rec != nil
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
		if rec, _, err = k.arch.Put(src, raw, res); err != nil {
			return Temporary(err)
		}
	}
	copied, err := k.copy(ctx, rec)
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

// copy puts the user's readable copy of rec into the archive folder unless
// that is not wanted or already done, and returns where it went ("" for
// none).
func (k *archiveSink) copy(ctx context.Context, rec *archive.Record) (string, error) {
	if k.copier == nil || !archive.WantCopy(k.mode, rec.Report()) {
		return "", nil
	}
	if c, err := k.arch.GetCopy(rec.ID); err != nil || c != nil {
		if c != nil {
			return fmt.Sprintf("%s/%d", c.Folder, c.UID), nil
		}
		return "", err
	}
	pt, err := k.arch.ReadPlaintext(rec)
	if err != nil {
		return "", err
	}
	msg := archive.UserCopy(pt, rec.Report(), rec.Source(), k.authserv)
	date := rec.Received
	if date.IsZero() {
		date = rec.ArchivedAt
	}
	uid, err := k.copier.put(ctx, msg, date)
	if err != nil {
		return "", err
	}
	if err := k.arch.SetCopy(rec.ID, archive.Copy{Folder: k.copier.folder, UID: uid, AppendedAt: time.Now().UTC()}); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s/%d", k.copier.folder, uid), nil
}

// copier APPENDs the users' copies of one account over a connection of its
// own (the watchers' connections stay in IDLE on their folders).
type copier struct {
	cfg    imapwatch.Config
	folder string
	tmpDir string
	log    *slog.Logger

	mu   sync.Mutex
	conn *imapwatch.Conn
}

// markerFields are the header fields of a copy that identify it: the same
// source and the same decryption outcome (a re-processed message whose
// outcome changed gets a new copy).
var markerFields = []string{"X-Smimed-Source", "X-Smimed-Decryption"}

// put appends msg unless a copy with the same marker fields is there
// already (a crash between APPEND and recording it), and returns the
// copy's UID (0 when the server does not say).
func (c *copier) put(ctx context.Context, msg []byte, date time.Time) (uint32, error) {
	want, err := copyMarker(msg)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		conn, err := imapwatch.Dial(ctx, c.cfg)
		if err != nil {
			return 0, err
		}
		c.conn = conn
	}
	uid, err := c.putLocked(ctx, msg, want, date)
	if err != nil {
		// After any error the connection's state is unknown: start over.
		c.conn.Close()
		c.conn = nil
	}
	return uid, err
}

func (c *copier) putLocked(ctx context.Context, msg []byte, want map[string]string, date time.Time) (uint32, error) {
	found, err := c.conn.FindCopies(ctx, c.folder, want)
	if err != nil {
		return 0, err
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
	return c.conn.Append(ctx, c.folder, f.Name(), date)
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
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// remove deletes a copy this daemon made earlier from folder.
func (c *copier) remove(ctx context.Context, folder string, uid uint32) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		conn, err := imapwatch.Dial(ctx, c.cfg)
		if err != nil {
			return false, err
		}
		c.conn = conn
	}
	gone, err := c.conn.Remove(ctx, folder, uid)
	if err != nil {
		c.conn.Close()
		c.conn = nil
	}
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
		where, err := k.copy(ctx, rec)
		if err != nil {
			log.Warn("user copy of a re-processed message not stored; will retry", "account", rec.Account, "record", id, "err", err)
			continue
		}
		if where != "" && rec.Supersedes != 0 {
			if old, err := arch.GetCopy(rec.Supersedes); err == nil && old != nil && old.UID != 0 {
				gone, err := k.copier.remove(ctx, old.Folder, old.UID)
				switch {
				case err != nil:
					log.Warn("old user copy not removed; will retry", "account", rec.Account, "folder", old.Folder, "uid", old.UID, "err", err)
					continue
				case !gone:
					log.Info("old user copy flagged \\Deleted (the server has no UIDPLUS to expunge just it)", "account", rec.Account, "folder", old.Folder, "uid", old.UID)
				}
			}
		}
		log.Info("user copy updated after re-processing", "account", rec.Account, "record", id, "supersedes", rec.Supersedes, "copy", where)
		if err := arch.CopyDone(id); err != nil {
			log.Warn("pending user copy not cleared", "record", id, "err", err)
		}
	}
}
