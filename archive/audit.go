package archive

// The audit log: who read the archive, when, and what. Reading plaintext
// mail is what an archive of decrypted mail must account for, so every
// read through the admin interface (daemon.ArchiveAPI) leaves an entry
// before any data is handed out.
//
// In the state file, beside the records (archive.go):
//
//	archive_audit  id (8 bytes, big-endian) → hash (32) | entry JSON
//	archive_meta   "audit_head" → id (8) | hash (32): the audit chain head
//
// Entries form a hash chain of their own, like the records (see
// auditHash): altering or deleting an entry, or cutting entries off the
// end without also rewriting the head, is found by VerifyAudit. As with any
// hash chain kept beside the data, someone who can write the file can
// rebuild the whole chain; compare the head with a copy kept elsewhere
// (a backup, a log line) to notice that.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"go.etcd.io/bbolt"
)

var (
	bucketAudit  = []byte("archive_audit")
	keyAuditHead = []byte("audit_head")
)

// Audit actions: what a reader did.
const (
	AuditList         = "list"          // records' index fields (list, or one record by id)
	AuditShow         = "show"          // a plaintext
	AuditShowOriginal = "show-original" // an original as fetched
	AuditExport       = "export"        // a message read for an export
	AuditVerify       = "verify"        // the chain and every file checked
	AuditRetry        = "retry"         // records re-processed
	AuditBackup       = "backup"        // a copy of the whole store
	AuditFailed       = "failed"        // undecryptable records listed (archive failed)
	AuditAudit        = "audit"         // the audit log itself
	AuditRefused      = "refused"       // a caller refused at the control socket
	AuditTrust        = "trust"         // a certificate trusted by an administrator (changes later verdicts)
	AuditUntrust      = "untrust"       // an administrator's trust withdrawn
	AuditCRLImport    = "crl-import"    // a revocation list imported by an administrator (changes later verdicts)
	AuditImport       = "import"        // a certificate imported by an administrator (the gateway encrypts to it)
	AuditProof        = "proof"         // a record's inclusion proof (its index fields and hashes)
)

// MaxAuditDetail bounds an entry's Detail (bytes); longer details are cut.
const MaxAuditDetail = 1024

// AuditEntry is one access to the archive. Its JSON form is what
// `smimed archive audit --json` prints.
type AuditEntry struct {
	ID   uint64    `json:"id"`
	Time time.Time `json:"time"`
	UID  int       `json:"uid"`
	GID  int       `json:"gid"`
	PID  int       `json:"pid"`
	// User is the name of UID when it could be looked up, else empty.
	User string `json:"user,omitempty"`
	// Via is "socket" (through the daemon's control socket) or "direct"
	// (a command that opened the store itself).
	Via    string `json:"via"`
	Action string `json:"action"`
	// Detail is what was asked for: a query, record ids. Never message
	// content.
	Detail string `json:"detail"`

	// Prev and Hash chain the entries as Record.Prev and Record.Hash do.
	Prev string `json:"prev"`
	Hash string `json:"hash,omitempty"`
}

// auditHash is the hash of an audit entry: SHA-256 over a domain label
// (so an entry can never pass for a record), the previous entry's hash,
// the entry's id and its JSON (which holds the previous hash too).
func auditHash(prev []byte, id uint64, body []byte) []byte {
	h := sha256.New()
	h.Write([]byte("smimed archive audit v1\n"))
	h.Write(prev)
	h.Write(u64(id))
	h.Write(body)
	return h.Sum(nil)
}

// truncateUTF8 cuts s to at most n bytes without splitting a character,
// marking the cut.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	i := n - len(mark)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i-- // s[i] continues a character that starts before it
	}
	return s[:i] + mark
}

// Audit appends e to the audit log, durably (the transaction is synced
// before Audit returns). ID, Time (when zero), Prev and Hash are filled
// in; Detail is cut to MaxAuditDetail bytes. A read-only archive cannot
// audit, so it returns ErrReadOnly: callers must then not hand out data.
func (a *Archive) Audit(e AuditEntry) error {
	if a.readOnly {
		return fmt.Errorf("archive: audit: %w", ErrReadOnly)
	}
	if e.Time.IsZero() {
		e.Time = a.now()
	}
	e.Time = e.Time.UTC().Truncate(time.Millisecond)
	e.Detail = truncateUTF8(e.Detail, MaxAuditDetail)
	err := a.st.Commit(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketAudit)
		if err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		id, err := b.NextSequence()
		if err != nil {
			return err
		}
		prev := make([]byte, sha256.Size)
		if head := meta.Get(keyAuditHead); head != nil {
			if len(head) != 8+sha256.Size {
				return fmt.Errorf("%w: audit chain head", ErrCorrupt)
			}
			copy(prev, head[8:])
		}
		e.ID, e.Prev, e.Hash = id, hex.EncodeToString(prev), ""
		body, err := json.Marshal(e)
		if err != nil {
			return err
		}
		h := auditHash(prev, id, body)
		if err := b.Put(u64(id), append(append([]byte{}, h...), body...)); err != nil {
			return err
		}
		return meta.Put(keyAuditHead, append(u64(id), h...))
	})
	if err != nil {
		return fmt.Errorf("archive: audit %s: %w", e.Action, err)
	}
	return nil
}

func decodeAudit(id uint64, v []byte) (*AuditEntry, error) {
	if len(v) < sha256.Size {
		return nil, fmt.Errorf("%w: audit entry %d is too short", ErrCorrupt, id)
	}
	var e AuditEntry
	if err := json.Unmarshal(v[sha256.Size:], &e); err != nil {
		return nil, fmt.Errorf("%w: audit entry %d: %v", ErrCorrupt, id, err)
	}
	e.Hash = hex.EncodeToString(v[:sha256.Size])
	if e.ID != id {
		return nil, fmt.Errorf("%w: audit entry %d says it is entry %d", ErrCorrupt, id, e.ID)
	}
	return &e, nil
}

// bucketBatches passes the entries of a bucket keyed by 8-byte ids (such
// as archive_audit and archive_records) to fn in id order, at most
// listBatch per read transaction; fn runs outside any transaction, so it
// may write (an audit entry, say) without deadlocking bbolt, and a slow fn
// never holds a transaction open.
func (a *Archive) bucketBatches(bucket []byte, from uint64, fn func(id uint64, v []byte) error) error {
	var after []byte
	if from > 0 {
		after = u64(from)
	}
	for {
		type item struct {
			id uint64
			v  []byte
		}
		var batch []item
		err := a.db.View(func(tx *bbolt.Tx) error {
			b := tx.Bucket(bucket)
			if b == nil {
				return nil
			}
			c := b.Cursor()
			var k, v []byte
			if after == nil {
				k, v = c.First()
			} else if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
				k, v = c.Next()
			}
			for ; k != nil && len(batch) < listBatch; k, v = c.Next() {
				if len(k) != 8 {
					return fmt.Errorf("%w: malformed key %x in %s", ErrCorrupt, k, bucket)
				}
				batch = append(batch, item{binary.BigEndian.Uint64(k), bytes.Clone(v)})
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			return nil
		}
		after = u64(batch[len(batch)-1].id)
		for _, it := range batch {
			if err := fn(it.id, it.v); err != nil {
				return err
			}
		}
	}
}

// AuditLog passes the audit entries written at or after since to fn,
// oldest first (in the order they were written), until fn returns an
// error, which AuditLog returns.
func (a *Archive) AuditLog(since time.Time, fn func(AuditEntry) error) error {
	var stop error
	err := a.bucketBatches(bucketAudit, 0, func(id uint64, v []byte) error {
		e, err := decodeAudit(id, v)
		if err != nil {
			return err
		}
		if e.Time.Before(since) {
			return nil
		}
		if err := fn(*e); err != nil {
			stop = err
			return err
		}
		return nil
	})
	if stop != nil {
		return stop
	}
	if err != nil {
		return fmt.Errorf("archive: audit log: %w", err)
	}
	return nil
}

// VerifyAudit recomputes the audit chain and reports each altered,
// deleted or unreadable entry, in the form of Verify: Records counts the
// entries, HeadID and Head are the last entry's. The error is non-nil only
// when the log cannot be read at all.
func (a *Archive) VerifyAudit() (*VerifyResult, error) {
	res := &VerifyResult{Problems: []Problem{}}
	bad := func(id uint64, format string, args ...any) {
		res.Problems = append(res.Problems, Problem{ID: id, What: fmt.Sprintf(format, args...)})
	}
	prev := make([]byte, sha256.Size)
	var expect uint64 = 1
	walk := func(after uint64) error {
		return a.bucketBatches(bucketAudit, after, func(id uint64, v []byte) error {
			for ; expect < id; expect++ {
				bad(expect, "audit entry missing (deleted)")
			}
			expect = id + 1
			res.Records++
			if len(v) < sha256.Size {
				bad(id, "audit entry is truncated")
				return nil
			}
			stored, body := v[:sha256.Size], v[sha256.Size:]
			if !bytes.Equal(auditHash(prev, id, body), stored) {
				bad(id, "audit entry altered: its hash does not match its content and the previous entry's hash")
			}
			e, err := decodeAudit(id, v)
			switch {
			case err != nil:
				bad(id, "%v", err)
			case e.Prev != hex.EncodeToString(prev):
				bad(id, "audit entry names another previous entry (chain broken)")
			}
			prev = bytes.Clone(stored)
			return nil
		})
	}
	// Walk, then compare with the head; reads going on meanwhile add
	// entries and move the head: walk on to it.
	var headID uint64
	var head []byte
	for round := 0; ; round++ {
		if err := walk(expect - 1); err != nil {
			return nil, fmt.Errorf("archive: verify audit: %w", err)
		}
		headID, head = 0, nil
		err := a.db.View(func(tx *bbolt.Tx) error {
			if m := tx.Bucket(bucketMeta); m != nil {
				if h := m.Get(keyAuditHead); h != nil {
					if len(h) != 8+sha256.Size {
						bad(0, "the audit chain head is malformed")
					} else {
						headID, head = binary.BigEndian.Uint64(h), bytes.Clone(h[8:])
					}
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("archive: verify audit: %w", err)
		}
		if headID <= expect-1 || round == 10 {
			break
		}
	}
	last := expect - 1
	switch {
	case head == nil && res.Records > 0:
		bad(0, "the audit chain head is missing")
	case head != nil && headID != last:
		bad(headID, "the audit chain head names entry %d but the last entry is %d (entries deleted or added behind the chain's back)", headID, last)
	case head != nil && !bytes.Equal(head, prev):
		bad(headID, "the audit chain head does not match the last entry's hash")
	}
	res.HeadID = last
	res.Head = hex.EncodeToString(prev)
	return res, nil
}
