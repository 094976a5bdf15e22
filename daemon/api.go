package daemon

// This file defines what the admin commands may ask of the archive, and
// the implementation that works on an open archive directly. The control
// socket (control.go) offers the same interface to `smimed archive …` while
// the daemon runs and holds the store's lock; without a running daemon the
// commands open the store themselves and use Local.

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/harvest"
)

// Caller is who asks, for the audit log.
type Caller struct {
	UID int    `json:"uid"`
	GID int    `json:"gid"`
	PID int    `json:"pid"`
	Via string `json:"via"` // "socket" or "direct"
}

// RetryResult is the outcome of re-processing one record.
type RetryResult struct {
	ID      uint64          `json:"id"` // the record asked for
	Record  *archive.Record `json:"record,omitempty"`
	Changed bool            `json:"changed"`
	Error   string          `json:"error,omitempty"`
}

// ArchiveAPI is what the admin commands use.
type ArchiveAPI interface {
	// List passes the current records matching q to fn, newest first.
	List(ctx context.Context, q archive.Query, fn func(*archive.Record) error) error
	// Get returns record id (any version).
	Get(ctx context.Context, id uint64) (*archive.Record, error)
	// Message writes the plaintext (or, with original, the original bytes)
	// of record id to w.
	Message(ctx context.Context, id uint64, original bool, w io.Writer) error
	// Verify checks the chain and every file.
	Verify(ctx context.Context, progress func(done, total int)) (*archive.VerifyResult, error)
	// Retry re-processes the given records (all undecryptable ones when
	// ids is empty) and passes each outcome to fn.
	Retry(ctx context.Context, ids []uint64, fn func(RetryResult) error) error
	// Backup writes a consistent copy of the store to w.
	Backup(ctx context.Context, w io.Writer) (int64, error)
	Close() error
}

// Local is ArchiveAPI on an archive this process has open.
type Local struct {
	Archive *archive.Archive
	Store   *harvest.Store
	Engine  *harvest.Engine // for Retry; nil: Retry fails
	Caller  Caller
	// Closer, if set, is called by Close (the command that opened the
	// store closes it).
	Closer func() error
}

var _ ArchiveAPI = (*Local)(nil)

func (l *Local) List(ctx context.Context, q archive.Query, fn func(*archive.Record) error) error {
	return l.Archive.List(q, func(r *archive.Record) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(r)
	})
}

func (l *Local) Get(ctx context.Context, id uint64) (*archive.Record, error) {
	return l.Archive.Get(id)
}

func (l *Local) Message(ctx context.Context, id uint64, original bool, w io.Writer) error {
	r, err := l.Archive.Get(id)
	if err != nil {
		return err
	}
	var b []byte
	if original {
		b, err = l.Archive.ReadOriginal(r)
	} else {
		b, err = l.Archive.ReadPlaintext(r)
	}
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func (l *Local) Verify(ctx context.Context, progress func(done, total int)) (*archive.VerifyResult, error) {
	return l.Archive.Verify(progress)
}

func (l *Local) Retry(ctx context.Context, ids []uint64, fn func(RetryResult) error) error {
	if l.Engine == nil {
		return fmt.Errorf("retry: no engine (keys not loaded)")
	}
	if len(ids) == 0 {
		err := l.Archive.List(archive.Query{Status: archive.StatusUndecryptable}, func(r *archive.Record) error {
			ids = append(ids, r.ID)
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return err
		}
		res := RetryResult{ID: id}
		rec, changed, err := l.Archive.Reprocess(id, l.Engine)
		if err != nil {
			res.Error = err.Error()
		} else {
			res.Record, res.Changed = rec, changed
		}
		if err := fn(res); err != nil {
			return err
		}
	}
	return nil
}

func (l *Local) Backup(ctx context.Context, w io.Writer) (int64, error) {
	return backupStore(l.Store, w)
}

func (l *Local) Close() error {
	if l.Closer != nil {
		return l.Closer()
	}
	return nil
}

// backupStore writes a consistent snapshot of the store's bbolt file (one
// read transaction) to w.
func backupStore(st *harvest.Store, w io.Writer) (int64, error) {
	tx, err := st.DB().Begin(false)
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	defer tx.Rollback()
	n, err := tx.WriteTo(w)
	if err != nil {
		return n, fmt.Errorf("backup: %w", err)
	}
	return n, nil
}

// currentCaller describes this process, for commands run directly.
func currentCaller() Caller {
	return Caller{UID: os.Getuid(), GID: os.Getgid(), PID: os.Getpid(), Via: "direct"}
}
