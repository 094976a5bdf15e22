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
}

// OK reports whether nothing was found wrong.
func (v *VerifyResult) OK() bool { return len(v.Problems) == 0 }

// Verify recomputes the hash chain over every record and the SHA-256 of
// every file a record names, and reports each missing or altered record or
// file. progress, if not nil, is called after each record. The error is
// non-nil only when the index cannot be read at all.
func (a *Archive) Verify(progress func(done, total int)) (*VerifyResult, error) {
	res := &VerifyResult{Problems: []Problem{}}
	var total int
	var headID uint64
	var head []byte
	err := a.db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketRecords); b != nil {
			total = b.Stats().KeyN
		}
		if m := tx.Bucket(bucketMeta); m != nil {
			if h := m.Get(keyHead); h != nil {
				if len(h) != 8+sha256.Size {
					res.Problems = append(res.Problems, Problem{What: "the chain head record is malformed"})
				} else {
					headID, head = binary.BigEndian.Uint64(h), bytes.Clone(h[8:])
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("archive: verify: %w", err)
	}

	digests := map[string]string{} // path → SHA-256 already computed
	prev := make([]byte, sha256.Size)
	var expect uint64 = 1
	var after []byte // resume key
	for {
		type item struct {
			id  uint64
			val []byte
		}
		var batch []item
		err := a.db.View(func(tx *bbolt.Tx) error {
			b := tx.Bucket(bucketRecords)
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
					res.Problems = append(res.Problems, Problem{What: fmt.Sprintf("index holds a malformed record key %x", k)})
					continue
				}
				batch = append(batch, item{binary.BigEndian.Uint64(k), bytes.Clone(v)})
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("archive: verify: %w", err)
		}
		if len(batch) == 0 {
			break
		}
		after = u64(batch[len(batch)-1].id)
		for _, it := range batch {
			for ; expect < it.id; expect++ {
				res.Problems = append(res.Problems, Problem{ID: expect, What: "record missing from the index (deleted)"})
			}
			expect = it.id + 1
			res.Records++
			a.verifyRecord(it.id, it.val, &prev, digests, res)
			if progress != nil {
				progress(res.Records, total)
			}
		}
	}
	res.Files = len(digests)
	last := expect - 1
	switch {
	case head == nil && res.Records > 0:
		res.Problems = append(res.Problems, Problem{What: "the chain head is missing"})
	case head != nil && headID != last:
		res.Problems = append(res.Problems, Problem{ID: headID, What: fmt.Sprintf("the chain head names record %d but the last record is %d (records deleted or added behind the chain's back)", headID, last)})
	case head != nil && !bytes.Equal(head, prev):
		res.Problems = append(res.Problems, Problem{ID: headID, What: "the chain head does not match the last record's hash"})
	}
	res.HeadID = last
	res.Head = hex.EncodeToString(prev)
	return res, nil
}

// verifyRecord checks one record's link in the chain and its files; prev is
// advanced to the record's stored hash so one bad record is reported once
// and does not make every later one fail too.
func (a *Archive) verifyRecord(id uint64, val []byte, prev *[]byte, digests map[string]string, res *VerifyResult) {
	bad := func(file, format string, args ...any) {
		res.Problems = append(res.Problems, Problem{ID: id, File: file, What: fmt.Sprintf(format, args...)})
	}
	if len(val) < sha256.Size {
		bad("", "record is truncated")
		return
	}
	stored, body := val[:sha256.Size], val[sha256.Size:]
	if !bytes.Equal(chainHash(*prev, id, body), stored) {
		bad("", "record altered: its hash does not match its content and the previous record's hash")
	}
	r, err := decodeRecord(id, val)
	if err != nil {
		bad("", "%v", err)
		*prev = bytes.Clone(stored)
		return
	}
	if r.Prev != hex.EncodeToString(*prev) {
		bad("", "record names another previous record (chain broken)")
	}
	*prev = bytes.Clone(stored)

	check := func(path, want string) {
		got, seen := digests[path]
		if !seen {
			got = fileSHA256(path)
			digests[path] = got
		}
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
	check(a.OriginalPath(r.OriginalSHA256), r.OriginalSHA256)
	p, perr := a.PlaintextPath(r)
	if perr != nil {
		bad("maildir/new/"+r.PlaintextFile, "file missing")
		return
	}
	check(p, r.PlaintextSHA256)
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
