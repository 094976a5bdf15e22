package admin

// This file defines what the admin commands may ask of the archive, and
// the implementation that works on an open archive directly. The control
// socket (control.go) offers the same interface to `smimed archive …` while
// the daemon runs and holds the store's lock; without a running daemon the
// commands open the store themselves and use Local.
//
// Every read leaves an entry in the archive's audit log (archive.Audit)
// before any data is handed out; when the entry cannot be written, the
// read fails. Listing the audit log is itself audited (action "audit"):
// who looked at who read what is worth knowing too.

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/bbolt"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/archive/worm"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/revocation"
	"github.com/smimed/smimed/harvest/state"
)

// Caller is who asks, for the audit log.
type Caller struct {
	UID int    `json:"uid"`
	GID int    `json:"gid"`
	PID int    `json:"pid"`
	Via string `json:"via"` // "socket" or "direct"
	// Role is RoleAdmin, RoleReader or RoleAuditor (retention.go); ""
	// may only read, and sees no restricted mail.
	Role string `json:"role,omitempty"`
	// Login is the audit login uid of the process (the person behind
	// su and sudo), else UID: what tells a purge's two people apart.
	Login int `json:"login"`
}

// RetryResult is the outcome of re-processing one record.
type RetryResult struct {
	ID      uint64          `json:"id"` // the record asked for
	Record  *archive.Record `json:"record,omitempty"`
	Changed bool            `json:"changed"`
	// Change says what changed against the version superseded
	// (archive.Change): "decrypted now", "verdict untrusted → valid", …
	Change string `json:"change,omitempty"`
	Error  string `json:"error,omitempty"`
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
	// VerifyEvidence is Verify plus every seal's timestamp tokens, judged
	// against the configured TSAs' trust anchors; with openssl each token
	// also by `openssl ts -verify`.
	VerifyEvidence(ctx context.Context, openssl bool, progress func(done, total int)) (*archive.VerifyResult, error)
	// Proof returns record id's inclusion proof and its seal's tokens.
	Proof(ctx context.Context, id uint64) (*ProofResult, error)
	// VerifyWorm compares the WORM copy ([archive.worm]) with the
	// archive's files (archive verify --evidence); ErrNoWorm without one.
	VerifyWorm(ctx context.Context) (*worm.VerifyResult, error)
	// Retry re-processes the given records (all undecryptable ones when
	// ids is empty) and passes each outcome to fn.
	Retry(ctx context.Context, ids []uint64, fn func(RetryResult) error) error
	// Backup writes a consistent copy of the store to w.
	Backup(ctx context.Context, w io.Writer) (int64, error)
	// Audit passes the audit log entries written at or after since to
	// fn, oldest first.
	Audit(ctx context.Context, since time.Time, fn func(archive.AuditEntry) error) error
	// Holds, HoldAdd and HoldRemove list, add and remove legal holds;
	// Restrict restricts a message (or lifts its restriction);
	// PurgePlan and PurgeApprove purge what retention lets go, in two
	// steps by two people (retention.go).
	Holds(ctx context.Context) ([]archive.Hold, error)
	HoldAdd(ctx context.Context, name string, q archive.Query, reason string) (int, error)
	HoldRemove(ctx context.Context, name string) (int, error)
	Restrict(ctx context.Context, id uint64, reason string, lift bool) (*archive.Restriction, error)
	PurgePlan(ctx context.Context) (*archive.PurgePlan, error)
	PurgeApprove(ctx context.Context, plan string) (*archive.Record, error)
	Close() error
}

// Admin commands the audit log tells apart from the API call they make:
// `archive failed` lists records as `archive list` does, `archive export`
// reads messages as `archive show` does.
const (
	CommandFailed = "failed"
	CommandExport = "export"
)

type auditCommandKey struct{}

// WithAuditCommand names the admin command (CommandFailed or
// CommandExport) whose calls are made with the returned context, so that
// their audit entries say "failed" or "export" instead of "list" or
// "show". It changes nothing else: the read is audited either way. Other
// names are ignored.
func WithAuditCommand(ctx context.Context, command string) context.Context {
	if command != CommandFailed && command != CommandExport {
		return ctx
	}
	return context.WithValue(ctx, auditCommandKey{}, command)
}

func auditCommand(ctx context.Context) string {
	c, _ := ctx.Value(auditCommandKey{}).(string)
	return c
}

// ProofResult is a record's inclusion proof with the timestamp tokens
// of the seal it leads to.
type ProofResult struct {
	Proof  *archive.Proof  `json:"proof"`
	Tokens []archive.Token `json:"tokens"`
}

// Local is ArchiveAPI on an archive this process has open. Its Archive
// must be writable: every read writes an audit entry.
type Local struct {
	Archive *archive.Archive
	Store   *harvest.Store
	State   *state.DB       // the state file, for Backup
	Engine  *harvest.Engine // for Retry; nil: Retry fails
	Caller  Caller          // who the reads are audited as; Via must be set
	// Closer, if set, is called by Close (the command that opened the
	// store closes it).
	Closer func() error
	// Changed, if set, is called after a Retry that wrote new versions
	// (the daemon then updates the users' copies).
	Changed func()
	// Revocation and CAs serve the revocation lists (LocalCerts); nil:
	// none.
	Revocation *revocation.Checker
	CAs        func() ([]*x509.Certificate, error)
	// Seal is [archive.seal]: the TSAs' trust anchors and require, for
	// VerifyEvidence.
	Seal config.Seal
	// AuditorQuery limits what a caller of RoleAuditor sees; nil: all.
	AuditorQuery *archive.Query
	// Worm gives the WORM copy's S3 client; nil: no [archive.worm].
	Worm func() (*worm.Client, error)
}

var _ ArchiveAPI = (*Local)(nil)

// ErrNotAudited is returned, wrapped, for a read that did not happen
// because its audit entry could not be written.
var ErrNotAudited = errors.New("daemon: not read: the audit log cannot be written")

// audit records one access by l.Caller.
func (l *Local) audit(action, detail string) error {
	return audit(l.Archive, l.Caller, action, detail)
}

// audit records one access by c in arc's audit log; without arc, or when
// the entry cannot be written, the access must not happen.
func audit(arc *archive.Archive, c Caller, action, detail string) error {
	if c.Via == "" {
		return fmt.Errorf("%w: the caller is unknown", ErrNotAudited)
	}
	if arc == nil {
		return fmt.Errorf("%w: no archive open", ErrNotAudited)
	}
	err := arc.Audit(archive.AuditEntry{
		UID: c.UID, GID: c.GID, PID: c.PID, User: userName(c.UID), Via: c.Via,
		Action: action, Detail: detail,
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotAudited, err)
	}
	return nil
}

// userName is the login name of uid, or "" when it has none.
func userName(uid int) string {
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		return ""
	}
	return u.Username
}

// QueryDetail describes q's filters in one line, as the audit log and
// `archive hold list` show them.
func QueryDetail(q archive.Query) string { return queryDetail(q) }

// queryDetail describes q for the audit log (the filters, not what they
// matched).
func queryDetail(q archive.Query) string {
	var b strings.Builder
	add := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, " %s=%s", k, strconv.Quote(v))
		}
	}
	add("from", q.From)
	add("to", q.To)
	add("subject", q.Subject)
	add("status", q.Status)
	add("verdict", q.Verdict)
	add("account", q.Account)
	add("message-id", q.MessageID)
	if !q.Since.IsZero() {
		add("since", q.Since.UTC().Format(time.RFC3339))
	}
	if !q.Until.IsZero() {
		add("until", q.Until.UTC().Format(time.RFC3339))
	}
	if q.Limit > 0 {
		fmt.Fprintf(&b, " limit=%d", q.Limit)
	}
	if q.Expired {
		b.WriteString(" expired")
	}
	if b.Len() == 0 {
		return "all"
	}
	return b.String()[1:]
}

func (l *Local) List(ctx context.Context, q archive.Query, fn func(*archive.Record) error) error {
	if err := q.Check(); err != nil {
		return err
	}
	action := archive.AuditList
	if auditCommand(ctx) == CommandFailed {
		action = archive.AuditFailed
	}
	if err := l.audit(action, queryDetail(q)); err != nil {
		return err
	}
	q = l.visibleQuery(q)
	return l.Archive.List(q, func(r *archive.Record) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if l.Caller.Role == RoleAuditor && l.AuditorQuery != nil && !l.AuditorQuery.Matches(r) {
			return nil
		}
		return fn(r)
	})
}

func (l *Local) Get(ctx context.Context, id uint64) (*archive.Record, error) {
	if err := l.audit(archive.AuditList, fmt.Sprintf("id=%d", id)); err != nil {
		return nil, err
	}
	return l.getVisible(id)
}

// getVisible is record id when l.Caller may see it, else ErrNotFound
// (a restricted message, or one outside an auditor's query, is not
// there for them).
func (l *Local) getVisible(id uint64) (*archive.Record, error) {
	r, err := l.Archive.Get(id)
	if err != nil {
		return nil, err
	}
	if r.Kind == archive.KindMessage {
		ok, err := l.visible(r)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: %d", archive.ErrNotFound, id)
		}
	}
	return r, nil
}

func (l *Local) Message(ctx context.Context, id uint64, original bool, w io.Writer) error {
	action := archive.AuditShow
	switch {
	case auditCommand(ctx) == CommandExport:
		action = archive.AuditExport
	case original:
		action = archive.AuditShowOriginal
	}
	detail := fmt.Sprintf("id=%d", id)
	if original {
		detail += " original"
	}
	if err := l.audit(action, detail); err != nil {
		return err
	}
	r, err := l.getVisible(id)
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

// Verify checks the records' chain and every file, and the audit log's
// chain; problems of the audit log are reported with ID 0 and say which
// entry they concern.
func (l *Local) Verify(ctx context.Context, progress func(done, total int)) (*archive.VerifyResult, error) {
	if err := l.audit(archive.AuditVerify, ""); err != nil {
		return nil, err
	}
	return l.verify(ctx, progress, l.Archive.Verify)
}

func (l *Local) VerifyEvidence(ctx context.Context, openssl bool, progress func(done, total int)) (*archive.VerifyResult, error) {
	if err := l.audit(archive.AuditVerify, "evidence"); err != nil {
		return nil, err
	}
	if len(l.Seal.TSAs) == 0 {
		return nil, errors.New("verify --evidence: no [[archive.seal.tsa]] configured: the timestamps cannot be judged without the TSAs' trust anchors (ca_file)")
	}
	roots, rootsPEM, err := l.Seal.Roots()
	if err != nil {
		return nil, err
	}
	ev := archive.EvidenceOptions{Roots: roots, RootsPEM: rootsPEM, Require: l.Seal.Require, OpenSSL: openssl}
	return l.verify(ctx, progress, func(p func(done, total int)) (*archive.VerifyResult, error) {
		return l.Archive.VerifyEvidence(ev, p)
	})
}

// verify runs one of the archive's verifications, then the audit log's.
func (l *Local) verify(ctx context.Context, progress func(done, total int), run func(func(done, total int)) (*archive.VerifyResult, error)) (res *archive.VerifyResult, err error) {
	// archive.Verify takes no context; a cancelled ctx unwinds it from its
	// progress callback, which it calls between read transactions (so none
	// is left open), and the panic is turned back into ctx's error here.
	defer func() {
		if p := recover(); p != nil {
			if p != errVerifyCancelled {
				panic(p)
			}
			res, err = nil, fmt.Errorf("verify: %w", ctx.Err())
		}
	}()
	res, err = run(func(done, total int) {
		if ctx.Err() != nil {
			panic(errVerifyCancelled)
		}
		if progress != nil {
			progress(done, total)
		}
	})
	if err != nil {
		return nil, err
	}
	ares, err := l.Archive.VerifyAudit()
	if err != nil {
		return nil, err
	}
	for _, p := range ares.Problems {
		what := "audit log: " + p.What
		if p.ID != 0 {
			what = fmt.Sprintf("audit log: entry %d: %s", p.ID, p.What)
		}
		res.Problems = append(res.Problems, archive.Problem{What: what})
	}
	return res, nil
}

func (l *Local) Proof(ctx context.Context, id uint64) (*ProofResult, error) {
	action := archive.AuditProof
	if auditCommand(ctx) == CommandExport {
		action = archive.AuditExport
	}
	if err := l.audit(action, fmt.Sprintf("id=%d proof", id)); err != nil {
		return nil, err
	}
	p, err := l.Archive.Proof(id)
	if err != nil {
		return nil, err
	}
	tokens, err := l.Archive.Tokens(p.Seal)
	if err != nil {
		return nil, err
	}
	return &ProofResult{Proof: p, Tokens: tokens}, nil
}

var errVerifyCancelled = errors.New("verify cancelled")

// ErrNoWorm: the configuration has no [archive.worm].
var ErrNoWorm = errors.New("daemon: no WORM copy configured ([archive.worm])")

// VerifyWorm compares every object of the WORM copy with the local file
// (worm.Verify); audited as a verify.
func (l *Local) VerifyWorm(ctx context.Context) (*worm.VerifyResult, error) {
	if l.Worm == nil {
		return nil, ErrNoWorm
	}
	c, err := l.Worm()
	if err != nil {
		return nil, err
	}
	if err := l.audit(archive.AuditVerify, "worm "+c.Bucket()); err != nil {
		return nil, err
	}
	return worm.Verify(ctx, l.Archive, l.State, c)
}

func (l *Local) Retry(ctx context.Context, ids []uint64, fn func(RetryResult) error) error {
	if l.Caller.Role == RoleAuditor {
		return l.refuse("archive retry", "")
	}
	if l.Engine == nil {
		return fmt.Errorf("retry: no engine (keys not loaded)")
	}
	detail := "all undecryptable"
	if len(ids) > 0 {
		s := make([]string, len(ids))
		for i, id := range ids {
			s[i] = strconv.FormatUint(id, 10)
		}
		detail = "ids=" + strings.Join(s, ",")
	}
	if err := l.audit(archive.AuditRetry, detail); err != nil {
		return err
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
	wrote := false
	defer func() {
		if wrote && l.Changed != nil {
			l.Changed()
		}
	}()
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return err
		}
		res := RetryResult{ID: id}
		rec, changed, err := l.Archive.Reprocess(id, l.Engine)
		var old *archive.Record
		if err == nil && changed {
			old, err = l.Archive.Get(rec.Supersedes)
		}
		switch {
		case err != nil:
			res.Error = err.Error()
		case changed:
			res.Record, res.Changed, res.Change = rec, true, archive.Change(old, rec)
		default:
			res.Record, res.Change = rec, "unchanged"
		}
		wrote = wrote || changed
		if err := fn(res); err != nil {
			return err
		}
	}
	return nil
}

func (l *Local) Backup(ctx context.Context, w io.Writer) (int64, error) {
	if l.Caller.Role == RoleAuditor {
		return 0, l.refuse("backup", "")
	}
	if err := l.audit(archive.AuditBackup, ""); err != nil {
		return 0, err
	}
	return backupStore(l.State, w)
}

func (l *Local) Audit(ctx context.Context, since time.Time, fn func(archive.AuditEntry) error) error {
	if l.Caller.Role == RoleAuditor {
		return l.refuse("archive audit", "")
	}
	detail := "all"
	if !since.IsZero() {
		detail = "since=" + since.UTC().Format(time.RFC3339)
	}
	if err := l.audit(archive.AuditAudit, detail); err != nil {
		return err
	}
	return l.Archive.AuditLog(since, func(e archive.AuditEntry) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(e)
	})
}

func (l *Local) Close() error {
	if l.Closer != nil {
		return l.Closer()
	}
	return nil
}

// backupMu lets one backup run at a time.
var backupMu sync.Mutex

// backupStore writes a consistent snapshot of the state file to w. The
// snapshot is first taken into a local temporary file (one short read
// transaction), then copied to w: a slow reader at the other end of the
// control socket must not hold a read transaction open, which would block
// every write once the file has to grow.
func backupStore(st *state.DB, w io.Writer) (int64, error) {
	if st == nil {
		return 0, errors.New("backup: the state file is not open")
	}
	// One at a time: each holds a full copy of the store in state_dir
	// until its reader is done, and many slow ones would fill the disk
	// the archive needs.
	if !backupMu.TryLock() {
		return 0, errors.New("backup: another backup is running; try again when it is done")
	}
	defer backupMu.Unlock()
	f, err := os.CreateTemp(filepath.Dir(st.Path()), ".backup-*") // 0600
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	err = st.Bolt().View(func(tx *bbolt.Tx) error {
		_, err := tx.WriteTo(f)
		return err
	})
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	n, err := io.Copy(w, f)
	if err != nil {
		return n, fmt.Errorf("backup: %w", err)
	}
	return n, nil
}
