package worm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/cms"
	"github.com/smimed/smimed/harvest/state"
)

type env struct {
	a   *archive.Archive
	db  *state.DB
	c   *Client
	s3  *testenv.S3
	eng *harvest.Engine
}

func newEnv(t testing.TB) *env {
	t.Helper()
	c, s := newTestClient(t, "smimed-archive", true)
	dir := t.TempDir()
	db, err := state.Open(filepath.Join(dir, "smimed.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	a, err := archive.Open(filepath.Join(dir, "archive"), db)
	if err != nil {
		t.Fatal(err)
	}
	kdir := t.TempDir()
	key := filepath.Join(kdir, "org.key")
	if err := os.WriteFile(key, testenv.Testdata(t, "pki", "org-new.key"), 0o600); err != nil {
		t.Fatal(err)
	}
	lk, err := harvest.LoadPEMKey(testenv.TestdataPath(t, "pki", "org-new.crt"), key)
	if err != nil {
		t.Fatal(err)
	}
	eng := harvest.New(harvest.Options{Keys: []*cms.Key{{Cert: lk.Cert, Private: lk.Private}}})
	return &env{a: a, db: db, c: c, s3: s, eng: eng}
}

func (e *env) put(t testing.TB, uid uint32, received time.Time, raw []byte) *archive.Record {
	t.Helper()
	src := archive.Source{Account: "ceo", Folder: "INBOX", UIDValidity: 7, UID: uid, InternalDate: received}
	res, err := e.eng.Process(raw, received)
	if err != nil {
		t.Fatal(err)
	}
	r, _, err := e.a.Put(src, raw, res)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// head reads an object, failing the test when it is not there.
func (e *env) head(t *testing.T, key string) Object {
	t.Helper()
	o, err := e.c.HeadObject(context.Background(), key, "")
	if err != nil {
		t.Fatalf("HeadObject(%s) = %v", key, err)
	}
	return o
}

func hexKey(prefix string, b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 64)
	for _, c := range sum(b) {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return prefix + string(out)
}

func TestUploadLocksEveryObject(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	enc := testenv.Testdata(t, "msg", "enc-aes256.eml")
	plain := testenv.Testdata(t, "msg", "plain.eml")
	r1 := e.put(t, 1, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), enc)
	r2 := e.put(t, 2, time.Date(2024, 12, 31, 23, 30, 0, 0, time.UTC), plain)
	u := NewUploader(e.a, e.db, e.c, Options{Mode: "COMPLIANCE", RetainUntil: YearsAfterReceipt(6)})
	if next := u.Flush(ctx); !next.IsZero() {
		t.Fatalf("Flush left work for %v; backlog %+v", next, must(u.Backlog()))
	}
	if bl := must(u.Backlog()); bl.Objects != 0 || bl.Unqueued != 0 {
		t.Fatalf("backlog after Flush = %+v", bl)
	}
	// The plaintext as the archive's Maildir holds it, read here.
	pfile, err := e.a.PlaintextPath(r1)
	if err != nil {
		t.Fatal(err)
	}
	ptext, err := os.ReadFile(pfile)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(ptext, enc) {
		t.Fatal("the encrypted message's plaintext is its original")
	}
	until2026 := time.Date(2033, 1, 1, 0, 0, 0, 0, time.UTC) // 2026 ends, plus 6 years
	until2024 := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		key   string
		body  []byte
		until time.Time
	}{
		{hexKey("originals/", enc), enc, until2026},
		{hexKey("plaintexts/", ptext), ptext, until2026},
		{hexKey("originals/", plain), plain, until2024},
	} {
		o := e.head(t, c.key)
		if !bytes.Equal(o.SHA256, sum(c.body)) || o.Size != int64(len(c.body)) {
			t.Errorf("%s: bucket has SHA-256 %x size %d, want %x size %d", c.key, o.SHA256, o.Size, sum(c.body), len(c.body))
		}
		if o.Mode != "COMPLIANCE" || !o.RetainUntil.Equal(c.until) {
			t.Errorf("%s: lock %s until %v, want COMPLIANCE until %v", c.key, o.Mode, o.RetainUntil, c.until)
		}
		got, _, err := e.c.ObjectSHA256(ctx, c.key)
		if err != nil || !bytes.Equal(got, sum(c.body)) {
			t.Errorf("%s: content SHA-256 %x (%v), want %x", c.key, got, err, sum(c.body))
		}
	}
	// plain.eml has no S/MIME: its plaintext is the original, one object.
	if _, err := e.c.HeadObject(ctx, "plaintexts/"+r2.PlaintextSHA256, ""); !errors.Is(err, ErrNoSuchKey) {
		t.Errorf("a plaintext object for a message without S/MIME: %v", err)
	}
	// The records, as the chain hashed them.
	for _, r := range []*archive.Record{r1, r2} {
		raw, err := e.a.StoredRecord(r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(raw), `"original_sha256":"`+r.OriginalSHA256+`"`) {
			t.Fatalf("stored record %d does not name its original: %s", r.ID, raw)
		}
		got, _, err := e.c.ObjectSHA256(ctx, RecordKey(r.ID))
		if err != nil || !bytes.Equal(got, sum(raw)) {
			t.Errorf("record %d: bucket SHA-256 %x (%v), want %x", r.ID, got, err, sum(raw))
		}
	}
	if st := u.Stats(); st.Uploaded != 5 || st.Queued != 5 || st.Failures != 0 {
		t.Errorf("Stats() = %+v, want 5 queued and uploaded", st)
	}

	// An attacker with smimed's credentials can neither delete nor
	// replace what was written.
	key := hexKey("originals/", enc)
	v := e.head(t, key).VersionID
	if err := e.c.DeleteObject(ctx, key, v); err == nil {
		t.Fatal("deleting a locked version succeeded")
	}
	if err := e.c.DeleteObject(ctx, RecordKey(r1.ID), e.head(t, RecordKey(r1.ID)).VersionID); err == nil {
		t.Fatal("deleting a locked record succeeded")
	}
	forged := []byte("From: someone else\r\n\r\nforged\r\n")
	putBytes(t, e.c, key, forged, "GOVERNANCE", time.Now().Add(time.Hour), false)
	if o, err := e.c.HeadObject(ctx, key, v); err != nil || !bytes.Equal(o.SHA256, sum(enc)) {
		t.Fatalf("the locked version after an overwrite: %+v, %v", o, err)
	}
	// ... and verify names the object whose current version changed, and
	// one that vanished behind the server's back.
	res, err := Verify(ctx, e.a, e.db, e.c)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) != 1 || res.Problems[0].File != key || !strings.Contains(res.Problems[0].What, "differs") {
		t.Fatalf("Verify after an overwrite = %+v, want one problem: %s differs", res.Problems, key)
	}
	if err := os.Remove(e.s3.ObjectFile("smimed-archive", hexKey("originals/", plain))); err != nil {
		t.Fatal(err)
	}
	res, err = Verify(ctx, e.a, e.db, e.c)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) != 2 || res.Problems[1].File != hexKey("originals/", plain) || !strings.Contains(res.Problems[1].What, "missing") {
		t.Fatalf("Verify after a removal = %+v, want %s missing", res.Problems, hexKey("originals/", plain))
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestVerifyClean(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.put(t, 1, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), testenv.Testdata(t, "msg", "enc-aes256.eml"))
	u := NewUploader(e.a, e.db, e.c, Options{})
	res, err := Verify(ctx, e.a, e.db, e.c)
	if err != nil || res.Objects != 0 || res.Unqueued != 1 || len(res.Problems) != 0 {
		t.Fatalf("Verify before the upload = %+v, %v; want 1 record not queued, no problem", res, err)
	}
	u.Flush(ctx)
	res, err = Verify(ctx, e.a, e.db, e.c)
	if err != nil || res.Objects != 3 || res.Pending != 0 || len(res.Problems) != 0 {
		t.Fatalf("Verify = %+v, %v; want 3 objects, no problem", res, err)
	}
}

func TestLegalHold(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	plain := testenv.Testdata(t, "msg", "plain.eml")
	r := e.put(t, 1, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), plain)
	// A hold known when the record is queued goes with the upload.
	u := NewUploader(e.a, e.db, e.c, Options{Held: func(*archive.Record) bool { return true }})
	u.Flush(ctx)
	key := hexKey("originals/", plain)
	if !e.head(t, key).LegalHold || !e.head(t, RecordKey(r.ID)).LegalHold {
		t.Fatal("a held record's objects were written without legal hold")
	}
	if err := u.SetLegalHold(r, false); err != nil {
		t.Fatal(err)
	}
	u.Flush(ctx)
	if e.head(t, key).LegalHold || e.head(t, RecordKey(r.ID)).LegalHold {
		t.Fatal("legal hold still on after SetLegalHold(false)")
	}
	if err := u.SetLegalHold(r, true); err != nil {
		t.Fatal(err)
	}
	if bl := must(u.Backlog()); bl.Holds != 2 {
		t.Fatalf("backlog after SetLegalHold = %+v, want 2 holds", bl)
	}
	u.Flush(ctx)
	if !e.head(t, key).LegalHold {
		t.Fatal("legal hold not set again")
	}
	if st := u.Stats(); st.Holds != 4 {
		t.Errorf("Stats().Holds = %d, want 4", st.Holds)
	}
}

// TestOutage: with the server down mail is archived as ever, the outbox
// keeps every object across a restart of smimed, and once the server is
// back they all reach the bucket.
func TestOutage(t *testing.T) {
	e := newEnv(t)
	opt := Options{Poll: 20 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
	e.s3.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	u := NewUploader(e.a, e.db, e.c, opt)
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	var bodies [][]byte
	for i := range 5 {
		b := []byte("From: a@example.org\r\nSubject: outage " + string(rune('a'+i)) + "\r\n\r\nbody\r\n")
		bodies = append(bodies, b)
		e.put(t, uint32(i+1), time.Date(2026, 3, 1, 12, 0, i, 0, time.UTC), b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for u.Stats().Failures < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	bl := must(u.Backlog())
	if u.Stats().Failures < 3 || bl.Objects+int(bl.Unqueued)*2 < 10 || u.Stats().Uploaded != 0 {
		t.Fatalf("with the server down: stats %+v, backlog %+v; want failures and all 10 objects waiting", u.Stats(), bl)
	}
	if !strings.Contains(bl.LastError, "connection refused") {
		t.Errorf("backlog does not say the server is down: %+v", bl)
	}

	// smimed restarts (a new uploader on the same state file), the server
	// comes back.
	e.s3.Start(t)
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	u2 := NewUploader(e.a, e.db, e.c, opt)
	go func() { done <- u2.Run(ctx) }()
	deadline = time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if bl := must(u2.Backlog()); bl.Objects == 0 && bl.Unqueued == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if bl := must(u2.Backlog()); bl.Objects != 0 || bl.Unqueued != 0 {
		t.Fatalf("backlog after the server came back = %+v", bl)
	}
	for _, b := range bodies {
		if o := e.head(t, hexKey("originals/", b)); !bytes.Equal(o.SHA256, sum(b)) {
			t.Errorf("object %x after the outage has SHA-256 %x", sum(b), o.SHA256)
		}
	}
	for id := uint64(1); id <= 5; id++ {
		e.head(t, RecordKey(id))
	}
}

// TestNoLockNoUpload: nothing is written to a bucket without Object Lock;
// the objects wait in the outbox.
func TestNoLockNoUpload(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	plainBucket, err := NewClient(ClientConfig{Endpoint: e.s3.Endpoint, Bucket: "no-lock", PathStyle: true,
		Credentials: Credentials{AccessKeyID: e.s3.AccessKey, SecretAccessKey: e.s3.SecretKey}})
	if err != nil {
		t.Fatal(err)
	}
	if err := plainBucket.CreateBucket(ctx, false); err != nil {
		t.Fatal(err)
	}
	body := testenv.Testdata(t, "msg", "plain.eml")
	e.put(t, 1, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), body)
	u := NewUploader(e.a, e.db, plainBucket, Options{})
	if next := u.Flush(ctx); next.IsZero() {
		t.Fatal("Flush to a bucket without lock reports nothing to retry")
	}
	if _, err := plainBucket.HeadObject(ctx, hexKey("originals/", body), ""); !errors.Is(err, ErrNoSuchKey) {
		t.Fatalf("an object reached a bucket without Object Lock: %v", err)
	}
	if bl := must(u.Backlog()); bl.Objects != 2 || u.Stats().Failures != 1 {
		t.Fatalf("backlog %+v, stats %+v; want 2 objects waiting and 1 failure", bl, u.Stats())
	}
}

func FuzzParseAnswers(f *testing.F) {
	f.Add([]byte(`<?xml version="1.0" encoding="UTF-8"?><ObjectLockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>COMPLIANCE</Mode><Days>1</Days></DefaultRetention></Rule></ObjectLockConfiguration>`))
	f.Add([]byte(`<Error><Code>ObjectLockConfigurationNotFoundError</Code><Message>Object Lock configuration does not exist for this bucket</Message></Error>`))
	f.Add([]byte(`<Error><Code>` + strings.Repeat("A", 300) + "\x01</Code></Error>"))
	f.Add([]byte(`<!DOCTYPE x [<!ENTITY a "aaaa">]><ObjectLockConfiguration><ObjectLockEnabled>&a;</ObjectLockEnabled></ObjectLockConfiguration>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e := parseError(b)
		if len(e.Code) > 100 || len(e.Message) > 500 {
			t.Fatalf("parseError kept %d and %d bytes", len(e.Code), len(e.Message))
		}
		_ = e.Error()
		l, err := parseLockConfig(b)
		if err == nil && len(l.DefaultMode) > 20 {
			t.Fatalf("DefaultMode %q too long", l.DefaultMode)
		}
	})
}

// TestRecordWithoutFiles: a record that is not a message (a seal, here a
// record this code cannot read as a message) is copied as its JSON alone,
// locked from now, and does not stop the records after it.
func TestRecordWithoutFiles(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.put(t, 1, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), testenv.Testdata(t, "msg", "plain.eml"))
	seal := []byte(`{"id":2,"kind":"seal","seal":{"first":1,"last":1}`) // not a message record
	err := e.db.Bolt().Update(func(tx *bbolt.Tx) error {
		v := append(make([]byte, 32), seal...)
		b := tx.Bucket([]byte("archive_records"))
		if err := b.Put(binary.BigEndian.AppendUint64(nil, 2), v); err != nil {
			return err
		}
		if err := b.SetSequence(2); err != nil {
			return err
		}
		return tx.Bucket([]byte("archive_meta")).Put([]byte("head"), append(binary.BigEndian.AppendUint64(nil, 2), make([]byte, 32)...))
	})
	if err != nil {
		t.Fatal(err)
	}
	e.put(t, 3, time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC), []byte("From: b@example.org\r\n\r\nthird\r\n"))
	u := NewUploader(e.a, e.db, e.c, Options{RetainUntil: YearsAfterReceipt(7)})
	u.Flush(ctx)
	o := e.head(t, RecordKey(2))
	if !bytes.Equal(o.SHA256, sum(seal)) {
		t.Fatalf("records/2: SHA-256 %x, want %x", o.SHA256, sum(seal))
	}
	if want := time.Date(time.Now().UTC().Year()+8, 1, 1, 0, 0, 0, 0, time.UTC); !o.RetainUntil.Equal(want) {
		t.Errorf("records/2 locked until %v, want %v (from now)", o.RetainUntil, want)
	}
	e.head(t, RecordKey(3))
	if bl := must(u.Backlog()); bl.Objects != 0 || bl.Unqueued != 0 {
		t.Fatalf("backlog = %+v", bl)
	}
}

// TestEnqueueFile: a file handed over (a seal's timestamp token) is
// copied as files/NAME, locked as asked; a file changed before its upload
// is not uploaded.
func TestEnqueueFile(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	dir := t.TempDir()
	tsr, changed := filepath.Join(dir, "1.tsr"), filepath.Join(dir, "2.tsr")
	for _, p := range []string{tsr, changed} {
		if err := os.WriteFile(p, []byte("token "+p), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	u := NewUploader(e.a, e.db, e.c, Options{})
	until := time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := u.Enqueue("seals/1/tsa.tsr", tsr, until); err != nil {
		t.Fatal(err)
	}
	if err := u.Enqueue("seals/2/tsa.tsr", changed, until); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(changed, []byte("swapped"), 0o600); err != nil {
		t.Fatal(err)
	}
	u.Flush(ctx)
	o := e.head(t, "files/seals/1/tsa.tsr")
	if !bytes.Equal(o.SHA256, sum([]byte("token "+tsr))) || !o.RetainUntil.Equal(until) {
		t.Fatalf("files/seals/1/tsa.tsr = %+v", o)
	}
	if _, err := e.c.HeadObject(ctx, "files/seals/2/tsa.tsr", ""); !errors.Is(err, ErrNoSuchKey) {
		t.Fatalf("a file changed after Enqueue was uploaded: %v", err)
	}
	if bl := must(u.Backlog()); bl.Objects != 1 || !strings.Contains(bl.LastError, "was changed") {
		t.Fatalf("backlog = %+v, want the changed file waiting with its error", bl)
	}
}

// TestHoldBeforeQueue: a hold queued (by an admin command, with no
// service running) before its record reached the outbox is set once the
// object is written.
func TestHoldBeforeQueue(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	body := []byte("From: c@example.org\r\n\r\nheld\r\n")
	r := e.put(t, 1, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), body)
	if err := QueueLegalHolds(e.db, e.a, []uint64{r.ID, 99}, true); err != nil {
		t.Fatal(err)
	}
	u := NewUploader(e.a, e.db, e.c, Options{})
	u.Flush(ctx)
	if !e.head(t, hexKey("originals/", body)).LegalHold || !e.head(t, RecordKey(r.ID)).LegalHold {
		t.Fatal("a hold queued before the upload is not on the objects")
	}
	if bl := must(u.Backlog()); bl.Objects != 0 || bl.Holds != 0 {
		t.Fatalf("backlog = %+v", bl)
	}
}
