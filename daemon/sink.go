package daemon

// This file is what the service does with each fetched message: run the
// engine, make both forms durable in the archive, put the readable copy into
// the user's archive folder, and log one line. Only then does Deliver
// return, and only then may the folder's checkpoint pass the message.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/imapconn"
	"github.com/smimed/smimed/harvest"
)

// archiveSink delivers the messages of one account.
type archiveSink struct {
	account string                          // the mailbox, for the keys limited to some
	engine  *atomic.Pointer[harvest.Engine] // replaced by a reload
	gate    *Gate                           // the engine runs within it; nil: no bound
	large   *Gate                           // a message fetched into a file is delivered within it; nil: no bound
	arch    *archive.Archive
	metrics *Metrics        // nil-safe
	copier  *archive.Copier // nil: the account has no archive_folder
	log     *slog.Logger
}

func (k *archiveSink) Deliver(ctx context.Context, m Message) (err error) {
	if m.Path != "" && k.large != nil {
		// Larger than imapconn.MemoryBodyMax: at most workers such
		// messages are read into memory at once, however many the pool
		// has in hand.
		k.large.Do(func() { err = k.deliver(ctx, m) })
		return err
	}
	return k.deliver(ctx, m)
}

func (k *archiveSink) deliver(ctx context.Context, m Message) error {
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
	raw := m.Data
	if m.Path != "" {
		var err error
		if raw, err = os.ReadFile(m.Path); err != nil {
			return Temporary(fmt.Errorf("read fetched message: %w", err))
		}
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
	created := false
	var plaintext []byte // in hand when just archived; else read back
	if rec == nil {
		received := m.InternalDate
		if received.IsZero() {
			received = time.Now()
		}
		var res *harvest.Result
		k.process(func() { res, err = k.engine.Load().ProcessFor(raw, received, k.account) })
		if err == nil && res.Write != nil {
			// Outside the gate: the harvest waits for a commit.
			err = res.Write()
		}
		if err != nil {
			// Our certificate store could not be written.
			return Temporary(err)
		}
		if rec, created, err = k.arch.PutSum(src, raw, sha, res); err != nil {
			return Temporary(err)
		}
		plaintext = res.Plaintext
	}
	copied := archive.CopyState{Kind: archive.CopyNotWanted}
	if k.copier != nil {
		copyTo := k.copier.Copy
		if created {
			copyTo = k.copier.CopyNew
		}
		if copied, err = copyTo(ctx, rec, plaintext); err != nil {
			log.Warn("user copy not stored; will retry", "record", rec.ID, "err", err)
			return Temporary(err)
		}
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
		"copy", copied.String(),
		"error", rec.Error)
	k.metrics.Processed(m, rec.Report())
	return nil
}

// process runs fn (the engine) within the gate.
func (k *archiveSink) process(fn func()) {
	if k.gate == nil {
		fn()
		return
	}
	k.gate.Do(fn)
}

// The copier's connection is an imapconn connection of its own.
var _ archive.Mailbox = (*imapconn.Conn)(nil)

// dialCopies returns the Dial of an account's copier: a connection to its
// server for the APPENDs.
func dialCopies(cfg imapconn.Config, budget *connBudget) func(context.Context) (archive.Mailbox, error) {
	return func(ctx context.Context) (archive.Mailbox, error) {
		if err := budget.AcquireCopy(ctx); err != nil {
			return nil, err
		}
		conn, err := imapconn.Dial(ctx, cfg)
		if err != nil {
			budget.Release()
			return nil, err
		}
		return &budgetedConn{Conn: conn, release: sync.OnceFunc(budget.Release)}, nil
	}
}

// budgetedConn gives its budget slot back when closed.
type budgetedConn struct {
	*imapconn.Conn
	release func()
}

func (c *budgetedConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}
