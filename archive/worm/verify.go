package worm

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/bbolt"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/harvest/state"
)

// VerifyResult is what Verify found.
type VerifyResult struct {
	Objects int `json:"objects"` // objects compared
	// Pending is how many objects the outbox still holds (not compared:
	// not written yet), Unqueued how many records are not yet in it.
	Pending  int               `json:"pending"`
	Unqueued uint64            `json:"unqueued"`
	Problems []archive.Problem `json:"problems"`
}

// Verify compares every object of the archive's records with the bucket:
// each must be there, hold the local file's SHA-256 (the checksum the
// server keeps, or read back when it keeps none) and be locked. Objects
// still in the outbox are counted, not compared. The error is non-nil
// only when the archive, the outbox or the bucket cannot be read at all
// (the bucket unreachable); a missing or different object is a Problem.
func Verify(ctx context.Context, a *archive.Archive, db *state.DB, c *Client) (*VerifyResult, error) {
	bl, err := ReadBacklog(a, db)
	if err != nil {
		return nil, fmt.Errorf("worm: verify: %w", err)
	}
	res := &VerifyResult{Pending: bl.Objects, Unqueued: bl.Unqueued, Problems: []archive.Problem{}}
	var cursor uint64
	pending := map[string]bool{}
	err = db.Bolt().View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		if b == nil || tx.Bucket(bucketMeta) == nil {
			return nil
		}
		cursor = getCursor(tx)
		c := b.Cursor()
		for k, _ := c.Seek(prefixPut); k != nil && bytes.HasPrefix(k, prefixPut); k, _ = c.Next() {
			pending[string(k[len(prefixPut):])] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("worm: verify: %w", err)
	}
	seen := map[string]bool{}
	u := &Uploader{a: a}
	for id := uint64(1); id <= cursor; id++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r, ok := recordAt(a, id)
		if !ok {
			continue // archive verify names the gap
		}
		for key, e := range objectsOf(r) {
			if seen[key] || pending[key] {
				continue
			}
			seen[key] = true
			res.Objects++
			p, err := u.compare(ctx, c, key, e)
			if err != nil {
				return nil, err
			}
			if p != "" {
				res.Problems = append(res.Problems, archive.Problem{ID: id, File: key, What: p})
			}
		}
	}
	return res, nil
}

// compare checks one object; it returns what is wrong ("" for nothing),
// or an error when the bucket cannot be asked.
func (u *Uploader) compare(ctx context.Context, c *Client, key string, e entry) (string, error) {
	body, _, local, lerr := u.open(e)
	if lerr == nil {
		if cl, ok := body.(interface{ Close() error }); ok {
			cl.Close()
		}
	}
	o, err := c.HeadObject(ctx, key, "")
	if errors.Is(err, ErrNoSuchKey) {
		return "missing from the bucket " + c.Bucket(), nil
	}
	if err != nil {
		return "", fmt.Errorf("worm: verify: %w", err)
	}
	remote := o.SHA256
	if remote == nil {
		if remote, _, err = c.ObjectSHA256(ctx, key); err != nil {
			return "", fmt.Errorf("worm: verify: %w", err)
		}
	}
	var what []string
	switch {
	case lerr != nil:
		what = append(what, fmt.Sprintf("cannot compare: %s", strings.TrimPrefix(lerr.Error(), "worm: ")))
	case !bytes.Equal(remote, local):
		what = append(what, fmt.Sprintf("differs from the local file (bucket SHA-256 %s, local %s)", hex.EncodeToString(remote), hex.EncodeToString(local)))
	}
	if o.Mode == "" || o.RetainUntil.IsZero() {
		what = append(what, "not locked in the bucket")
	}
	return strings.Join(what, "; "), nil
}
