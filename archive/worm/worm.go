// Package worm keeps a copy of the archive that the operator cannot
// change: every original, plaintext and record (seals included, which
// are records of the chain) is also written to an S3 bucket with Object
// Lock (write once, read many), locked until its retention ends. In
// compliance mode nobody, not even the bucket's owner, can delete or
// overwrite a locked object version before then; governance mode lets an
// account with the bypass permission do so (for trials).
//
// Mail never waits for S3. The archive is the system of record; this
// package follows it: an outbox in the state file lists the objects still
// to be written, and an uploader works through it in the background,
// retrying with backoff while the server is down. Nothing is lost: the
// outbox is filled from the archive's records (their ids run without
// gaps) after a cursor that only moves in the same transaction that adds
// a record's objects to the outbox.
//
// Object keys in the bucket:
//
//	originals/SHA256        an original as it came (hex SHA-256 of its bytes)
//	plaintexts/SHA256       a plaintext
//	records/ID.json         a record's JSON as hashed into the chain (ID: 20 digits)
//	files/NAME              any other evidence file given to Enqueue (seal tokens)
//
// Each is written with x-amz-checksum-sha256, which the server checks and
// keeps; Verify compares it with the local file.
//
// In the state file (package harvest/state), buckets of its own:
//
//	worm_outbox  "put/" key → entry JSON: an object still to be written
//	             "hold/" key → hold JSON: a legal hold still to be set or cleared
//	worm_meta    "cursor" → the last record id whose objects are in the outbox (8 bytes)
package worm

import (
	"time"

	"github.com/smimed/smimed/archive"
)

// RetainUntil gives the date a record's objects stay locked until.
type RetainUntil func(r *archive.Record) time.Time

// YearsAfterReceipt is the retention rule of the issue: the end of the
// calendar year the message was received in, plus years. (Retention
// classes give years per record; until they do, one value for all.)
func YearsAfterReceipt(years int) RetainUntil {
	return func(r *archive.Record) time.Time { return EndOfYearPlus(r.When(), years) }
}

// EndOfYearPlus is the end of t's calendar year (UTC) plus years: the
// first instant of year t.Year()+1+years.
func EndOfYearPlus(t time.Time, years int) time.Time {
	return time.Date(t.UTC().Year()+1+years, time.January, 1, 0, 0, 0, 0, time.UTC)
}

// Held reports whether a legal hold covers a record (its objects get the
// S3 legal hold). Nil: none does.
type Held func(r *archive.Record) bool
