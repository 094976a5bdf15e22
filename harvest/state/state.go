// Package state owns smimed's state file, state_dir/smimed.db: the one
// bbolt file that holds everything smimed keeps apart from the archive's
// message files. Its buckets belong to other packages: the certificate
// store (package harvest), the archive's index, user copies and audit log
// (package archive), the folders' checkpoints (package daemon). This
// package opens the file, holds its lock, and keeps each bucket's schema
// version; it imports nothing of smimed, so all of them can use it.
//
// One process at a time writes the file: a read-write Open holds an
// exclusive lock (flock) for the life of the DB, a read-only Open a shared
// one, and either gives up after LockTimeout with ErrLocked. The lock
// covers all of smimed's state, which is why the admin commands talk to a
// running daemon over its control socket instead of opening the file.
//
// Every bucket is registered by its owner (Register, from an init
// function) with the version of the format its code reads and writes, and
// the migrations that bring an older version up to it. A read-write Open
// creates the missing buckets, runs the migrations of every bucket whose
// recorded version is older, in order and in one transaction, and records
// the versions. A file with a bucket newer than this code knows is refused
// (ErrSchema) by either kind of Open; so is a bucket that needs a
// migration when opened read-only.
//
// The versions live in the bucket "meta", which this package owns:
//
//	meta  "version/" + bucket name → version (decimal)
//	      "schema" → the highest version of any bucket (decimal)
//
// "schema" is the only version record of smimed before this registry
// (up to commit bade7ee): it was the certificate store's, at 1, and that
// smimed refuses a file whose "schema" is higher. Open keeps it at the
// highest version recorded, so such an smimed opens a file in which no
// bucket moved on and refuses one in which any did. A file written before
// the registry has no "version/" records; its buckets are at the version
// "schema" names (1), and its first read-write Open records them.
package state

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/bbolt"
)

// LockTimeout is how long Open waits for the file's lock before giving up
// with ErrLocked.
var LockTimeout = 5 * time.Second

// Errors of Open; returned errors wrap them.
var (
	ErrLocked  = errors.New("state: state file is locked")
	ErrMissing = errors.New("state: state file does not exist")
	// ErrSchema: a bucket is newer than this code knows, or a version
	// record is corrupt.
	ErrSchema = errors.New("state: unsupported state file version")
	// ErrMigrationNeeded: a read-only Open found a bucket older than this
	// code reads; a read-write Open migrates it.
	ErrMigrationNeeded = errors.New("state: state file needs a migration")
)

// MetaBucket is the bucket this package keeps the versions in.
const MetaBucket = "meta"

var (
	bucketMeta    = []byte(MetaBucket)
	keySchema     = []byte("schema")
	versionPrefix = []byte("version/")
)

// A Migration brings its bucket from one version to the next. It runs in
// Open's write transaction; the bucket exists. It should touch only its
// own bucket: the others may not be migrated yet.
type Migration func(tx *bbolt.Tx) error

// Bucket is the registration of one bucket by its owner.
type Bucket struct {
	Name string
	// Version is the version of the bucket's format this code reads and
	// writes, 1 or more.
	Version int
	// Migrations[i] brings the bucket from version i+1 to i+2: there are
	// Version-1 of them.
	Migrations []Migration
}

var (
	registryMu sync.Mutex
	registry   []Bucket
)

// Register adds a bucket to those every Open creates and migrates. Owners
// call it from an init function. It panics on a bucket registered twice,
// on the name "meta", and on a Version that does not match Migrations.
func Register(b Bucket) {
	registryMu.Lock()
	defer registryMu.Unlock()
	registry = register(registry, b)
}

func register(reg []Bucket, b Bucket) []Bucket {
	switch {
	case b.Name == "" || b.Name == MetaBucket:
		panic(fmt.Sprintf("state: bucket name %q is not available", b.Name))
	case b.Version < 1 || len(b.Migrations) != b.Version-1:
		panic(fmt.Sprintf("state: bucket %s: version %d needs %d migrations, has %d", b.Name, b.Version, b.Version-1, len(b.Migrations)))
	}
	for _, r := range reg {
		if r.Name == b.Name {
			panic(fmt.Sprintf("state: bucket %s registered twice", b.Name))
		}
	}
	return append(reg, b)
}

// Registered returns the registered buckets, in the order of
// registration.
func Registered() []Bucket {
	registryMu.Lock()
	defer registryMu.Unlock()
	return append([]Bucket(nil), registry...)
}

// DB is the open state file.
type DB struct {
	db    *bbolt.DB
	path  string
	group group // Commit's queue
}

// Open opens the state file at path, read-only or read-write, with the
// registered buckets (Registered). A read-write open creates the file
// (mode 0600; its directory 0700 if missing) and the buckets, and
// migrates; a read-only open of a missing file fails with ErrMissing.
// Either waits at most LockTimeout for the lock, then fails with
// ErrLocked.
func Open(path string, readOnly bool) (*DB, error) {
	return open(path, readOnly, Registered())
}

func open(path string, readOnly bool, buckets []Bucket) (*DB, error) {
	if readOnly {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, errorf(ErrMissing, "state file %s does not exist", path)
		}
	} else if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: LockTimeout, ReadOnly: readOnly})
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, errorf(ErrLocked, "state file %s is locked by another process (is smimed running?); "+
			"that lock covers all of smimed's state: certificates, archive index, audit log, checkpoints", path)
	}
	if err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	d := &DB{db: db, path: path}
	if readOnly {
		err = db.View(func(tx *bbolt.Tx) error { return d.check(tx, buckets) })
	} else {
		err = db.Update(func(tx *bbolt.Tx) error { return d.migrate(tx, buckets) })
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return d, nil
}

// Bolt is the bbolt handle, for the owners' transactions on their own
// buckets.
func (d *DB) Bolt() *bbolt.DB { return d.db }

// Path is the file's name.
func (d *DB) Path() string { return d.path }

// ReadOnly says whether the file was opened read-only.
func (d *DB) ReadOnly() bool { return d.db.IsReadOnly() }

// Close releases the file and its lock.
func (d *DB) Close() error { return d.db.Close() }

// Versions returns the version recorded for each bucket. A file written
// before the registry and not yet opened read-write has none.
func (d *DB) Versions() (map[string]int, error) {
	out := map[string]int{}
	err := d.db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil
		}
		c := meta.Cursor()
		for k, v := c.Seek(versionPrefix); k != nil && bytes.HasPrefix(k, versionPrefix); k, v = c.Next() {
			name := string(k[len(versionPrefix):])
			n, err := d.parse(v, "version of bucket "+name)
			if err != nil {
				return err
			}
			out[name] = n
		}
		return nil
	})
	return out, err
}

// stored returns the version each bucket is at: its record; else, for a
// bucket that exists, the version "schema" names in a file written before
// the registry and 1 in a later one; else 0. A bucket that does not exist
// is created at the version registered, whatever its record says, unless
// that says it is newer.
func (d *DB) stored(tx *bbolt.Tx, buckets []Bucket) ([]int, error) {
	implied := 1
	meta := tx.Bucket(bucketMeta)
	if meta != nil {
		if v := meta.Get(keySchema); v != nil {
			n, err := d.parse(v, "schema record")
			if err != nil {
				return nil, err
			}
			if k, _ := meta.Cursor().Seek(versionPrefix); k == nil || !bytes.HasPrefix(k, versionPrefix) {
				implied = n // no version records: written before the registry
			}
		}
	}
	out := make([]int, len(buckets))
	for i, b := range buckets {
		var v []byte
		if meta != nil {
			v = meta.Get(versionKey(b.Name))
		}
		switch {
		case v != nil:
			n, err := d.parse(v, "version of bucket "+b.Name)
			if err != nil {
				return nil, err
			}
			out[i] = n
		case tx.Bucket([]byte(b.Name)) != nil:
			out[i] = implied
		}
	}
	return out, nil
}

func (d *DB) parse(v []byte, what string) (int, error) {
	n, err := strconv.Atoi(string(v))
	if err != nil || n < 1 {
		return 0, errorf(ErrSchema, "state file %s has a corrupt %s: %q", d.path, what, v)
	}
	return n, nil
}

func (d *DB) newer(b Bucket, v int) error {
	return errorf(ErrSchema, "state file %s written by a newer smimed: bucket %s version %d, this smimed knows %d; upgrade smimed",
		d.path, b.Name, v, b.Version)
}

// check is a read-only Open's: every bucket that exists is at the version
// this code knows.
func (d *DB) check(tx *bbolt.Tx, buckets []Bucket) error {
	stored, err := d.stored(tx, buckets)
	if err != nil {
		return err
	}
	for i, b := range buckets {
		switch v := stored[i]; {
		case v > b.Version:
			return d.newer(b, v)
		case v < b.Version && tx.Bucket([]byte(b.Name)) != nil:
			return errorf(ErrMigrationNeeded, "state file %s: bucket %s is at version %d, this smimed reads %d; "+
				"open it read-write once (start smimed) to migrate it", d.path, b.Name, v, b.Version)
		}
	}
	return nil
}

// migrate is a read-write Open's: create, migrate, record.
func (d *DB) migrate(tx *bbolt.Tx, buckets []Bucket) error {
	stored, err := d.stored(tx, buckets)
	if err != nil {
		return err
	}
	for i, b := range buckets {
		if stored[i] > b.Version {
			return d.newer(b, stored[i])
		}
	}
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return fmt.Errorf("state file %s: %w", d.path, err)
	}
	for i, b := range buckets {
		v := stored[i]
		if tx.Bucket([]byte(b.Name)) == nil {
			if _, err := tx.CreateBucket([]byte(b.Name)); err != nil {
				return fmt.Errorf("state file %s: bucket %s: %w", d.path, b.Name, err)
			}
			v = b.Version
		}
		for ; v < b.Version; v++ {
			if err := b.Migrations[v-1](tx); err != nil {
				return fmt.Errorf("state file %s: bucket %s: migration from version %d to %d: %w", d.path, b.Name, v, v+1, err)
			}
		}
		if err := putInt(meta, versionKey(b.Name), v); err != nil {
			return fmt.Errorf("state file %s: %w", d.path, err)
		}
	}
	// "schema": the highest version recorded, also of buckets this code
	// does not register.
	highest := 1
	c := meta.Cursor()
	for k, v := c.Seek(versionPrefix); k != nil && bytes.HasPrefix(k, versionPrefix); k, v = c.Next() {
		n, err := d.parse(v, "version of bucket "+string(k[len(versionPrefix):]))
		if err != nil {
			return err
		}
		highest = max(highest, n)
	}
	if err := putInt(meta, keySchema, highest); err != nil {
		return fmt.Errorf("state file %s: %w", d.path, err)
	}
	return nil
}

func versionKey(name string) []byte { return append(append([]byte{}, versionPrefix...), name...) }

// putInt writes n as decimal, unless it is there already.
func putInt(b *bbolt.Bucket, k []byte, n int) error {
	v := []byte(strconv.Itoa(n))
	if bytes.Equal(b.Get(k), v) {
		return nil
	}
	return b.Put(k, v)
}

// stateError is an error with a message of its own that wraps a sentinel.
type stateError struct {
	msg string
	err error
}

func (e *stateError) Error() string { return e.msg }
func (e *stateError) Unwrap() error { return e.err }

func errorf(sentinel error, format string, args ...any) error {
	return &stateError{msg: fmt.Sprintf(format, args...), err: sentinel}
}
