package archive

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/bbolt"
)

// Problem is one thing `archive verify` found wrong.
type Problem struct {
	ID   uint64 `json:"id,omitempty"`   // the record concerned, 0 for the chain as a whole
	File string `json:"file,omitempty"` // the file concerned, if any
	What string `json:"what"`
}

func (p Problem) String() string {
	switch {
	case p.File != "" && p.ID != 0:
		return fmt.Sprintf("record %d: %s: %s", p.ID, p.File, p.What)
	case p.ID != 0:
		return fmt.Sprintf("record %d: %s", p.ID, p.What)
	case p.File != "":
		return fmt.Sprintf("%s: %s", p.File, p.What)
	}
	return p.What
}

// VerifyResult is the outcome of Verify.
type VerifyResult struct {
	Records  int       `json:"records"`
	Files    int       `json:"files"` // distinct files checked
	HeadID   uint64    `json:"head_id"`
	Head     string    `json:"head"` // hash of the last record (hex)
	Problems []Problem `json:"problems"`
	// Seals lists every seal record in the chain, what its tokens say
	// when the evidence was checked (VerifyEvidence).
	Seals []SealCheck `json:"seals,omitempty"`
	// Unsealed is the records after the last seal (nil: none).
	Unsealed *Unsealed `json:"unsealed,omitempty"`
	// Purges are the gaps purges left, one per tombstone.
	Purges []PurgeGap `json:"purges,omitempty"`
}

// PurgeGap is one purge as the chain shows it.
type PurgeGap struct {
	Tombstone  uint64    `json:"tombstone"`
	Plan       string    `json:"plan"`
	Records    []uint64  `json:"records"`
	Planner    Person    `json:"planner"`
	Approver   Person    `json:"approver"`
	ApprovedAt time.Time `json:"approved_at"`
}

// OK reports whether nothing was found wrong.
func (v *VerifyResult) OK() bool { return len(v.Problems) == 0 }

// Verify recomputes the hash chain over every record and the SHA-256 of
// every file a record names; checks that the secondary indexes and the
// idempotency keys list exactly the current records; and looks for files
// in the archive that no record names (planted, or left by a crash). It
// reports each problem. Records archived while it runs are verified too;
// files newer than its start are not taken for strangers. progress, if
// not nil, is called after each record. The error is non-nil only when the
// index cannot be read at all.
func (a *Archive) Verify(progress func(done, total int)) (*VerifyResult, error) {
	return a.verify(nil, progress)
}

func (a *Archive) verify(ev *EvidenceOptions, progress func(done, total int)) (*VerifyResult, error) {
	v := &verifier{
		a: a, res: &VerifyResult{Problems: []Problem{}}, started: time.Now(),
		prev: make([]byte, sha256.Size), expect: 1, sealHash: make([]byte, sha256.Size),
		superseded: map[uint64]bool{}, purged: map[uint64]purgedLink{}, listed: map[uint64]bool{}, other: map[uint64]bool{},
		names: map[string]bool{}, originals: map[string]string{}, progress: progress,
	}
	// The chain: walk the records, then compare with the head; while
	// the daemon keeps archiving, the head moves on: walk on to it.
	var headID uint64
	var head []byte
	for round := 0; ; round++ {
		if err := v.walk(); err != nil {
			return nil, fmt.Errorf("archive: verify: %w", err)
		}
		var err error
		if headID, head, err = a.readHead(v.res); err != nil {
			return nil, fmt.Errorf("archive: verify: %w", err)
		}
		if headID <= v.last || round == 10 {
			break
		}
	}
	res := v.res
	switch {
	case head == nil && res.Records > 0:
		res.Problems = append(res.Problems, Problem{What: "the chain head is missing"})
	case head != nil && headID != v.last:
		res.Problems = append(res.Problems, Problem{ID: headID, What: fmt.Sprintf("the chain head names record %d but the last record is %d (records deleted or added behind the chain's back)", headID, v.last)})
	case head != nil && !bytes.Equal(head, v.prev):
		res.Problems = append(res.Problems, Problem{ID: headID, What: "the chain head does not match the last record's hash"})
	}
	v.unlisted()
	if err := v.sealedAuditLog(); err != nil {
		return nil, fmt.Errorf("archive: verify: %w", err)
	}
	if err := v.checkIndexes(); err != nil {
		return nil, fmt.Errorf("archive: verify: %w", err)
	}
	v.strayFiles()
	if len(v.leaves) > 0 {
		res.Unsealed = &Unsealed{First: v.lastSeal + 1, Last: v.last, Count: len(v.leaves)}
	}
	if ev != nil {
		v.checkEvidence(ev)
	}
	v.nameSeals()
	res.Files = len(v.originals) + v.plaintexts
	res.HeadID = v.last
	res.Head = hex.EncodeToString(v.prev)
	return res, nil
}

// verifier is the state of one Verify.
type verifier struct {
	a        *Archive
	res      *VerifyResult
	started  time.Time
	progress func(done, total int)

	prev   []byte // hash of the last record walked
	last   uint64 // its id
	expect uint64 // the next id the chain should have
	ids    []uint64

	superseded map[uint64]bool
	// purged: emptied records → their stored hash; listed: those a
	// tombstone named (with that hash).
	purged     map[uint64]purgedLink
	listed     map[uint64]bool
	other      map[uint64]bool   // records that are not messages (tombstones, seals)
	names      map[string]bool   // Maildir names of every record
	originals  map[string]string // SHA-256 of every original → what its file hashed to (shared by records with the same bytes: hashed once)
	plaintexts int               // plaintext files hashed

	// The seals: the chain hashes of the records since the last seal
	// (the next seal's Merkle leaves), the last seal's id and hash.
	leaves   [][]byte
	lastSeal uint64
	sealHash []byte
	// sealedAudit: the audit log heads the seals name, checked against
	// the log after the walk (sealedAuditLog).
	sealedAudit []sealedAudit
}

type sealedAudit struct {
	seal, id uint64
	hash     string
}

func (a *Archive) readHead(res *VerifyResult) (id uint64, head []byte, err error) {
	err = a.db.View(func(tx *bbolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if m == nil {
			return nil
		}
		h := m.Get(keyHead)
		switch {
		case h == nil:
		case len(h) != 8+sha256.Size:
			res.Problems = append(res.Problems, Problem{What: "the chain head record is malformed"})
		default:
			id, head = binary.BigEndian.Uint64(h), bytes.Clone(h[8:])
		}
		return nil
	})
	return id, head, err
}

// walk verifies the records after v.last, in batches read in short
// transactions.
func (v *verifier) walk() error {
	for {
		type item struct {
			id  uint64
			val []byte
		}
		var batch []item
		total := 0
		err := v.a.db.View(func(tx *bbolt.Tx) error {
			b := tx.Bucket(bucketRecords)
			if b == nil {
				return nil
			}
			total = b.Stats().KeyN
			c := b.Cursor()
			k, val := c.Seek(u64(v.last + 1))
			for ; k != nil && len(batch) < listBatch; k, val = c.Next() {
				if len(k) != 8 {
					v.res.Problems = append(v.res.Problems, Problem{What: fmt.Sprintf("index holds a malformed record key %x", k)})
					continue
				}
				batch = append(batch, item{binary.BigEndian.Uint64(k), bytes.Clone(val)})
			}
			return nil
		})
		if err != nil || len(batch) == 0 {
			return err
		}
		for _, it := range batch {
			for ; v.expect < it.id; v.expect++ {
				v.res.Problems = append(v.res.Problems, Problem{ID: v.expect, What: "record missing from the index (deleted)"})
			}
			v.expect = it.id + 1
			v.last = it.id
			v.ids = append(v.ids, it.id)
			v.res.Records++
			v.record(it.id, it.val)
			if v.progress != nil {
				v.progress(v.res.Records, total)
			}
		}
	}
}

// record checks one record's link in the chain and its files; prev is
// advanced to the record's stored hash so one bad record is reported once
// and does not make every later one fail too.
func (v *verifier) record(id uint64, val []byte) {
	bad := func(file, format string, args ...any) {
		v.res.Problems = append(v.res.Problems, Problem{ID: id, File: file, What: fmt.Sprintf(format, args...)})
	}
	if len(val) < sha256.Size {
		bad("", "record is truncated")
		return
	}
	stored, body := val[:sha256.Size], val[sha256.Size:]
	r, err := decodeRecord(id, val)
	if err == nil && r.Kind == KindPurged {
		// Its content is gone: its stored hash stands, checked against
		// the tombstone that names it (tombstone), by the next record's
		// link and as a leaf of its seal.
		if r.Prev != hex.EncodeToString(v.prev) {
			bad("", "purged record names another previous record (chain broken)")
		}
		v.purged[id] = purgedLink{hash: r.Hash, tombstone: r.PurgedBy}
		v.prev = bytes.Clone(stored)
		v.leaves = append(v.leaves, v.prev)
		return
	}
	if !bytes.Equal(chainHash(v.prev, id, body), stored) {
		bad("", "record altered: its hash does not match its content and the previous record's hash")
	}
	if err != nil {
		bad("", "%v", err)
		v.prev = bytes.Clone(stored)
		v.leaves = append(v.leaves, v.prev)
		return
	}
	if r.Prev != hex.EncodeToString(v.prev) {
		bad("", "record names another previous record (chain broken)")
	}
	prev := v.prev
	v.prev = bytes.Clone(stored)
	if r.Kind != KindMessage {
		v.other[id] = true
	}
	if r.Kind == KindSeal {
		v.seal(r, prev, stored)
		return
	}
	v.leaves = append(v.leaves, v.prev)
	if r.Supersedes != 0 {
		v.superseded[r.Supersedes] = true
	}
	if r.Kind == KindTombstone {
		v.tombstone(r, bad)
		return
	}
	if r.Kind != KindMessage {
		return // another kind of record: no files
	}

	check := func(path, want, got string) {
		switch {
		case got == fileMissing:
			bad(path, "file missing")
		case len(got) != 64:
			bad(path, "%s", got)
		case got != want:
			bad(path, "file altered: SHA-256 is %s, the record says %s", got, want)
		}
	}
	if r.PlaintextFile == "" {
		return // not fetched: no files
	}
	v.names[r.PlaintextFile] = true
	opath := v.a.OriginalPath(r.OriginalSHA256)
	got, seen := v.originals[r.OriginalSHA256]
	if !seen {
		got = fileSHA256(opath)
		v.originals[r.OriginalSHA256] = got
	}
	check(opath, r.OriginalSHA256, got)
	p, perr := v.a.PlaintextPath(r)
	if perr != nil {
		bad("maildir/new/"+r.PlaintextFile, "file missing")
		return
	}
	v.plaintexts++
	check(p, r.PlaintextSHA256, fileSHA256(p))
}

// purgedLink is what an emptied record says of itself.
type purgedLink struct {
	hash      string
	tombstone uint64
}

// tombstone checks that every record the tombstone r names was emptied
// before it and keeps the hash the tombstone names.
func (v *verifier) tombstone(r *Record, bad func(file, format string, args ...any)) {
	t := r.Tombstone
	if t == nil {
		bad("", "tombstone without its purge")
		return
	}
	gap := PurgeGap{Tombstone: r.ID, Plan: t.Plan, Planner: t.Planner, Approver: t.Approver, ApprovedAt: t.ApprovedAt}
	for _, p := range t.Purged {
		gap.Records = append(gap.Records, p.ID)
		link, ok := v.purged[p.ID]
		switch {
		case !ok:
			bad("", "tombstone names record %d as purged, but that record is not an emptied one before it", p.ID)
		case link.tombstone != r.ID:
			bad("", "tombstone names record %d, which says tombstone %d purged it", p.ID, link.tombstone)
		case link.hash != p.Hash:
			v.res.Problems = append(v.res.Problems, Problem{ID: p.ID, What: fmt.Sprintf("purged record's hash differs from the one tombstone %d keeps (record or tombstone altered)", r.ID)})
		}
		v.listed[p.ID] = true
	}
	v.res.Purges = append(v.res.Purges, gap)
}

// unlisted reports emptied records no tombstone names: content removed
// behind the chain's back.
func (v *verifier) unlisted() {
	for _, id := range v.ids {
		if _, purged := v.purged[id]; purged && !v.listed[id] {
			v.res.Problems = append(v.res.Problems, Problem{ID: id, What: "record emptied as purged, but no tombstone names it (content removed behind the chain's back)"})
		}
	}
}

// checkIndexes compares the idempotency keys and the secondary indexes
// with what the chain says is current: an index entry deleted hides a
// message from every query, one pointing at an old version shows what was
// superseded.
func (v *verifier) checkIndexes() error {
	current := map[uint64]bool{}
	var cur []uint64
	for _, id := range v.ids {
		if _, purged := v.purged[id]; !v.superseded[id] && !purged && !v.other[id] {
			current[id] = true
			cur = append(cur, id)
		}
	}
	bad := func(id uint64, format string, args ...any) {
		v.res.Problems = append(v.res.Problems, Problem{ID: id, What: fmt.Sprintf(format, args...)})
	}
	// Every current record has its key and its index entries.
	for len(cur) > 0 {
		n := min(len(cur), listBatch)
		batch := cur[:n]
		cur = cur[n:]
		err := v.a.db.View(func(tx *bbolt.Tx) error {
			keys, idx := tx.Bucket(bucketKeys), tx.Bucket(bucketIndex)
			if keys == nil || idx == nil {
				return nil
			}
			for _, id := range batch {
				r, err := getRecord(tx, id)
				if err != nil {
					continue // reported by the walk
				}
				k, err := r.key()
				if err != nil {
					bad(id, "%v", err)
					continue
				}
				if got := keys.Get(k); got == nil || binary.BigEndian.Uint64(got) != id {
					bad(id, "the index does not name this record as its message's current version (index edited)")
				}
				for _, ik := range indexKeys(r) {
					if !hasKey(idx, ik) {
						bad(id, "index entry missing: the record is hidden from queries (index edited)")
						break
					}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	// No entry names a record that is not current (or not there).
	return v.a.db.View(func(tx *bbolt.Tx) error {
		if keys := tx.Bucket(bucketKeys); keys != nil {
			err := keys.ForEach(func(k, val []byte) error {
				if len(val) != 8 {
					bad(0, "malformed index key value %x", val)
					return nil
				}
				if id := binary.BigEndian.Uint64(val); id <= v.last && !current[id] {
					bad(id, "the index names this record as current, but it is superseded or missing (index edited)")
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		idx := tx.Bucket(bucketIndex)
		if idx == nil {
			return nil
		}
		reported := map[uint64]bool{}
		return idx.ForEach(func(k, _ []byte) error {
			if len(k) < 17 {
				bad(0, "malformed secondary index entry %x", k)
				return nil
			}
			id := binary.BigEndian.Uint64(k[len(k)-8:])
			if id <= v.last && !current[id] && !reported[id] {
				reported[id] = true
				bad(id, "secondary index lists a record that is superseded or missing (index edited)")
			}
			return nil
		})
	})
}

// hasKey reports whether b holds key k (whatever its value, nil included).
func hasKey(b *bbolt.Bucket, k []byte) bool {
	got, _ := b.Cursor().Seek(k)
	return bytes.Equal(got, k)
}

// strayFiles reports files in the Maildir and among the originals that no
// record names: a message planted there would be shown by every Maildir
// reader. Files newer than the start of Verify are being archived now.
func (v *verifier) strayFiles() {
	stray := func(path string) {
		if fi, err := os.Lstat(path); err == nil && fi.ModTime().After(v.started) {
			return
		}
		v.res.Problems = append(v.res.Problems, Problem{File: path, What: "file not named by any record (planted, or left by an interrupted write)"})
	}
	md := v.a.MaildirPath()
	for _, sub := range []string{"new", "cur"} {
		entries, _ := os.ReadDir(filepath.Join(md, sub))
		for _, e := range entries {
			name, _, _ := strings.Cut(e.Name(), ":")
			if !v.names[name] {
				stray(filepath.Join(md, sub, e.Name()))
			}
		}
	}
	odir := filepath.Join(v.a.dir, "originals")
	dirs, _ := os.ReadDir(odir)
	for _, d := range dirs {
		if d.Name() == "tmp" || !d.IsDir() {
			continue
		}
		files, _ := os.ReadDir(filepath.Join(odir, d.Name()))
		for _, f := range files {
			if _, named := v.originals[f.Name()]; !named {
				stray(filepath.Join(odir, d.Name(), f.Name()))
			}
		}
	}
}

const fileMissing = "missing"

// fileSHA256 returns the hex SHA-256 of the file, fileMissing, or what
// went wrong reading it.
func fileSHA256(path string) string {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return fileMissing
	}
	if err != nil {
		return "cannot read: " + err.Error()
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "cannot read: " + err.Error()
	}
	return hex.EncodeToString(h.Sum(nil))
}
