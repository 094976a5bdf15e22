package daemon

import (
	"errors"
	"path/filepath"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/smimed/smimed/harvest/state"
)

func openTestDB(t *testing.T, path string) *state.DB {
	t.Helper()
	db, err := state.Open(path, false)
	if err != nil {
		t.Fatalf("state.Open(%s) = %v", path, err)
	}
	return db
}

func mustGet(t *testing.T, c *Checkpoints, account, folder string) (Checkpoint, bool) {
	t.Helper()
	cp, ok, err := c.Get(account, folder)
	if err != nil {
		t.Fatalf("Get(%q, %q) error = %v", account, folder, err)
	}
	return cp, ok
}

func TestCheckpointsPersistAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "smimed.db")
	db := openTestDB(t, path)
	c, err := NewCheckpoints(db)
	if err != nil {
		t.Fatalf("NewCheckpoints() = %v", err)
	}
	if _, ok := mustGet(t, c, "acct", "INBOX"); ok {
		t.Fatalf("Get() on empty store: ok = true, want false")
	}
	want := Checkpoint{UIDValidity: 0xdeadbeef, UID: 0x01020304}
	if err := c.Set("acct", "INBOX", want); err != nil {
		t.Fatalf("Set() = %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}

	db = openTestDB(t, path)
	defer db.Close()
	c, err = NewCheckpoints(db)
	if err != nil {
		t.Fatalf("NewCheckpoints() after reopen = %v", err)
	}
	got, ok := mustGet(t, c, "acct", "INBOX")
	if !ok || got != want {
		t.Fatalf("Get() after reopen = %+v, %v, want %+v, true", got, ok, want)
	}
	// The on-disk record is the documented 8 big-endian bytes.
	err = db.Bolt().View(func(tx *bbolt.Tx) error {
		v := tx.Bucket([]byte("checkpoints")).Get([]byte("acct\x00INBOX"))
		if string(v) != "\xde\xad\xbe\xef\x01\x02\x03\x04" {
			t.Errorf("stored value = %x, want deadbeef01020304", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCheckpointsIndependentKeys(t *testing.T) {
	db := openTestDB(t, filepath.Join(t.TempDir(), "smimed.db"))
	defer db.Close()
	c, err := NewCheckpoints(db)
	if err != nil {
		t.Fatalf("NewCheckpoints() = %v", err)
	}
	set := map[[2]string]Checkpoint{
		{"a", "INBOX"}:     {UIDValidity: 1, UID: 10},
		{"a", "Archive"}:   {UIDValidity: 2, UID: 20},
		{"b", "INBOX"}:     {UIDValidity: 3, UID: 30},
		{"a\x01", "INBOX"}: {UIDValidity: 4, UID: 40},
		// Concatenation without the separator would make these collide.
		{"ab", "c"}: {UIDValidity: 5, UID: 50},
		{"a", "bc"}: {UIDValidity: 6, UID: 60},
	}
	for k, cp := range set {
		if err := c.Set(k[0], k[1], cp); err != nil {
			t.Fatalf("Set(%q, %q) = %v", k[0], k[1], err)
		}
	}
	for k, want := range set {
		if got, ok := mustGet(t, c, k[0], k[1]); !ok || got != want {
			t.Errorf("Get(%q, %q) = %+v, %v, want %+v, true", k[0], k[1], got, ok, want)
		}
	}
	if _, ok := mustGet(t, c, "b", "Archive"); ok {
		t.Errorf("Get(b, Archive) ok = true, want false")
	}
	if err := c.Set("a\x00b", "INBOX", Checkpoint{}); !errors.Is(err, ErrCheckpointKey) {
		t.Errorf("Set() with NUL in account = %v, want %v", err, ErrCheckpointKey)
	}
}

func TestCheckpointsUIDValidityChangeReplaces(t *testing.T) {
	db := openTestDB(t, filepath.Join(t.TempDir(), "smimed.db"))
	defer db.Close()
	c, err := NewCheckpoints(db)
	if err != nil {
		t.Fatalf("NewCheckpoints() = %v", err)
	}
	if err := c.Set("a", "INBOX", Checkpoint{UIDValidity: 100, UID: 5000}); err != nil {
		t.Fatal(err)
	}
	want := Checkpoint{UIDValidity: 101, UID: 3}
	if err := c.Set("a", "INBOX", want); err != nil {
		t.Fatal(err)
	}
	if got, ok := mustGet(t, c, "a", "INBOX"); !ok || got != want {
		t.Fatalf("Get() = %+v, %v, want %+v, true", got, ok, want)
	}
	n := 0
	db.Bolt().View(func(tx *bbolt.Tx) error { n = tx.Bucket([]byte("checkpoints")).Stats().KeyN; return nil })
	if n != 1 {
		t.Errorf("checkpoints bucket has %d keys, want 1", n)
	}
}

func TestCheckpointsCorruptRecord(t *testing.T) {
	db := openTestDB(t, filepath.Join(t.TempDir(), "smimed.db"))
	defer db.Close()
	c, err := NewCheckpoints(db)
	if err != nil {
		t.Fatal(err)
	}
	db.Bolt().Update(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("checkpoints")).Put([]byte("a\x00INBOX"), []byte{1, 2, 3})
	})
	if _, _, err := c.Get("a", "INBOX"); !errors.Is(err, ErrCheckpointCorrupt) {
		t.Errorf("Get() of 3-byte record = %v, want %v", err, ErrCheckpointCorrupt)
	}
}
