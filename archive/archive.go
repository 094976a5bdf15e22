// Package archive is the plaintext archive, the system of record: every
// processed message kept as it came (content-addressed by SHA-256) and as
// plaintext (a Maildir that mutt, notmuch or Dovecot can open) — and every
// message the gateway sent, as sent and as submitted (outgoing.go) —, an index in
// the bbolt store whose records form a hash chain, the admin queries, and
// the readable copy for the user's IMAP folder.
//
// On disk, under the archive directory (state_dir/archive):
//
//	maildir/{tmp,new,cur}/NAME   plaintexts (NAME = Record.PlaintextFile)
//	originals/ab/abcdef…         originals, named by their SHA-256 (hex)
//	evidence/SEAL/TSA.tsr, .pem  the seals' timestamps (seal.go)
//
// For a message without S/MIME the plaintext is the original: the one file
// has both names (a hard link), so it is stored once.
//
// In the state file (state_dir/smimed.db, package harvest/state), buckets
// of its own beside the certificate store's, each registered at version 1:
//
//	archive_records  id (8 bytes, big-endian) → hash (32) | record JSON
//	archive_meta     "head" → id (8) | hash (32): the chain head
//	archive_keys     account 0 folder 0 uidvalidity uid sha256 → id (current version);
//	                 0xff "out" 0 gateway id → id for outgoing mail (outgoing.go)
//	archive_index    kind | value 0 | time (8) | id (8) → nothing
//	archive_copies   id → copy JSON (the user's IMAP copy)
//	archive_pending  id → nothing: a new version whose user copy is still to be updated
//	archive_appending id → when an APPEND of its user copy began (unix ns), until recorded
//	archive_audit    the audit log (audit.go)
//	archive_seals    id → nothing: the seal records (seal.go)
//	archive_holds    case → legal hold (holds.go)
//	archive_restricted idempotency key → GDPR restriction (holds.go)
//
// Purge plans are files in state_dir/purge (purge.go); records carry
// their retention class and retain-until (retention.go).
package archive

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"

	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/state"
)

var (
	bucketRecords = []byte("archive_records")
	bucketMeta    = []byte("archive_meta")
	bucketKeys    = []byte("archive_keys")
	bucketIndex   = []byte("archive_index")
	bucketCopies  = []byte("archive_copies")
	bucketPending = []byte("archive_pending")
	// bucketAppending: records whose copy's APPEND began and was not
	// recorded as stored or pending (copystate.go).
	bucketAppending = []byte("archive_appending")
	keyHead         = []byte("head")
)

func init() {
	for _, b := range [][]byte{bucketRecords, bucketMeta, bucketKeys, bucketIndex, bucketCopies, bucketPending, bucketAppending, bucketAudit} {
		state.Register(state.Bucket{Name: string(b), Version: 1})
	}
}

// Errors; returned errors wrap them.
var (
	ErrNotFound = errors.New("archive: no such record")
	ErrCorrupt  = errors.New("archive: corrupt record")
	ErrReadOnly = errors.New("archive: opened read-only")
	ErrConflict = errors.New("archive: changed meanwhile")
)

// Archive is the archive under one directory, indexed in one bbolt file.
// It is safe for concurrent use.
type Archive struct {
	dir      string
	db       *bbolt.DB
	st       *state.DB // writes go through its group commit
	readOnly bool
	now      func() time.Time
	// retryMu serialises Reprocess: two retries of one message at once
	// would both supersede the same version.
	retryMu sync.Mutex
	// leftovers is how many crash leftovers Open removed.
	leftovers int
	// retention classifies new records (SetRetention); holds is told of
	// holds added and removed (SetHoldObserver).
	retention retentionPointer
	holds     atomic.Pointer[holdObserver]
}

// Open opens the archive in dir (state_dir/archive) with its index in the
// state file db, whose Open created and migrated the buckets. A writable
// db gets the directories (0700) created; a read-only one is only read.
func Open(dir string, db *state.DB) (*Archive, error) {
	a := &Archive{dir: dir, db: db.Bolt(), st: db, readOnly: db.ReadOnly(), now: time.Now}
	if a.readOnly {
		return a, nil
	}
	for _, d := range []string{"maildir/tmp", "maildir/new", "maildir/cur", "originals/tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("archive: %w", err)
		}
	}
	a.leftovers = a.removeLeftovers(filepath.Dir(db.Path()))
	return a, nil
}

// LeftoversRemoved is how many files an interrupted write left behind
// that Open removed (see removeLeftovers).
func (a *Archive) LeftoversRemoved() int { return a.leftovers }

// removeLeftovers deletes what a crash or a kill left in the archive's
// temporary directories and in state_dir: plaintexts being written
// (maildir/tmp/NAME.smimed.*), originals being written
// (originals/tmp/SHA256.*) and store copies of an unfinished backup
// (state_dir/.backup-*). Only a writable Open calls it: that process
// holds the state file's exclusive lock, so no other smimed (no running
// daemon, no admin command) is writing any of these files. Only names of
// smimed's own are touched; a file another program put into maildir/tmp
// stays.
func (a *Archive) removeLeftovers(stateDir string) int {
	n := 0
	for _, pattern := range []string{
		filepath.Join(a.dir, "maildir", "tmp", "*.smimed.*"),
		filepath.Join(a.dir, "originals", "tmp", strings.Repeat("[0-9a-f]", 64)+".*"),
		filepath.Join(stateDir, ".backup-*"),
	} {
		files, _ := filepath.Glob(pattern)
		for _, f := range files {
			if fi, err := os.Lstat(f); err == nil && fi.Mode().IsRegular() && os.Remove(f) == nil {
				n++
			}
		}
	}
	return n
}

// Dir is the archive directory.
func (a *Archive) Dir() string { return a.dir }

// MaildirPath is the Maildir holding the plaintexts.
func (a *Archive) MaildirPath() string { return filepath.Join(a.dir, "maildir") }

// Sum is the SHA-256 of b in hex, as the archive names originals and
// plaintexts.
func Sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// idemKey is the idempotency key of a message: its source and the SHA-256
// of the fetched bytes (hex).
func idemKey(src Source, sha string) ([]byte, error) {
	if strings.IndexByte(src.Account, 0) >= 0 || strings.IndexByte(src.Folder, 0) >= 0 {
		return nil, fmt.Errorf("archive: account or folder name contains NUL: %q/%q", src.Account, src.Folder)
	}
	if strings.HasPrefix(src.Account, "\xff") {
		// Outgoing records' keys start so (outgoingKeyPrefix).
		return nil, fmt.Errorf("archive: account name %q is not UTF-8", src.Account)
	}
	raw, err := hex.DecodeString(sha)
	if err != nil || len(raw) != sha256.Size {
		return nil, fmt.Errorf("archive: bad SHA-256 %q", sha)
	}
	k := []byte(src.Account + "\x00" + src.Folder + "\x00")
	k = binary.BigEndian.AppendUint32(k, src.UIDValidity)
	k = binary.BigEndian.AppendUint32(k, src.UID)
	return append(k, raw...), nil
}

// OriginalPath is where the original with this SHA-256 (hex) is kept.
func (a *Archive) OriginalPath(sha string) string {
	if len(sha) < 2 {
		return filepath.Join(a.dir, "originals", "invalid")
	}
	return filepath.Join(a.dir, "originals", sha[:2], sha)
}

// PlaintextPath finds the plaintext file of r in the Maildir: in new/, or
// in cur/ under its name with or without the flags a mail reader adds.
func (a *Archive) PlaintextPath(r *Record) (string, error) {
	if r.PlaintextFile == "" || strings.ContainsAny(r.PlaintextFile, "/\\:") {
		return "", fmt.Errorf("%w: record %d has no valid plaintext file name", ErrCorrupt, r.ID)
	}
	md := a.MaildirPath()
	for _, p := range []string{filepath.Join(md, "new", r.PlaintextFile), filepath.Join(md, "cur", r.PlaintextFile)} {
		if _, err := os.Lstat(p); err == nil {
			return p, nil
		}
	}
	if m, _ := filepath.Glob(filepath.Join(md, "cur", r.PlaintextFile+":*")); len(m) > 0 {
		return m[0], nil
	}
	return "", fmt.Errorf("archive: record %d: plaintext %s: %w", r.ID, r.PlaintextFile, os.ErrNotExist)
}

// Lookup returns the current record of the message fetched from src with
// the given SHA-256 (hex), or nil when it is not archived.
func (a *Archive) Lookup(src Source, sha string) (*Record, error) {
	key, err := idemKey(src, sha)
	if err != nil {
		return nil, err
	}
	return a.lookupKey(key)
}

// Seen returns the current record of the message fetched from src with the
// given SHA-256, like Lookup; failing that, a record of the same bytes in
// the same account and folder under another UIDVALIDITY. A server that
// renumbered a folder (a new UIDVALIDITY, a migration) sends every message
// again; they are the messages already archived, not new ones. Identical
// bytes under the same UIDVALIDITY are different messages (a duplicate
// delivery) and are archived each.
func (a *Archive) Seen(src Source, sha string) (*Record, error) {
	rec, err := a.Lookup(src, sha)
	if err != nil || rec != nil || sha == Sum(nil) {
		return rec, err // empty bytes prove nothing
	}
	prefix := indexPrefix(idxBytes, bytesValue(src.Account, src.Folder, sha))
	err = a.db.View(func(tx *bbolt.Tx) error {
		idx := tx.Bucket(bucketIndex)
		if idx == nil {
			return nil
		}
		c := idx.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if len(k) != len(prefix)+16 {
				continue
			}
			r, err := getRecord(tx, binary.BigEndian.Uint64(k[len(prefix)+8:]))
			if err != nil {
				return err
			}
			// The index value may be cut (very long names): check.
			if r.UIDValidity != src.UIDValidity && r.OriginalSHA256 == sha && r.Account == src.Account && r.Folder == src.Folder {
				rec = r
				return nil
			}
		}
		return nil
	})
	return rec, err
}

// Get returns record id: a message, a purged message's remains or a
// purge's tombstone (callers check Kind, readable says why there are no
// files); a seal, read through the seal functions, is ErrNotMessage.
func (a *Archive) Get(id uint64) (*Record, error) {
	var rec *Record
	err := a.db.View(func(tx *bbolt.Tx) error {
		var err error
		rec, err = getRecord(tx, id)
		return err
	})
	if err == nil && rec.Kind == KindSeal {
		return nil, fmt.Errorf("%w: record %d is a %s", ErrNotMessage, id, rec.Kind)
	}
	if err == nil {
		a.fillRetention(rec)
	}
	return rec, err
}

// Current returns the newest version of the message record id belongs to.
func (a *Archive) Current(id uint64) (*Record, error) {
	rec, err := a.Get(id)
	if err != nil {
		return nil, err
	}
	key, err := rec.key()
	if err != nil {
		return nil, err
	}
	cur, err := a.lookupKey(key)
	if err != nil || cur == nil {
		return rec, err
	}
	return cur, nil
}

func getRecord(tx *bbolt.Tx, id uint64) (*Record, error) {
	b := tx.Bucket(bucketRecords)
	if b == nil {
		return nil, fmt.Errorf("%w: %d", ErrNotFound, id)
	}
	v := b.Get(u64(id))
	if v == nil {
		return nil, fmt.Errorf("%w: %d", ErrNotFound, id)
	}
	return decodeRecord(id, v)
}

func decodeRecord(id uint64, v []byte) (*Record, error) {
	if len(v) < sha256.Size {
		return nil, fmt.Errorf("%w: %d is too short", ErrCorrupt, id)
	}
	var r Record
	if err := json.Unmarshal(v[sha256.Size:], &r); err != nil {
		return nil, fmt.Errorf("%w: %d: %v", ErrCorrupt, id, err)
	}
	r.Hash = hex.EncodeToString(v[:sha256.Size])
	if r.ID != id {
		return nil, fmt.Errorf("%w: %d says it is record %d", ErrCorrupt, id, r.ID)
	}
	r.normalize()
	return &r, nil
}

// chainHash is the hash of a record: SHA-256 over a domain label, the
// previous record's hash, the record's id and its JSON (which itself holds
// both file digests and the previous hash).
func chainHash(prev []byte, id uint64, body []byte) []byte {
	h := sha256.New()
	h.Write([]byte("smimed archive record v1\n"))
	h.Write(prev)
	h.Write(u64(id))
	h.Write(body)
	return h.Sum(nil)
}

// appendRecord appends r as record id (from NextSequence) to the chain.
func appendRecord(tx *bbolt.Tx, r *Record, id uint64) error {
	recs, meta := tx.Bucket(bucketRecords), tx.Bucket(bucketMeta)
	prev := make([]byte, sha256.Size)
	if head := meta.Get(keyHead); head != nil {
		if len(head) != 8+sha256.Size {
			return fmt.Errorf("%w: chain head", ErrCorrupt)
		}
		copy(prev, head[8:])
	}
	r.ID = id
	r.Prev = hex.EncodeToString(prev)
	r.Hash = ""
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	h := chainHash(prev, id, body)
	if err := recs.Put(u64(id), append(append([]byte{}, h...), body...)); err != nil {
		return err
	}
	if err := meta.Put(keyHead, append(u64(id), h...)); err != nil {
		return err
	}
	r.Hash = hex.EncodeToString(h)
	return nil
}

// Put archives one processed message: the original bytes as fetched, and
// the engine's result. Both files are durable (fsync of file and directory)
// before the index record is committed; Put returns only then. Storing the
// same message again (same source and bytes) writes nothing and returns the
// existing current record with created == false — also when the folder's
// UIDVALIDITY changed meanwhile and the same bytes come back under a new
// UID (see Seen).
func (a *Archive) Put(src Source, original []byte, res *harvest.Result) (rec *Record, created bool, err error) {
	return a.PutSum(src, original, Sum(original), res)
}

// PutSum is Put for a caller that has the original's SHA-256 (Sum) at hand
// already, so that a large message is not hashed twice.
func (a *Archive) PutSum(src Source, original []byte, osha string, res *harvest.Result) (rec *Record, created bool, err error) {
	if a.readOnly {
		return nil, false, ErrReadOnly
	}
	if rec, err := a.Seen(src, osha); err != nil || rec != nil {
		return rec, false, err
	}
	r := a.newRecord(src, &res.Report)
	r.Version = 1
	r.OriginalSHA256, r.OriginalSize = osha, int64(len(original))
	dirs, err := a.storeFiles(r, original, res.Plaintext)
	if err != nil {
		return nil, false, err
	}
	a.classify(r, res.Plaintext)
	return a.commit(r, 0, dirs)
}

// PutUnfetched records a message that was not downloaded (larger than
// max_message_size): it is listed with its reason, so it is not lost from
// sight, but the archive holds no bytes of it.
func (a *Archive) PutUnfetched(src Source, size int64, reason string) (*Record, bool, error) {
	if a.readOnly {
		return nil, false, ErrReadOnly
	}
	osha := Sum(nil)
	// Lookup, not Seen: without bytes there is nothing to recognise a
	// message by across a UIDVALIDITY change (every unfetched message has
	// the SHA-256 of nothing), so a renumbered folder's too-large messages
	// are listed again rather than taken for one another.
	if rec, err := a.Lookup(src, osha); err != nil || rec != nil {
		return rec, false, err
	}
	rep := &harvest.Report{Layers: []string{}, Signatures: []harvest.Signature{}, Harvested: []harvest.Harvested{}, Decryption: harvest.Decryption{Status: harvest.DecryptNone}, Error: reason}
	r := a.newRecord(src, rep)
	r.Version = 1
	r.OriginalSHA256, r.OriginalSize = osha, size
	a.classify(r, nil)
	return a.commit(r, 0, nil)
}

func (a *Archive) newRecord(src Source, rep *harvest.Report) *Record {
	r := &Record{
		Account: src.Account, Folder: src.Folder, UIDValidity: src.UIDValidity, UID: src.UID,
		MessageID: headerValue(rep.MessageID), From: headerValue(rep.From), Subject: headerValue(rep.Subject),
		ArchivedAt: a.now().UTC().Truncate(time.Millisecond),
		Status:     statuses(rep),
		Layers:     rep.Layers, Decryption: rep.Decryption, Signatures: rep.Signatures,
		Harvested: rep.Harvested, Recipients: rep.Recipients, Notes: rep.Notes, Error: rep.Error,
	}
	for _, f := range rep.Unprotected {
		r.Unprotected = append(r.Unprotected, harvest.HeaderField{Name: headerValue(f.Name), Value: headerValue(f.Value)})
	}
	if !src.InternalDate.IsZero() {
		r.Received = src.InternalDate.UTC()
	}
	return r
}

// storeFiles writes the original (content-addressed) and the plaintext
// (Maildir) of r, each synced and renamed into place, and fills in the
// plaintext fields. It returns the directories that must be synced before
// the record is committed (commit passes them to the group commit, which
// syncs each once for all the messages it commits together).
func (a *Archive) storeFiles(r *Record, original, plaintext []byte) ([]string, error) {
	r.To, r.Date = headerFields(plaintext)
	same := bytes.Equal(original, plaintext) // nothing unwrapped: one file
	r.PlaintextSHA256, r.PlaintextSize = r.OriginalSHA256, int64(len(plaintext))
	if !same {
		r.PlaintextSHA256 = Sum(plaintext)
	}
	r.PlaintextFile = a.maildirName(r)
	md := a.MaildirPath()
	final := filepath.Join(md, "new", r.PlaintextFile)
	if err := writeSynced(filepath.Join(md, "tmp", r.PlaintextFile), final, plaintext); err != nil {
		return nil, fmt.Errorf("archive: plaintext of %s: %w", r.Source().Marker(), err)
	}
	odir, err := a.storeOriginal(r, final, same, func(tmp, opath string) error {
		return writeSynced(tmp, opath, original)
	})
	if err != nil {
		return nil, err
	}
	return []string{filepath.Dir(final), odir}, nil
}

// storeOriginal puts r's original in place unless the same bytes are kept
// already: as a second name of the plaintext file (a hard link) when same
// says they are the same bytes, else through write, which writes the
// original to a temporary file named after tmp, syncs it and renames it
// to final. It returns the directory to sync before the record is
// committed (also when the file was there: an earlier attempt may have
// stopped between the rename and the sync).
func (a *Archive) storeOriginal(r *Record, plaintext string, same bool, write func(tmp, final string) error) (string, error) {
	opath := a.OriginalPath(r.OriginalSHA256)
	odir := filepath.Dir(opath)
	if _, err := os.Stat(opath); err == nil {
		return odir, nil
	}
	if err := mkdirDurable(odir); err != nil {
		return "", fmt.Errorf("archive: %w", err)
	}
	if same {
		// One file, two names: the plaintext is the original.
		if err := os.Link(plaintext, opath); err == nil {
			return odir, nil
		}
	}
	// Another message with the same bytes may be stored at the same time:
	// each writer has a temporary file of its own (writeSynced), the
	// rename is atomic and both write the same content.
	tmp := filepath.Join(a.dir, "originals", "tmp", r.OriginalSHA256)
	if err := write(tmp, opath); err != nil {
		return "", fmt.Errorf("archive: original of %s: %w", r.marker(), err)
	}
	return odir, nil
}

// maildirName is a unique Maildir file name derived from the record's
// idempotency key and version, so that a second attempt after a crash
// writes the same file instead of leaving an orphan.
func (a *Archive) maildirName(r *Record) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%d\x00%s\x00%d", r.Account, r.Folder, r.UIDValidity, r.UID, r.OriginalSHA256, r.Version)
	t := r.When().Unix()
	if t < 0 {
		t = 0
	}
	return fmt.Sprintf("%d.%s.smimed", t, hex.EncodeToString(h.Sum(nil))[:32])
}

// writeDurable writes data to a new file named after tmp (a unique suffix
// is added, so concurrent writers never share one), syncs it, renames it
// to final and syncs final's directory.
func writeDurable(tmp, final string, data []byte) error {
	if err := writeSynced(tmp, final, data); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(final))
}

// writeSynced is writeDurable without the directory's sync: the caller
// syncs final's directory before anything refers to the file.
func writeSynced(tmp, final string, data []byte) error {
	_, err := writeFrom(tmp, final, bytes.NewReader(data), nil)
	return err
}

// writeFrom is writeSynced for what r gives, also written to h when h is
// not nil; it returns the size written.
func writeFrom(tmp, final string, r io.Reader, h hash.Hash) (int64, error) {
	f, err := os.CreateTemp(filepath.Dir(tmp), filepath.Base(tmp)+".*") // mode 0600
	if err != nil {
		return 0, err
	}
	tmp = f.Name()
	var w io.Writer = f
	if h != nil {
		w = io.MultiWriter(f, h)
	}
	n, err := io.Copy(w, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		os.Remove(tmp)
		return 0, err
	}
	return n, nil
}

// mkdirDurable creates dir (0700) if missing and then syncs its parent, so
// that the new directory entry survives a crash.
func mkdirDurable(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(dir))
}

// SyncDir fsyncs a directory, so that the entries created or renamed in
// it survive a crash.
func SyncDir(dir string) error { return state.SyncDir(dir) }

// commit appends r to the chain and indexes it, after syncing dirs (where
// storeFiles put r's files). When supersedes is not 0, r replaces that
// record as the current version of its message.
func (a *Archive) commit(r *Record, supersedes uint64, dirs []string) (*Record, bool, error) {
	key, err := r.key()
	if err != nil {
		return nil, false, err
	}
	var existing *Record
	err = a.st.CommitFiles(dirs, func(tx *bbolt.Tx) error {
		existing = nil // fn may run again (state.DB.Commit)
		keys := tx.Bucket(bucketKeys)
		cur := keys.Get(key)
		if cur != nil && supersedes == 0 {
			var err error
			existing, err = getRecord(tx, binary.BigEndian.Uint64(cur))
			return err
		}
		if supersedes != 0 && (cur == nil || binary.BigEndian.Uint64(cur) != supersedes) {
			return fmt.Errorf("%w: record %d is no longer the current version", ErrConflict, supersedes)
		}
		id, err := tx.Bucket(bucketRecords).NextSequence()
		if err != nil {
			return err
		}
		r.Supersedes = supersedes
		if err := appendRecord(tx, r, id); err != nil {
			return err
		}
		if err := keys.Put(key, u64(id)); err != nil {
			return err
		}
		idx := tx.Bucket(bucketIndex)
		if supersedes != 0 {
			// The user's copy must follow the new version; the daemon
			// does that (PendingCopies), also after a retry run while it
			// was stopped.
			if err := tx.Bucket(bucketPending).Put(u64(id), nil); err != nil {
				return err
			}
			old, err := getRecord(tx, supersedes)
			if err != nil {
				return err
			}
			for _, k := range indexKeys(old) {
				if err := idx.Delete(k); err != nil {
					return err
				}
			}
		}
		summary := indexSummary(r)
		for _, k := range indexKeys(r) {
			var v []byte
			if broadIndex(k[0]) {
				v = summary
			}
			if err := idx.Put(k, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("archive: index %s: %w", r.marker(), err)
	}
	if existing != nil {
		return existing, false, nil
	}
	r.normalize()
	return r, true, nil
}
