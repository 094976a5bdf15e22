package worm

// The outbox: objects (and legal holds) still to be written to the
// bucket, kept in the state file so that a restart or an S3 outage loses
// none of them.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/harvest/state"
)

var (
	bucketOutbox = []byte("worm_outbox")
	bucketMeta   = []byte("worm_meta")
	keyCursor    = []byte("cursor")
	prefixPut    = []byte("put/")
	prefixHold   = []byte("hold/")
)

func init() {
	for _, b := range [][]byte{bucketOutbox, bucketMeta} {
		state.Register(state.Bucket{Name: string(b), Version: 1})
	}
}

// Kinds of object.
const (
	KindOriginal  = "original"
	KindPlaintext = "plaintext"
	KindRecord    = "record"
	KindFile      = "file"
)

// entry is one object waiting in the outbox.
type entry struct {
	Kind   string `json:"kind"`
	Record uint64 `json:"record,omitempty"` // the record it belongs to (for a plaintext: whose file to read)
	SHA256 string `json:"sha256,omitempty"` // hex, what the local file must hash to ("" for a record: read it then)
	Path   string `json:"path,omitempty"`   // KindFile: the file
	// RetainUntil is when the object's lock may end.
	RetainUntil time.Time `json:"retain_until"`
	Hold        bool      `json:"hold,omitempty"`
	Queued      time.Time `json:"queued"`
	Attempts    int       `json:"attempts,omitempty"`
	NextTry     time.Time `json:"next_try,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
}

// holdOp is a legal hold to set (On) or clear on an object.
type holdOp struct {
	On        bool      `json:"on"`
	Attempts  int       `json:"attempts,omitempty"`
	NextTry   time.Time `json:"next_try,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

// Keys of a record's objects.
func originalKey(sha string) string  { return "originals/" + sha }
func plaintextKey(sha string) string { return "plaintexts/" + sha }

// RecordKey is the object key of record id.
func RecordKey(id uint64) string { return fmt.Sprintf("records/%020d.json", id) }

// objectsOf lists the objects of one record.
func objectsOf(r *archive.Record) map[string]entry {
	out := map[string]entry{RecordKey(r.ID): {Kind: KindRecord, Record: r.ID}}
	if r.PlaintextFile == "" || r.Kind != archive.KindMessage { // not fetched, purged, a seal or tombstone: the record is all there is
		return out
	}
	if r.OriginalSHA256 != "" {
		out[originalKey(r.OriginalSHA256)] = entry{Kind: KindOriginal, Record: r.ID, SHA256: r.OriginalSHA256}
	}
	if r.PlaintextSHA256 != "" && r.PlaintextSHA256 != r.OriginalSHA256 {
		out[plaintextKey(r.PlaintextSHA256)] = entry{Kind: KindPlaintext, Record: r.ID, SHA256: r.PlaintextSHA256}
	}
	return out
}

// addPut queues an object; one already queued keeps the later of the two
// retain-until dates and a hold if either has one.
func addPut(b *bbolt.Bucket, key string, e entry) error {
	k := append(append([]byte{}, prefixPut...), key...)
	if v := b.Get(k); v != nil {
		var old entry
		if json.Unmarshal(v, &old) == nil {
			if old.RetainUntil.After(e.RetainUntil) {
				e.RetainUntil = old.RetainUntil
			}
			e.Hold = e.Hold || old.Hold
			e.Queued = old.Queued
		}
	}
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return b.Put(k, v)
}

func getCursor(tx *bbolt.Tx) uint64 {
	if v := tx.Bucket(bucketMeta).Get(keyCursor); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func putCursor(tx *bbolt.Tx, id uint64) error {
	return tx.Bucket(bucketMeta).Put(keyCursor, binary.BigEndian.AppendUint64(nil, id))
}

// Backlog is what the outbox holds.
type Backlog struct {
	Objects int `json:"objects"` // objects still to be written
	Holds   int `json:"holds"`   // legal holds still to be set or cleared
	// Unqueued is how many archive records are not yet in the outbox
	// (the uploader adds them in batches).
	Unqueued uint64 `json:"unqueued"`
	// Oldest is when the longest-waiting object was queued.
	Oldest    time.Time `json:"oldest,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

// ReadBacklog counts the outbox in db for the records of a (read-only opens
// too, for `smimed status` without a service).
func ReadBacklog(a *archive.Archive, db *state.DB) (Backlog, error) {
	head, _, err := a.Head()
	if err != nil {
		return Backlog{}, err
	}
	var bl Backlog
	err = db.Bolt().View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		if b == nil || tx.Bucket(bucketMeta) == nil {
			bl.Unqueued = head
			return nil
		}
		if cur := getCursor(tx); head > cur {
			bl.Unqueued = head - cur
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			switch {
			case bytes.HasPrefix(k, prefixPut):
				bl.Objects++
				var e entry
				if json.Unmarshal(v, &e) == nil {
					if bl.Oldest.IsZero() || e.Queued.Before(bl.Oldest) {
						bl.Oldest = e.Queued
					}
					if e.LastError != "" {
						bl.LastError = e.LastError
					}
				}
			case bytes.HasPrefix(k, prefixHold):
				bl.Holds++
			}
		}
		return nil
	})
	return bl, err
}
