package archive

// Purging: deleting messages whose retention has ended, as a job of two
// people. PlanPurge lists what may go and writes the plan to a file;
// ApprovePurge, run by another person, deletes the files, removes the
// index entries that would show the message, and appends a tombstone
// record to the chain.
//
// The chain stays verifiable without the content: a purged record keeps
// its stored chain hash (the 32 bytes before its JSON) and gets a minimal
// body (kind "purged", its previous hash, dates, class and the tombstone's
// id). Its hash can no longer be recomputed, so Verify checks instead
// that its previous hash links it into the chain, that the next record
// links to its stored hash, and that a later tombstone — whose own hash
// is checked like any record's — names it with that hash. Changing a
// tombstone, removing one, or emptying a record without one is found.
//
// Plans live in state_dir/purge/ID.json (mode 0600). The ID is derived
// from the plan's content (so an edited plan has another ID), and the
// audit log must name the plan's creation by its planner.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/bbolt"
)

// Errors of a purge; returned errors wrap them.
var (
	ErrStale      = errors.New("archive: the purge plan is stale")
	ErrSamePerson = errors.New("archive: a purge plan must be approved by another person than its planner")
)

// Audit actions of retention, holds and purges.
const (
	AuditHoldAdd      = "hold-add"
	AuditHoldRemove   = "hold-remove"
	AuditHoldList     = "hold-list"
	AuditRestrict     = "restrict"
	AuditRestrictLift = "restrict-lift"
	AuditPurgePlan    = "purge-plan"    // detail "plan=ID records=N"
	AuditPurgeApprove = "purge-approve" // detail "plan=ID tombstone=T records=N"
)

// Person is who planned or approved a purge. Login is the person's login
// uid (the kernel's audit loginuid, kept across su and sudo) when set,
// else the uid: two people are two Logins.
type Person struct {
	UID   int    `json:"uid"`
	Login int    `json:"login"`
	User  string `json:"user,omitempty"`
}

func (p Person) String() string {
	s := fmt.Sprintf("uid %d", p.UID)
	if p.User != "" {
		s += " (" + p.User + ")"
	}
	if p.Login != p.UID {
		s += fmt.Sprintf(", login uid %d", p.Login)
	}
	return s
}

// PurgeItem is one message a plan deletes: its current record and every
// earlier version (Versions, newest first, the current one included).
type PurgeItem struct {
	ID              uint64    `json:"id"`
	Hash            string    `json:"hash"`
	Versions        []uint64  `json:"versions"`
	OriginalSHA256  string    `json:"original_sha256"`
	PlaintextSHA256 string    `json:"plaintext_sha256"`
	Received        time.Time `json:"received"`
	Class           string    `json:"class"`
	RetainUntil     time.Time `json:"retain_until"`
}

// PurgePlan is what PlanPurge wrote.
type PurgePlan struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Planner Person    `json:"planner"`
	// Protection is a digest of every hold and restriction when the plan
	// was made: any change makes the plan stale.
	Protection string      `json:"protection"`
	Records    []PurgeItem `json:"records"`
}

// Tombstone is what a purge leaves in the chain.
type Tombstone struct {
	Plan       string         `json:"plan"`
	PlannedAt  time.Time      `json:"planned_at"`
	Planner    Person         `json:"planner"`
	Approver   Person         `json:"approver"`
	ApprovedAt time.Time      `json:"approved_at"`
	Purged     []PurgedRecord `json:"purged"`
}

// PurgedRecord is one record a purge emptied, with the digests of what
// was deleted.
type PurgedRecord struct {
	ID              uint64    `json:"id"`
	Hash            string    `json:"hash"` // its chain hash, kept
	Version         int       `json:"version"`
	OriginalSHA256  string    `json:"original_sha256"`
	PlaintextSHA256 string    `json:"plaintext_sha256"`
	Received        time.Time `json:"received,omitzero"`
	ArchivedAt      time.Time `json:"archived_at"`
	Class           string    `json:"class,omitempty"`
	RetainUntil     time.Time `json:"retain_until,omitzero"`
}

// PlanDir is where purge plans are kept: state_dir/purge.
func (a *Archive) PlanDir() string { return filepath.Join(filepath.Dir(a.st.Path()), "purge") }

var planIDPattern = regexp.MustCompile(`^P[0-9a-f]{16}$`)

// planID is the ID of a plan: a digest of its content without the ID.
func planID(p PurgePlan) string {
	p.ID = ""
	b, _ := json.Marshal(p)
	s := sha256.Sum256(b)
	return "P" + hex.EncodeToString(s[:8])
}

// purgeable reports why r may not be purged at now ("" when it may).
func purgeable(tx *bbolt.Tx, holds []Hold, r *Record, now time.Time) (string, error) {
	if !r.Expired(now) {
		return "retention not ended", nil
	}
	if cases := heldBy(holds, r); len(cases) > 0 {
		return "held (" + strings.Join(cases, ", ") + ")", nil
	}
	x, err := restrictionOf(tx, r)
	if err != nil {
		return "", err
	}
	if x.Active(now) {
		return "restricted", nil
	}
	return "", nil
}

// versions lists r's id and the ids of every version it supersedes.
func versions(tx *bbolt.Tx, r *Record) ([]uint64, error) {
	out := []uint64{r.ID}
	for s := r.Supersedes; s != 0; {
		old, err := getRecord(tx, s)
		if err != nil {
			return nil, err
		}
		out = append(out, old.ID)
		s = old.Supersedes
	}
	return out, nil
}

// PlanPurge lists every current message whose retention has ended and
// that is neither held nor restricted, writes the plan to PlanDir and
// returns it. A plan with no records is returned but not written.
func (a *Archive) PlanPurge(planner Person) (*PurgePlan, error) {
	if a.readOnly {
		return nil, ErrReadOnly
	}
	now := a.now()
	p := &PurgePlan{Created: now.UTC().Truncate(time.Second), Planner: planner, Records: []PurgeItem{}}
	var ids []uint64
	if err := a.List(Query{Expired: true}, func(r *Record) error { ids = append(ids, r.ID); return nil }); err != nil {
		return nil, err
	}
	err := a.db.View(func(tx *bbolt.Tx) error {
		p.Protection = protectionDigest(tx)
		holds, err := readHolds(tx)
		if err != nil {
			return err
		}
		for _, id := range ids {
			r, err := getRecord(tx, id)
			if err != nil {
				return err
			}
			a.fillRetention(r)
			if why, err := purgeable(tx, holds, r, now); err != nil || why != "" {
				if err != nil {
					return err
				}
				continue
			}
			vs, err := versions(tx, r)
			if err != nil {
				return err
			}
			p.Records = append(p.Records, PurgeItem{ID: r.ID, Hash: r.Hash, Versions: vs,
				OriginalSHA256: r.OriginalSHA256, PlaintextSHA256: r.PlaintextSHA256,
				Received: r.When(), Class: r.Class, RetainUntil: r.RetainUntil})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("archive: purge plan: %w", err)
	}
	p.ID = planID(*p)
	if len(p.Records) == 0 {
		return p, nil
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := mkdirDurable(a.PlanDir()); err != nil {
		return nil, fmt.Errorf("archive: purge plan: %w", err)
	}
	file := filepath.Join(a.PlanDir(), p.ID+".json")
	if err := writeDurable(file, file, b); err != nil {
		return nil, fmt.Errorf("archive: purge plan: %w", err)
	}
	// Made by root while the service is stopped: the service user, who
	// owns the state file, must be able to read it (an approval through
	// the running service) and to write plans beside it.
	if fi, err := os.Stat(a.st.Path()); err == nil && os.Getuid() == 0 {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
			os.Chown(a.PlanDir(), int(st.Uid), int(st.Gid))
			os.Chown(file, int(st.Uid), int(st.Gid))
		}
	}
	return p, nil
}

// ReadPlan reads plan id from PlanDir and checks that its content is
// what its ID says.
func (a *Archive) ReadPlan(id string) (*PurgePlan, error) {
	if !planIDPattern.MatchString(id) {
		return nil, fmt.Errorf("archive: %q is not a purge plan ID (P and 16 hex digits)", id)
	}
	b, err := os.ReadFile(filepath.Join(a.PlanDir(), id+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: purge plan %s (approved already, or never made)", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("archive: purge plan %s: %w", id, err)
	}
	var p PurgePlan
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%w: purge plan %s: %v", ErrCorrupt, id, err)
	}
	if p.ID != id || planID(p) != id {
		return nil, fmt.Errorf("%w: purge plan %s was changed after it was made", ErrCorrupt, id)
	}
	return &p, nil
}

// plannedBy checks that the audit log holds the plan's creation by its
// planner's uid.
func (a *Archive) plannedBy(p *PurgePlan) error {
	found := false
	prefix := "plan=" + p.ID + " "
	err := a.AuditLog(time.Time{}, func(e AuditEntry) error {
		if e.Action == AuditPurgePlan && strings.HasPrefix(e.Detail, prefix) && e.UID == p.Planner.UID {
			found = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%w: purge plan %s: the audit log does not show it made by %s", ErrCorrupt, p.ID, p.Planner)
	}
	return nil
}

// ApprovePurge carries out plan id for approver, who must be another
// person (Login) than the planner. Every record is checked again: still
// the current version with the hash planned, expired, not held, not
// restricted, and no hold or restriction changed since the plan (else
// ErrStale, nothing deleted). Then, in one transaction, the records are
// emptied, their index entries and copy states removed and the
// tombstone appended; then the files are deleted and the plan removed.
// It returns the tombstone record.
func (a *Archive) ApprovePurge(id string, approver Person) (*Record, error) {
	if a.readOnly {
		return nil, ErrReadOnly
	}
	p, err := a.ReadPlan(id)
	if err != nil {
		return nil, err
	}
	if approver.Login == p.Planner.Login {
		return nil, fmt.Errorf("%w: plan %s was made by %s, approved by %s", ErrSamePerson, id, p.Planner, approver)
	}
	if err := a.plannedBy(p); err != nil {
		return nil, err
	}
	now := a.now()
	tomb := &Record{Kind: KindTombstone, Version: 1, ArchivedAt: now.UTC().Truncate(time.Millisecond),
		Status: []string{}, Layers: []string{}, To: []string{},
		Tombstone: &Tombstone{Plan: p.ID, PlannedAt: p.Created, Planner: p.Planner, Approver: approver, ApprovedAt: now.UTC().Truncate(time.Second)}}
	var files []string
	err = a.db.Update(func(tx *bbolt.Tx) error {
		if protectionDigest(tx) != p.Protection {
			return fmt.Errorf("%w: holds or restrictions changed since plan %s was made; make a new plan", ErrStale, p.ID)
		}
		holds, err := readHolds(tx)
		if err != nil {
			return err
		}
		keys, idx, recs := tx.Bucket(bucketKeys), tx.Bucket(bucketIndex), tx.Bucket(bucketRecords)
		tombID, err := recs.NextSequence()
		if err != nil {
			return err
		}
		purgedSHA := map[string]bool{}
		purgedID := map[uint64]bool{}
		for _, it := range p.Records {
			r, err := getRecord(tx, it.ID)
			if err != nil {
				return fmt.Errorf("%w: record %d: %v", ErrStale, it.ID, err)
			}
			a.fillRetention(r)
			k, err := idemKey(r.Source(), r.OriginalSHA256)
			if err != nil {
				return err
			}
			if cur := keys.Get(k); cur == nil || binary.BigEndian.Uint64(cur) != r.ID || r.Hash != it.Hash || r.Kind != KindMessage {
				return fmt.Errorf("%w: record %d changed since plan %s was made; make a new plan", ErrStale, it.ID, p.ID)
			}
			why, err := purgeable(tx, holds, r, now)
			if err != nil {
				return err
			}
			if why != "" {
				return fmt.Errorf("%w: record %d may not be purged now: %s", ErrStale, it.ID, why)
			}
			vs, err := versions(tx, r)
			if err != nil {
				return err
			}
			for _, ik := range indexKeys(r) {
				if err := idx.Delete(ik); err != nil {
					return err
				}
			}
			if err := keys.Delete(k); err != nil {
				return err
			}
			for _, vid := range vs {
				v, err := getRecord(tx, vid)
				if err != nil {
					return err
				}
				pr, body, err := emptyRecord(v, r, tombID)
				if err != nil {
					return err
				}
				stored, _ := hex.DecodeString(v.Hash)
				if err := recs.Put(u64(vid), append(stored, body...)); err != nil {
					return err
				}
				for _, b := range [][]byte{bucketCopies, bucketPending, bucketAppending} {
					if err := tx.Bucket(b).Delete(u64(vid)); err != nil {
						return err
					}
				}
				tomb.Tombstone.Purged = append(tomb.Tombstone.Purged, pr)
				purgedID[vid] = true
				if v.PlaintextFile != "" {
					if path, err := a.PlaintextPath(v); err == nil {
						files = append(files, path)
					}
					purgedSHA[v.OriginalSHA256] = true
				}
			}
		}
		// An original is shared by every record of the same bytes: it
		// goes only when no record left names it.
		if len(purgedSHA) > 0 {
			err := recs.ForEach(func(k, v []byte) error {
				if len(k) != 8 || purgedID[binary.BigEndian.Uint64(k)] {
					return nil
				}
				for sha := range purgedSHA {
					if bytes.Contains(v, []byte(sha)) {
						if r, err := decodeRecord(binary.BigEndian.Uint64(k), v); err == nil && r.Kind == KindMessage && r.OriginalSHA256 == sha {
							delete(purgedSHA, sha)
						}
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		for sha := range purgedSHA {
			files = append(files, a.OriginalPath(sha))
		}
		return appendRecord(tx, tomb, tombID)
	})
	if err != nil {
		return nil, fmt.Errorf("archive: purge %s: %w", id, err)
	}
	var failed []string
	dirs := map[string]bool{}
	for _, f := range files {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			failed = append(failed, f)
		}
		dirs[filepath.Dir(f)] = true
	}
	for d := range dirs {
		SyncDir(d)
	}
	os.Remove(filepath.Join(a.PlanDir(), p.ID+".json"))
	if len(failed) > 0 {
		return tomb, fmt.Errorf("archive: purge %s: tombstone %d written, but %d files could not be deleted (archive verify lists them): %s", id, tomb.ID, len(failed), strings.Join(failed, ", "))
	}
	return tomb, nil
}

// emptyRecord is the purged form of record v (a version of the message
// whose current record is cur): the tombstone's entry and the minimal
// body that replaces v's JSON.
func emptyRecord(v, cur *Record, tombID uint64) (PurgedRecord, []byte, error) {
	pr := PurgedRecord{ID: v.ID, Hash: v.Hash, Version: v.Version, OriginalSHA256: v.OriginalSHA256,
		PlaintextSHA256: v.PlaintextSHA256, Received: v.Received, ArchivedAt: v.ArchivedAt,
		Class: cur.Class, RetainUntil: cur.RetainUntil}
	empty := &Record{ID: v.ID, Kind: KindPurged, Version: v.Version, Supersedes: v.Supersedes,
		Received: v.Received, ArchivedAt: v.ArchivedAt, Class: cur.Class, RetainUntil: cur.RetainUntil,
		To: []string{}, Status: []string{}, Layers: []string{}, PurgedBy: tombID, Prev: v.Prev}
	body, err := json.Marshal(empty)
	return pr, body, err
}
