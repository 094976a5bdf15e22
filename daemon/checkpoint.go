package daemon

// This file keeps the per-folder checkpoints: for every account and folder,
// the folder's UIDVALIDITY and the highest UID below which (inclusive) every
// message has been durably processed (RFC 9051 2.3.1.1). They live in the
// bucket "checkpoints" (registered at version 1) of the state file
// (package harvest/state), so one lock covers the daemon's whole state.
//
//	checkpoints  account + "\x00" + folder → uidvalidity (4 bytes) | uid (4 bytes), big-endian

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/bbolt"

	"github.com/smimed/smimed/harvest/state"
)

var bucketCheckpoints = []byte("checkpoints")

func init() {
	state.Register(state.Bucket{Name: string(bucketCheckpoints), Version: 1})
}

// Checkpoint errors; returned errors wrap them.
var (
	ErrCheckpointKey     = errors.New("daemon: account or folder name contains NUL")
	ErrCheckpointCorrupt = errors.New("daemon: malformed checkpoint record")
)

// Checkpoint is how far a folder has been processed: every message with a
// UID <= UID under this UIDVALIDITY is durably done. A different
// UIDVALIDITY on the server invalidates it.
type Checkpoint struct {
	UIDValidity uint32
	UID         uint32
}

// Checkpoints stores one Checkpoint per account and folder. It is safe for
// concurrent use (bbolt serialises the writes).
type Checkpoints struct {
	db *state.DB
}

// NewCheckpoints keeps the checkpoints in the state file db, opened
// read-write (its Open created the bucket).
func NewCheckpoints(db *state.DB) (*Checkpoints, error) {
	if db.ReadOnly() {
		return nil, fmt.Errorf("daemon: checkpoints bucket: %w", bbolt.ErrDatabaseReadOnly)
	}
	return &Checkpoints{db: db}, nil
}

func checkpointKey(account, folder string) ([]byte, error) {
	if strings.IndexByte(account, 0) >= 0 || strings.IndexByte(folder, 0) >= 0 {
		return nil, fmt.Errorf("%w: %q/%q", ErrCheckpointKey, account, folder)
	}
	return []byte(account + "\x00" + folder), nil
}

// Get returns the checkpoint of account's folder; ok is false when none has
// been recorded.
func (c *Checkpoints) Get(account, folder string) (cp Checkpoint, ok bool, err error) {
	key, err := checkpointKey(account, folder)
	if err != nil {
		return Checkpoint{}, false, err
	}
	err = c.db.Bolt().View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketCheckpoints).Get(key)
		if v == nil {
			return nil
		}
		if len(v) != 8 {
			return fmt.Errorf("%w: %s/%s: %d bytes", ErrCheckpointCorrupt, account, folder, len(v))
		}
		cp = Checkpoint{UIDValidity: binary.BigEndian.Uint32(v[:4]), UID: binary.BigEndian.Uint32(v[4:])}
		ok = true
		return nil
	})
	if err != nil {
		return Checkpoint{}, false, err
	}
	return cp, ok, nil
}

// Set records the checkpoint of account's folder, replacing any earlier
// one (also one under another UIDVALIDITY). It returns once the bbolt
// transaction is committed and synced to disk.
func (c *Checkpoints) Set(account, folder string, cp Checkpoint) error {
	key, err := checkpointKey(account, folder)
	if err != nil {
		return err
	}
	var v [8]byte
	binary.BigEndian.PutUint32(v[:4], cp.UIDValidity)
	binary.BigEndian.PutUint32(v[4:], cp.UID)
	err = c.db.Commit(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketCheckpoints).Put(key, v[:])
	})
	if err != nil {
		return fmt.Errorf("daemon: checkpoint %s/%s: %w", account, folder, err)
	}
	return nil
}
