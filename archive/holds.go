package archive

// Legal holds and GDPR restrictions.
//
// A hold is a case name and a query (the list filters): every current
// message the query matches is held, also mail archived after the hold
// was added. A message may be held by several cases. Held mail is never
// purged.
//
// A restriction (GDPR art. 18) is kept per message (all its versions):
// the message is hidden from every query but an auditor's and from
// exports, and it is not purged, while the restriction lasts: until its
// Until (the message's retain-until when it was restricted) or until it
// is lifted. When the retention ends the restriction has done its work:
// the message is expired like any other, and purging it is the erasure
// GDPR asks for then.
//
// In the state file:
//
//	archive_holds       case → Hold JSON
//	archive_restricted  idempotency key of the message → Restriction JSON

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/smimed/smimed/harvest/state"
)

var (
	bucketHolds      = []byte("archive_holds")
	bucketRestricted = []byte("archive_restricted")
)

func init() {
	for _, b := range [][]byte{bucketHolds, bucketRestricted} {
		state.Register(state.Bucket{Name: string(b), Version: 1})
	}
}

// ErrExists is returned, wrapped, for a hold whose case name is taken.
var ErrExists = errors.New("archive: already exists")

// Hold is one legal hold.
type Hold struct {
	Case   string    `json:"case"`
	Query  Query     `json:"query"`
	Reason string    `json:"reason,omitempty"`
	By     string    `json:"by"` // who added it ("uid 0 (root)")
	At     time.Time `json:"at"`
}

// Restriction is one message's GDPR restriction.
type Restriction struct {
	ID     uint64    `json:"id"` // the record restricted (any version of the message)
	Reason string    `json:"reason"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
	Until  time.Time `json:"until"` // the restriction ends after this second
}

// Active reports whether the restriction is in force at now.
func (x *Restriction) Active(now time.Time) bool {
	return x != nil && now.Before(x.Until.Add(time.Second))
}

// HoldObserver is told when a hold is added or removed, after it was
// committed: ids are the current records the hold now covers (added), or
// those no other hold covers any more (removed). The WORM copy sets or
// clears its objects' legal hold from it. An error is returned to the
// admin who changed the hold; the hold itself stays changed.
type HoldObserver interface {
	HoldChanged(h Hold, added bool, ids []uint64) error
}

type holdObserver struct{ o HoldObserver }

// SetHoldObserver sets who is told of hold changes (nil: nobody).
func (a *Archive) SetHoldObserver(o HoldObserver) {
	if o == nil {
		a.holds.Store(nil)
		return
	}
	a.holds.Store(&holdObserver{o})
}

// MaxCaseName bounds a case name (bytes).
const MaxCaseName = 200

// Holds returns every hold, by case name.
func (a *Archive) Holds() ([]Hold, error) {
	var out []Hold
	err := a.db.View(func(tx *bbolt.Tx) error {
		var err error
		out, err = readHolds(tx)
		return err
	})
	return out, err
}

func readHolds(tx *bbolt.Tx) ([]Hold, error) {
	b := tx.Bucket(bucketHolds)
	if b == nil {
		return nil, nil
	}
	var out []Hold
	err := b.ForEach(func(k, v []byte) error {
		var h Hold
		if err := json.Unmarshal(v, &h); err != nil {
			return fmt.Errorf("%w: hold %q: %v", ErrCorrupt, k, err)
		}
		out = append(out, h)
		return nil
	})
	return out, err
}

// heldBy lists the cases among holds that hold r.
func heldBy(holds []Hold, r *Record) []string {
	var out []string
	for i := range holds {
		q := holds[i].Query.clean()
		if r.Kind == KindMessage && q.match(r) {
			out = append(out, holds[i].Case)
		}
	}
	return out
}

// HeldBy lists the cases that hold r (none: not held).
func (a *Archive) HeldBy(r *Record) ([]string, error) {
	holds, err := a.Holds()
	if err != nil {
		return nil, err
	}
	return heldBy(holds, r), nil
}

// AddHold adds a hold; a case of that name must not exist. It returns
// the ids of the current records the hold covers now.
func (a *Archive) AddHold(h Hold) ([]uint64, error) {
	if a.readOnly {
		return nil, ErrReadOnly
	}
	h.Case = strings.TrimSpace(h.Case)
	if h.Case == "" || len(h.Case) > MaxCaseName || strings.ContainsAny(h.Case, "\x00\r\n") {
		return nil, fmt.Errorf("archive: hold: a case name is 1 to %d bytes on one line", MaxCaseName)
	}
	if err := h.Query.Check(); err != nil {
		return nil, fmt.Errorf("archive: hold %s: %w", h.Case, err)
	}
	h.Query.Limit = 0
	if h.At.IsZero() {
		h.At = a.now().UTC().Truncate(time.Second)
	}
	v, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	err = a.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketHolds)
		if b.Get([]byte(h.Case)) != nil {
			return fmt.Errorf("%w: a hold named %q (remove it first, or choose another name)", ErrExists, h.Case)
		}
		return b.Put([]byte(h.Case), v)
	})
	if err != nil {
		return nil, fmt.Errorf("archive: hold: %w", err)
	}
	var ids []uint64
	if err := a.List(h.Query, func(r *Record) error { ids = append(ids, r.ID); return nil }); err != nil {
		return nil, err
	}
	return ids, a.tellHold(h, true, ids)
}

// RemoveHold removes the hold of case name and returns it with the ids
// of the current records no hold covers any more.
func (a *Archive) RemoveHold(name string) (*Hold, []uint64, error) {
	if a.readOnly {
		return nil, nil, ErrReadOnly
	}
	var h Hold
	var rest []Hold
	err := a.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketHolds)
		v := b.Get([]byte(name))
		if v == nil {
			return fmt.Errorf("%w: no hold named %q", ErrNotFound, name)
		}
		if err := json.Unmarshal(v, &h); err != nil {
			return fmt.Errorf("%w: hold %q: %v", ErrCorrupt, name, err)
		}
		if err := b.Delete([]byte(name)); err != nil {
			return err
		}
		var err error
		rest, err = readHolds(tx)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("archive: hold: %w", err)
	}
	var ids []uint64
	err = a.List(h.Query, func(r *Record) error {
		if len(heldBy(rest, r)) == 0 {
			ids = append(ids, r.ID)
		}
		return nil
	})
	if err != nil {
		return &h, nil, err
	}
	return &h, ids, a.tellHold(h, false, ids)
}

func (a *Archive) tellHold(h Hold, added bool, ids []uint64) error {
	o := a.holds.Load()
	if o == nil {
		return nil
	}
	if err := o.o.HoldChanged(h, added, ids); err != nil {
		return fmt.Errorf("archive: hold %s changed, but the WORM copy's legal holds were not: %w", h.Case, err)
	}
	return nil
}

// Restrict restricts the message of record id until until; a message
// restricted already gets the new reason and end. It returns the
// restriction.
func (a *Archive) Restrict(id uint64, reason, by string, until time.Time) (*Restriction, error) {
	if a.readOnly {
		return nil, ErrReadOnly
	}
	x := &Restriction{ID: id, Reason: reason, By: by, At: a.now().UTC().Truncate(time.Second), Until: until.UTC()}
	err := a.db.Update(func(tx *bbolt.Tx) error {
		r, err := getRecord(tx, id)
		if err != nil {
			return err
		}
		if r.Kind != KindMessage {
			return fmt.Errorf("%w: record %d is a %s, not a message", ErrNotFound, id, r.Kind)
		}
		k, err := idemKey(r.Source(), r.OriginalSHA256)
		if err != nil {
			return err
		}
		v, err := json.Marshal(x)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketRestricted).Put(k, v)
	})
	if err != nil {
		return nil, fmt.Errorf("archive: restrict: %w", err)
	}
	return x, nil
}

// Unrestrict lifts the restriction of record id's message and returns
// it.
func (a *Archive) Unrestrict(id uint64) (*Restriction, error) {
	if a.readOnly {
		return nil, ErrReadOnly
	}
	var x *Restriction
	err := a.db.Update(func(tx *bbolt.Tx) error {
		r, err := getRecord(tx, id)
		if err != nil {
			return err
		}
		if x, err = restrictionOf(tx, r); err != nil {
			return err
		}
		if x == nil {
			return fmt.Errorf("%w: record %d is not restricted", ErrNotFound, id)
		}
		k, _ := idemKey(r.Source(), r.OriginalSHA256)
		return tx.Bucket(bucketRestricted).Delete(k)
	})
	if err != nil {
		return nil, fmt.Errorf("archive: lift restriction: %w", err)
	}
	return x, nil
}

// Restriction returns the restriction of r's message, or nil.
func (a *Archive) Restriction(r *Record) (*Restriction, error) {
	var x *Restriction
	err := a.db.View(func(tx *bbolt.Tx) error {
		var err error
		x, err = restrictionOf(tx, r)
		return err
	})
	return x, err
}

func restrictionOf(tx *bbolt.Tx, r *Record) (*Restriction, error) {
	b := tx.Bucket(bucketRestricted)
	if b == nil || r.Kind != KindMessage {
		return nil, nil
	}
	k, err := idemKey(r.Source(), r.OriginalSHA256)
	if err != nil {
		return nil, nil
	}
	v := b.Get(k)
	if v == nil {
		return nil, nil
	}
	var x Restriction
	if err := json.Unmarshal(v, &x); err != nil {
		return nil, fmt.Errorf("%w: restriction of record %d: %v", ErrCorrupt, r.ID, err)
	}
	return &x, nil
}

// protectionDigest is a digest of every hold and restriction: a purge
// plan made under other holds or restrictions is stale.
func protectionDigest(tx *bbolt.Tx) string {
	h := sha256.New()
	for _, name := range [][]byte{bucketHolds, bucketRestricted} {
		h.Write(name)
		if b := tx.Bucket(name); b != nil {
			b.ForEach(func(k, v []byte) error {
				fmt.Fprintf(h, "%d:%s%d:%s", len(k), k, len(v), v)
				return nil
			})
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}
