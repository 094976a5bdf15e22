package archive

// The state of each record's user copy, as the index keeps it: where the
// copy went, or why it is still to be made; and the queue of records whose
// copy the daemon still has to make or bring up to date (Copier, in
// copier.go, is what moves a record through these states).

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"go.etcd.io/bbolt"
)

// CopyKind is what became of a record's user copy.
type CopyKind int

const (
	// CopyNotWanted: no copy, by configuration — the account has no
	// archive_folder, or its archive_folder_messages leaves the message
	// out. Never stored.
	CopyNotWanted CopyKind = iota
	// CopyStored: the copy is in Folder under UID (0 when the server
	// does not say, without UIDPLUS).
	CopyStored
	// CopyPending: the server refused the copy (NO to APPEND: over
	// quota, too big), or it failed maxCopyAttempts times in a row;
	// Reason says why. The record is in PendingCopies and the copy is
	// tried again by UpdateCopies.
	CopyPending
)

func (k CopyKind) String() string {
	switch k {
	case CopyNotWanted:
		return "not wanted"
	case CopyStored:
		return "stored"
	case CopyPending:
		return "pending"
	}
	return "CopyKind(" + strconv.Itoa(int(k)) + ")"
}

// CopyState is where the user's readable copy of a record went, or why it
// could not go there.
type CopyState struct {
	Kind   CopyKind
	Folder string    // the archive folder as configured (Stored, Pending)
	UID    uint32    // Stored: the copy's UID, 0 when the server does not say
	Reason string    // Pending: the server's refusal or the last failure
	At     time.Time // when it was stored, or set aside as pending
}

// String is the state as the log line of a processed message shows it:
// "" when not wanted, FOLDER/UID when stored, "pending: REASON".
func (s CopyState) String() string {
	switch s.Kind {
	case CopyStored:
		return fmt.Sprintf("%s/%d", s.Folder, s.UID)
	case CopyPending:
		return "pending: " + s.Reason
	}
	return ""
}

// diskCopy is a CopyState in the archive_copies bucket, as JSON. A pending
// copy is one with an error; this is the format smimed has always
// written, so older and newer versions read each other's records.
type diskCopy struct {
	Folder     string    `json:"folder"`
	UID        uint32    `json:"uid,omitempty"`
	AppendedAt time.Time `json:"appended_at,omitzero"`
	Error      string    `json:"error,omitempty"`
	FailedAt   time.Time `json:"failed_at,omitzero"`
}

func encodeCopy(s CopyState) ([]byte, error) {
	d := diskCopy{Folder: s.Folder}
	switch s.Kind {
	case CopyStored:
		d.UID, d.AppendedAt = s.UID, s.At
	case CopyPending:
		d.Error, d.FailedAt = s.Reason, s.At
		if d.Error == "" {
			d.Error = "no reason given" // else it would read back as stored
		}
	default:
		return nil, fmt.Errorf("a copy %s is not stored", s.Kind)
	}
	return json.Marshal(d)
}

func decodeCopy(v []byte) (*CopyState, error) {
	var d diskCopy
	if err := json.Unmarshal(v, &d); err != nil {
		return nil, err
	}
	if d.Error != "" {
		return &CopyState{Kind: CopyPending, Folder: d.Folder, Reason: d.Error, At: d.FailedAt}, nil
	}
	return &CopyState{Kind: CopyStored, Folder: d.Folder, UID: d.UID, At: d.AppendedAt}, nil
}

// SetCopy records the state of the user's copy of record id: stored or
// pending (a copy that is not wanted is not recorded).
func (a *Archive) SetCopy(id uint64, s CopyState) error {
	if a.readOnly {
		return ErrReadOnly
	}
	v, err := encodeCopy(s)
	if err != nil {
		return fmt.Errorf("archive: record %d copy: %w", id, err)
	}
	err = a.st.Commit(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketAppending).Delete(u64(id)); err != nil {
			return err
		}
		return tx.Bucket(bucketCopies).Put(u64(id), v)
	})
	if err != nil {
		return fmt.Errorf("archive: record %d copy: %w", id, err)
	}
	return nil
}

// AppendBegins records, durably, that an APPEND of record id's copy
// begins now; SetCopy clears it. A record found with it after a crash (or
// a failed APPEND) may have its copy in the folder, or arriving there: the
// server may still be saving an APPEND whose client went away.
func (a *Archive) AppendBegins(id uint64, at time.Time) error {
	if a.readOnly {
		return ErrReadOnly
	}
	v := binary.BigEndian.AppendUint64(nil, uint64(at.UnixNano()))
	err := a.st.Commit(func(tx *bbolt.Tx) error { return tx.Bucket(bucketAppending).Put(u64(id), v) })
	if err != nil {
		return fmt.Errorf("archive: record %d copy: %w", id, err)
	}
	return nil
}

// AppendBegan returns when the last unrecorded APPEND of record id's copy
// began (AppendBegins), and whether there is one.
func (a *Archive) AppendBegan(id uint64) (time.Time, bool, error) {
	var at time.Time
	var ok bool
	err := a.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketAppending)
		if b == nil {
			return nil
		}
		if v := b.Get(u64(id)); len(v) == 8 {
			at, ok = time.Unix(0, int64(binary.BigEndian.Uint64(v))), true
		}
		return nil
	})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("archive: record %d copy: %w", id, err)
	}
	return at, ok, nil
}

// GetCopy returns the state of the user's copy of record id, or nil if
// none was recorded (none made yet, or none wanted).
func (a *Archive) GetCopy(id uint64) (*CopyState, error) {
	var s *CopyState
	err := a.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketCopies)
		if b == nil {
			return nil
		}
		v := b.Get(u64(id))
		if v == nil {
			return nil
		}
		var err error
		s, err = decodeCopy(v)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("archive: record %d copy: %w", id, err)
	}
	return s, nil
}

// PendingCopies returns the records whose user copy is still to be made or
// brought up to date, oldest first: new versions written by Reprocess, and
// copies set aside as CopyPending.
func (a *Archive) PendingCopies() ([]uint64, error) {
	ids, err := a.bucketIDs(bucketPending)
	if err != nil {
		return nil, fmt.Errorf("archive: pending copies: %w", err)
	}
	return ids, nil
}

// bucketIDs returns the record ids that are the keys of bucket name,
// in order.
func (a *Archive) bucketIDs(name []byte) ([]uint64, error) {
	var ids []uint64
	err := a.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(name)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error {
			if len(k) == 8 {
				ids = append(ids, binary.BigEndian.Uint64(k))
			}
			return nil
		})
	})
	return ids, err
}

// CopyPending adds id to PendingCopies: its user copy is still to be made
// (the server refused it; the daemon tries again later).
func (a *Archive) CopyPending(id uint64) error {
	if a.readOnly {
		return ErrReadOnly
	}
	err := a.st.Commit(func(tx *bbolt.Tx) error { return tx.Bucket(bucketPending).Put(u64(id), nil) })
	if err != nil {
		return fmt.Errorf("archive: record %d: %w", id, err)
	}
	return nil
}

// CopyDone removes id from PendingCopies.
func (a *Archive) CopyDone(id uint64) error {
	if a.readOnly {
		return ErrReadOnly
	}
	err := a.st.Commit(func(tx *bbolt.Tx) error { return tx.Bucket(bucketPending).Delete(u64(id)) })
	if err != nil {
		return fmt.Errorf("archive: record %d: %w", id, err)
	}
	return nil
}
