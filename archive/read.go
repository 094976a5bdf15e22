package archive

// Reading what the archive holds: a record's two files, checked against
// the hashes the record keeps, and the index's size and chain head.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"

	"go.etcd.io/bbolt"
)

// ReadOriginal returns the original bytes of r, checked against the
// record's SHA-256.
func (a *Archive) ReadOriginal(r *Record) ([]byte, error) {
	if err := readable(r); err != nil {
		return nil, err
	}
	return readChecked(a.OriginalPath(r.OriginalSHA256), r.OriginalSHA256, r.ID)
}

// ReadPlaintext returns the plaintext of r, checked against the record's
// SHA-256.
func (a *Archive) ReadPlaintext(r *Record) ([]byte, error) {
	if err := readable(r); err != nil {
		return nil, err
	}
	p, err := a.PlaintextPath(r)
	if err != nil {
		return nil, err
	}
	return readChecked(p, r.PlaintextSHA256, r.ID)
}

// readable says why r has no files to read, if it has none.
func readable(r *Record) error {
	switch {
	case r.Kind == KindPurged:
		return fmt.Errorf("%w: record %d was purged (tombstone %d)", ErrNotFound, r.ID, r.PurgedBy)
	case r.Kind != KindMessage:
		return fmt.Errorf("%w: record %d is a %s, not a message", ErrNotFound, r.ID, r.Kind)
	case r.PlaintextFile == "":
		return fmt.Errorf("archive: record %d: the message was not fetched (%s)", r.ID, r.Error)
	}
	return nil
}

func readChecked(path, sha string, id uint64) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("archive: record %d: %w", id, err)
	}
	if got := Sum(b); got != sha {
		return nil, fmt.Errorf("archive: record %d: %s was altered (SHA-256 %s, the record says %s); run smimed archive verify", id, path, got, sha)
	}
	return b, nil
}

// Count returns the number of message records (all versions; seals
// are not counted).
func (a *Archive) Count() (int, error) {
	n := 0
	err := a.db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketRecords); b != nil {
			n = b.Stats().KeyN
		}
		if b := tx.Bucket(bucketSeals); b != nil {
			n -= b.Stats().KeyN
		}
		return nil
	})
	return n, err
}

// Head returns the chain head: the last record's id and hash (hex).
func (a *Archive) Head() (uint64, string, error) {
	var id uint64
	var h string
	err := a.db.View(func(tx *bbolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if m == nil {
			return nil
		}
		if v := m.Get(keyHead); len(v) == 40 {
			id = binary.BigEndian.Uint64(v)
			h = fmt.Sprintf("%x", v[8:])
		}
		return nil
	})
	return id, h, err
}

// StoredRecord returns record id as the index keeps it: the record's JSON
// exactly as it was hashed into the chain (without the 32-byte hash that
// precedes it in the bucket). The WORM copy uploads these bytes.
func (a *Archive) StoredRecord(id uint64) ([]byte, error) {
	var out []byte
	err := a.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		var v []byte
		if b != nil {
			v = b.Get(u64(id))
		}
		switch {
		case v == nil:
			return fmt.Errorf("%w: %d", ErrNotFound, id)
		case len(v) < sha256.Size:
			return fmt.Errorf("%w: %d is too short", ErrCorrupt, id)
		}
		out = bytes.Clone(v[sha256.Size:])
		return nil
	})
	return out, err
}
