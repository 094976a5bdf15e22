package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// raw opens a state file with bbolt alone, as a test's own view of it.
func raw(t *testing.T, path string) *bbolt.DB {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatalf("bbolt.Open(%s) = %v", path, err)
	}
	return db
}

// dump lists every bucket with its keys and values, "bucket/key=value".
func dump(t *testing.T, path string) []string {
	t.Helper()
	db := raw(t, path)
	defer db.Close()
	var out []string
	db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			out = append(out, string(name)+"/")
			return b.ForEach(func(k, v []byte) error {
				out = append(out, fmt.Sprintf("%s/%s=%s", name, k, v))
				return nil
			})
		})
	})
	return out
}

func put(t *testing.T, path string, kv ...string) {
	t.Helper()
	db := raw(t, path)
	defer db.Close()
	err := db.Update(func(tx *bbolt.Tx) error {
		for i := 0; i < len(kv); i += 3 {
			b, err := tx.CreateBucketIfNotExists([]byte(kv[i]))
			if err != nil {
				return err
			}
			if err := b.Put([]byte(kv[i+1]), []byte(kv[i+2])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func mustOpen(t *testing.T, path string, readOnly bool, buckets []Bucket) *DB {
	t.Helper()
	d, err := open(path, readOnly, buckets)
	if err != nil {
		t.Fatalf("Open(%s, read-only=%v) = %v", path, readOnly, err)
	}
	return d
}

func TestOpenCreates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a", "b", "smimed.db")
	d := mustOpen(t, path, false, []Bucket{{Name: "one", Version: 1}, {Name: "two", Version: 3, Migrations: make([]Migration, 2)}})
	if d.Path() != path || d.ReadOnly() || d.Bolt() == nil {
		t.Errorf("Path() = %q, ReadOnly() = %v", d.Path(), d.ReadOnly())
	}
	v, err := d.Versions()
	if err != nil || len(v) != 2 || v["one"] != 1 || v["two"] != 3 {
		t.Errorf("Versions() = %v, %v; want one:1 two:3", v, err)
	}
	d.Close()
	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700, filepath.Join(dir, "a"): 0o700} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("mode of %s = %04o, want %04o", p, fi.Mode().Perm(), want)
		}
	}
	// A fresh bucket starts at its version: no migration runs (they are nil).
	want := []string{"meta/", "meta/schema=3", "meta/version/one=1", "meta/version/two=3", "one/", "two/"}
	if got := dump(t, path); !slices.Equal(got, want) {
		t.Errorf("file = %q, want %q", got, want)
	}

	// A read-only open creates nothing, and refuses a missing file.
	d = mustOpen(t, path, true, []Bucket{{Name: "one", Version: 1}, {Name: "three", Version: 1}})
	if !d.ReadOnly() {
		t.Error("ReadOnly() = false")
	}
	d.Close()
	if got := dump(t, path); !slices.Equal(got, want) {
		t.Errorf("after a read-only open: file = %q, want %q", got, want)
	}
	_, err = open(filepath.Join(dir, "nope.db"), true, nil)
	if !errors.Is(err, ErrMissing) || err.Error() != "state file "+filepath.Join(dir, "nope.db")+" does not exist" {
		t.Errorf("Open(missing, read-only) = %v, want ErrMissing", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "nope.db")); err == nil {
		t.Error("a read-only open created the file")
	}
}

func TestOpenLocked(t *testing.T) {
	old := LockTimeout
	LockTimeout = 200 * time.Millisecond
	defer func() { LockTimeout = old }()
	path := filepath.Join(t.TempDir(), "smimed.db")
	d := mustOpen(t, path, false, nil)

	want := fmt.Sprintf("state file %s is locked by another process (is smimed running?); "+
		"that lock covers all of smimed's state: certificates, archive index, audit log, checkpoints", path)
	for _, ro := range []bool{false, true} {
		start := time.Now()
		d2, err := Open(path, ro)
		if err == nil {
			d2.Close()
			t.Fatalf("Open(read-only=%v) while open read-write succeeded", ro)
		}
		if !errors.Is(err, ErrLocked) || err.Error() != want {
			t.Errorf("Open(read-only=%v) = %q, want %q", ro, err, want)
		}
		if el := time.Since(start); el < 150*time.Millisecond || el > 3*time.Second {
			t.Errorf("Open(read-only=%v) gave up after %v, want about %v", ro, el, LockTimeout)
		}
	}
	d.Close()

	// Readers share the lock, and keep a writer out.
	r1 := mustOpen(t, path, true, nil)
	r2 := mustOpen(t, path, true, nil)
	if _, err := Open(path, false); !errors.Is(err, ErrLocked) {
		t.Errorf("Open(read-write) while read = %v, want ErrLocked", err)
	}
	r1.Close()
	r2.Close()
}

// TestMigrations: older buckets are migrated in order, each step once,
// in one transaction with the version records.
func TestMigrations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "smimed.db")
	mustOpen(t, path, false, []Bucket{{Name: "b", Version: 1}, {Name: "c", Version: 1}}).Close()
	put(t, path, "b", "k", "v1")

	var ran []string
	step := func(name string, from int, fail bool) Migration {
		return func(tx *bbolt.Tx) error {
			ran = append(ran, fmt.Sprintf("%s%d", name, from))
			b := tx.Bucket([]byte(name))
			if err := b.Put([]byte("k"), append(b.Get([]byte("k")), fmt.Sprintf(">%d", from+1)...)); err != nil {
				return err
			}
			if fail {
				return errors.New("disk on fire")
			}
			return nil
		}
	}
	v3 := []Bucket{
		{Name: "b", Version: 3, Migrations: []Migration{step("b", 1, false), step("b", 2, false)}},
		{Name: "c", Version: 2, Migrations: []Migration{step("c", 1, true)}},
	}
	// A failing migration leaves the file as it was.
	_, err := open(path, false, v3)
	if err == nil || !strings.Contains(err.Error(), "bucket c: migration from version 1 to 2: disk on fire") {
		t.Errorf("Open with a failing migration = %v", err)
	}
	want := []string{"b/", "b/k=v1", "c/", "meta/", "meta/schema=1", "meta/version/b=1", "meta/version/c=1"}
	if got := dump(t, path); !slices.Equal(got, want) {
		t.Errorf("after a failed migration: file = %q, want %q", got, want)
	}

	// A read-only open does not migrate.
	_, err = open(path, true, v3)
	if !errors.Is(err, ErrMigrationNeeded) || !strings.Contains(err.Error(), "bucket b is at version 1, this smimed reads 3") {
		t.Errorf("Open(read-only) of an older bucket = %v, want ErrMigrationNeeded", err)
	}

	ran = nil
	v3[1].Migrations[0] = step("c", 1, false)
	mustOpen(t, path, false, v3).Close()
	if got := strings.Join(ran, ","); got != "b1,b2,c1" {
		t.Errorf("migrations ran: %s, want b1,b2,c1", got)
	}
	want = []string{"b/", "b/k=v1>2>3", "c/", "c/k=>2", "meta/", "meta/schema=3", "meta/version/b=3", "meta/version/c=2"}
	if got := dump(t, path); !slices.Equal(got, want) {
		t.Errorf("after migrating: file = %q, want %q", got, want)
	}
	ran = nil
	mustOpen(t, path, false, v3).Close()
	mustOpen(t, path, true, v3).Close()
	if len(ran) != 0 {
		t.Errorf("migrations ran again: %v", ran)
	}
}

// TestNewer: a bucket newer than the code is refused by either open,
// and the file is left alone.
func TestNewer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "smimed.db")
	mustOpen(t, path, false, []Bucket{{Name: "certs", Version: 2, Migrations: make([]Migration, 1)}, {Name: "x", Version: 1}}).Close()
	before := dump(t, path)
	for _, ro := range []bool{false, true} {
		_, err := open(path, ro, []Bucket{{Name: "x", Version: 1}, {Name: "certs", Version: 1}})
		want := fmt.Sprintf("state file %s written by a newer smimed: bucket certs version 2, this smimed knows 1; upgrade smimed", path)
		if !errors.Is(err, ErrSchema) || err.Error() != want {
			t.Errorf("Open(read-only=%v) = %q, want %q", ro, err, want)
		}
	}
	if got := dump(t, path); !slices.Equal(got, before) {
		t.Errorf("a refused open changed the file: %q, was %q", got, before)
	}
	// Buckets this code does not register are kept, and count in "schema".
	mustOpen(t, path, false, []Bucket{{Name: "x", Version: 1}}).Close()
	if got := dump(t, path); !slices.Equal(got, before) {
		t.Errorf("an open without certs changed the file: %q, was %q", got, before)
	}
}

func TestCorruptRecords(t *testing.T) {
	for _, kv := range [][2]string{{"version/b", "one"}, {"version/b", "0"}, {"schema", "-1"}, {"version/other", "x"}} {
		path := filepath.Join(t.TempDir(), "smimed.db")
		mustOpen(t, path, false, []Bucket{{Name: "b", Version: 1}}).Close()
		put(t, path, "meta", kv[0], kv[1])
		for _, ro := range []bool{false, true} {
			_, err := open(path, ro, []Bucket{{Name: "b", Version: 1}})
			if kv[0] == "version/other" && ro {
				// A read-only open looks only at the buckets it knows.
				if err != nil {
					t.Errorf("Open(read-only) with %s=%s = %v, want success", kv[0], kv[1], err)
				}
				continue
			}
			if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "corrupt") || !strings.Contains(err.Error(), path) {
				t.Errorf("Open(read-only=%v) with %s=%s = %v, want ErrSchema", ro, kv[0], kv[1], err)
			}
		}
	}
}

// TestLegacyFile: a file written before the registry (the certificate
// store's "schema" record only) is at version "schema" everywhere.
func TestLegacyFile(t *testing.T) {
	reg := []Bucket{{Name: "certs", Version: 1}, {Name: "archive_records", Version: 1}, {Name: "checkpoints", Version: 1}}
	legacy := func(t *testing.T, schema string) string {
		path := filepath.Join(t.TempDir(), "smimed.db")
		put(t, path, "meta", "schema", schema, "certs", "fp", "der", "archive_records", "1", "r")
		return path
	}

	path := legacy(t, "1")
	d := mustOpen(t, path, true, reg)
	if v, err := d.Versions(); err != nil || len(v) != 0 {
		t.Errorf("Versions() read-only = %v, %v; want none recorded", v, err)
	}
	d.Close()
	mustOpen(t, path, false, reg).Close()
	want := []string{"archive_records/", "archive_records/1=r", "certs/", "certs/fp=der", "checkpoints/",
		"meta/", "meta/schema=1", "meta/version/archive_records=1", "meta/version/certs=1", "meta/version/checkpoints=1"}
	if got := dump(t, path); !slices.Equal(got, want) {
		t.Errorf("file = %q, want %q", got, want)
	}

	// A legacy file at schema 2 (no smimed wrote one) is newer throughout.
	path = legacy(t, "2")
	_, err := open(path, false, reg)
	if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "bucket certs version 2, this smimed knows 1") {
		t.Errorf("Open(legacy schema 2) = %v, want ErrSchema", err)
	}
	reg2 := []Bucket{{Name: "certs", Version: 2, Migrations: make([]Migration, 1)}, {Name: "archive_records", Version: 2, Migrations: make([]Migration, 1)}}
	mustOpen(t, path, false, reg2).Close()
	if got := dump(t, path); !slices.Contains(got, "meta/version/certs=2") || !slices.Contains(got, "meta/version/archive_records=2") || !slices.Contains(got, "meta/schema=2") {
		t.Errorf("file = %q", got)
	}
}

func TestRegister(t *testing.T) {
	reg := register(nil, Bucket{Name: "a", Version: 1})
	for _, b := range []Bucket{
		{Name: "a", Version: 1},
		{Name: "meta", Version: 1},
		{Name: "", Version: 1},
		{Name: "b", Version: 0},
		{Name: "b", Version: 2},
		{Name: "b", Version: 1, Migrations: make([]Migration, 1)},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("register(%+v) did not panic", b)
				}
			}()
			register(reg, b)
		}()
	}
	if reg = register(reg, Bucket{Name: "b", Version: 2, Migrations: make([]Migration, 1)}); len(reg) != 2 || reg[1].Name != "b" {
		t.Errorf("register = %+v", reg)
	}
}
