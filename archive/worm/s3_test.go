package worm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
)

// newTestClient starts a versitygw and returns a client of bucket, made
// with Object Lock when lock is set.
func newTestClient(t testing.TB, bucket string, lock bool) (*Client, *testenv.S3) {
	t.Helper()
	s := testenv.StartS3(t)
	c, err := NewClient(ClientConfig{Endpoint: s.Endpoint, Bucket: bucket, PathStyle: true,
		Credentials: Credentials{AccessKeyID: s.AccessKey, SecretAccessKey: s.SecretKey}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CreateBucket(context.Background(), lock); err != nil {
		t.Fatalf("CreateBucket(lock=%v) = %v", lock, err)
	}
	return c, s
}

func putBytes(t *testing.T, c *Client, key string, body []byte, mode string, until time.Time, hold bool) string {
	t.Helper()
	sum := sha256.Sum256(body)
	v, err := c.PutObject(context.Background(), Put{Key: key, Body: bytes.NewReader(body), Size: int64(len(body)), SHA256: sum[:], Mode: mode, RetainUntil: until, LegalHold: hold})
	if err != nil {
		t.Fatalf("PutObject(%s) = %v", key, err)
	}
	return v
}

// TestObjectLockServer checks what the WORM copy relies on, against the
// real server: a locked version cannot be deleted or replaced, a legal
// hold can be set and cleared, a bucket without lock says so.
func TestObjectLockServer(t *testing.T) {
	ctx := context.Background()
	c, s := newTestClient(t, "locked", true)
	if _, err := c.ObjectLock(ctx); err != nil {
		t.Fatalf("ObjectLock() = %v, want a lock", err)
	}
	until := time.Now().Add(48 * time.Hour).Truncate(time.Second).UTC()
	body := []byte("the original message\r\n")
	v1 := putBytes(t, c, "k", body, "COMPLIANCE", until, false)
	if v1 == "" {
		t.Fatalf("PutObject gave no version id: is versioning on?")
	}
	o, err := c.HeadObject(ctx, "k", v1)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	if o.Mode != "COMPLIANCE" || !o.RetainUntil.Equal(until) || !bytes.Equal(o.SHA256, sum[:]) {
		t.Fatalf("HeadObject = %+v, want COMPLIANCE until %v with SHA-256 %x", o, until, sum)
	}
	if err := c.DeleteObject(ctx, "k", v1); err == nil {
		t.Fatalf("DeleteObject of a locked version succeeded")
	} else {
		t.Logf("delete refused: %v", err)
	}
	// An overwrite makes a new version; the locked one stays as it was.
	v2 := putBytes(t, c, "k", []byte("forged"), "COMPLIANCE", until, false)
	if v2 == v1 {
		t.Fatalf("overwrite kept version id %s", v1)
	}
	if o, err := c.HeadObject(ctx, "k", v1); err != nil || !bytes.Equal(o.SHA256, sum[:]) {
		t.Fatalf("locked version after overwrite: %+v, %v", o, err)
	}
	// Governance: deleting without bypass fails too.
	vg := putBytes(t, c, "g", body, "GOVERNANCE", until, false)
	if err := c.DeleteObject(ctx, "g", vg); err == nil {
		t.Fatalf("DeleteObject of a governance-locked version succeeded without bypass")
	}
	// Legal hold on and off.
	vh := putBytes(t, c, "h", body, "COMPLIANCE", until, true)
	if o, err := c.HeadObject(ctx, "h", vh); err != nil || !o.LegalHold {
		t.Fatalf("HeadObject after put with hold = %+v, %v", o, err)
	}
	if err := c.SetLegalHold(ctx, "h", vh, false); err != nil {
		t.Fatal(err)
	}
	if o, err := c.HeadObject(ctx, "h", vh); err != nil || o.LegalHold {
		t.Fatalf("HeadObject after clearing the hold = %+v, %v", o, err)
	}
	if err := c.SetLegalHold(ctx, "h", vh, true); err != nil {
		t.Fatal(err)
	}
	if o, err := c.HeadObject(ctx, "h", vh); err != nil || !o.LegalHold {
		t.Fatalf("HeadObject after setting the hold = %+v, %v", o, err)
	}
	if _, err := c.HeadObject(ctx, "missing", ""); !errors.Is(err, ErrNoSuchKey) {
		t.Fatalf("HeadObject(missing) = %v, want ErrNoSuchKey", err)
	}
	got, n, err := c.ObjectSHA256(ctx, "k")
	if err != nil || n != 6 {
		t.Fatalf("ObjectSHA256(k) = %x, %d, %v", got, n, err)
	}

	// A bucket without Object Lock.
	plain, err := NewClient(ClientConfig{Endpoint: s.Endpoint, Bucket: "plain", PathStyle: true,
		Credentials: Credentials{AccessKeyID: s.AccessKey, SecretAccessKey: s.SecretKey}})
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.CreateBucket(ctx, false); err != nil {
		t.Fatal(err)
	}
	if _, err := plain.ObjectLock(ctx); !errors.Is(err, ErrNoObjectLock) {
		t.Fatalf("ObjectLock() on a bucket without lock = %v, want ErrNoObjectLock", err)
	}
	// A wrong secret is refused (the signature is checked).
	bad, _ := NewClient(ClientConfig{Endpoint: s.Endpoint, Bucket: "locked", PathStyle: true,
		Credentials: Credentials{AccessKeyID: s.AccessKey, SecretAccessKey: "wrong"}})
	if _, err := bad.ObjectLock(ctx); err == nil {
		t.Fatalf("ObjectLock() with a wrong secret succeeded")
	}
}
