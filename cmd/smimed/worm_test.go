package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/archive/worm"
	"github.com/smimed/smimed/daemon/admin"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest/state"
)

// TestArchiveVerifyEvidenceWorm: archive verify --evidence compares the
// WORM copy with the archive and names an object whose current version
// someone replaced.
func TestArchiveVerifyEvidenceWorm(t *testing.T) {
	f := newArchiveFixture(t)
	s3 := testenv.StartS3(t)
	locked, err := worm.NewClient(worm.ClientConfig{Endpoint: s3.Endpoint, Bucket: "locked", PathStyle: true,
		Credentials: worm.Credentials{AccessKeyID: s3.AccessKey, SecretAccessKey: s3.SecretKey}})
	if err != nil {
		t.Fatal(err)
	}
	if err := locked.CreateBucket(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	cf, err := os.OpenFile(f.cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	cf.WriteString(s3.WormTable(t, filepath.Dir(f.cfg), "locked"))
	cf.Close()

	// Before anything was uploaded: nothing compared, all still to queue.
	code, out, errOut := runCmd(nil, "archive", "verify", "--evidence", "--config", f.cfg)
	if code != exitOK || !strings.Contains(out, "WORM copy (bucket locked): compared 0 objects: no problems; 0 objects waiting in the outbox, 8 records not yet queued") {
		t.Fatalf("verify --evidence before the upload: exit %d\n%s%s", code, out, errOut)
	}
	// status without the service reads the backlog from the state file.
	wantStatus := "WORM copy (bucket locked): 0 objects and 0 legal holds waiting (oldest queued -), 8 records not yet queued; not uploading: the service is not running"
	if code, out, errOut := runCmd(nil, "status", "--config", f.cfg); code != exitFailed || !strings.Contains(out, wantStatus) {
		t.Fatalf("status without the service: exit %d\n%s%s\nwant %q", code, out, errOut, wantStatus)
	}
	// The uploader, as the service runs it, with the configured client:
	// 8 records, 7 originals and 1 plaintext (only sign-then-encrypt.eml
	// was decrypted; the others' plaintext is their original).
	cfg, err := config.Load(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cfg.Archive.Worm.Client()
	if err != nil {
		t.Fatal(err)
	}
	db, err := state.Open(filepath.Join(f.state, "smimed.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	a, err := archive.Open(filepath.Join(f.state, "archive"), db)
	if err != nil {
		t.Fatal(err)
	}
	u := worm.NewUploader(a, db, c, worm.Options{Mode: cfg.Archive.Worm.S3Mode()})
	next := u.Flush(context.Background())
	db.Close()
	if !next.IsZero() {
		t.Fatalf("the upload left work: %+v", u.Stats())
	}

	code, out, errOut = runCmd(nil, "archive", "verify", "--evidence", "--config", f.cfg)
	if code != exitOK || !strings.Contains(out, "compared 16 objects: no problems; 0 objects waiting") {
		t.Fatalf("verify --evidence after the upload: exit %d\n%s%s", code, out, errOut)
	}
	if _, out, _ := runCmd(nil, "status", "--config", f.cfg); !strings.Contains(out, "0 objects and 0 legal holds waiting (oldest queued -), 0 records not yet queued") {
		t.Fatalf("status after the upload:\n%s", out)
	}
	// Someone with smimed's key writes a new version of an original.
	raw := f.byKey["plain.eml"].raw
	sum := sha256.Sum256(raw)
	key := "originals/" + hex.EncodeToString(sum[:])
	forged := []byte("forged")
	fs := sha256.Sum256(forged)
	if _, err := locked.PutObject(context.Background(), worm.Put{Key: key, Body: bytes.NewReader(forged), Size: int64(len(forged)), SHA256: fs[:],
		Mode: "GOVERNANCE", RetainUntil: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCmd(nil, "archive", "verify", "--evidence", "--config", f.cfg)
	if code != exitFailed || !strings.Contains(out, "WORM copy: record "+f.id("plain.eml")+": "+key+": differs from the local file") {
		t.Fatalf("verify --evidence after a forged version: exit %d\n%s", code, out)
	}
	code, out, _ = runCmd(nil, "archive", "verify", "--evidence", "--json", "--config", f.cfg)
	var res struct {
		Records int                `json:"records"`
		Worm    *worm.VerifyResult `json:"worm"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != exitFailed || res.Records != 8 || res.Worm == nil || len(res.Worm.Problems) != 1 || res.Worm.Problems[0].File != key {
		t.Fatalf("verify --evidence --json: exit %d, %v, %+v", code, err, res)
	}
}

// TestCheckConnectWorm: check-config --connect's line for the bucket, from
// what the server says of its Object Lock.
func TestCheckConnectWorm(t *testing.T) {
	s3 := testenv.StartS3(t)
	dir := t.TempDir()
	for _, b := range []struct {
		name string
		lock bool
	}{{"locked", true}, {"plain", false}} {
		c, err := worm.NewClient(worm.ClientConfig{Endpoint: s3.Endpoint, Bucket: b.name, PathStyle: true,
			Credentials: worm.Credentials{AccessKeyID: s3.AccessKey, SecretAccessKey: s3.SecretKey}})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.CreateBucket(context.Background(), b.lock); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		bucket, want string
		ok           bool
	}{
		{"locked", "bucket locked at " + s3.Endpoint + ": Object Lock enabled (bucket default retention: none; smimed writes GOVERNANCE with each object)", true},
		{"plain", "bucket plain at " + s3.Endpoint + " has no Object Lock enabled: smimed refuses to start", false},
		{"missing", "NoSuchBucket", false},
	} {
		p := filepath.Join(dir, c.bucket+".toml")
		if err := os.WriteFile(p, []byte(s3.WormTable(t, dir, c.bucket)), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		var oks []bool
		checkWorm(cfg.Archive.Worm, func(ok bool, what, format string, args ...any) {
			oks = append(oks, ok)
			lines = append(lines, what+": "+fmt.Sprintf(format, args...))
		})
		if len(lines) != 1 || oks[0] != c.ok || !strings.Contains(lines[0], "archive.worm: ") || !strings.Contains(lines[0], c.want) {
			t.Errorf("bucket %s: %v %q, want ok=%v and %q", c.bucket, oks, lines, c.ok, c.want)
		}
	}
}

func TestStatusPrintWorm(t *testing.T) {
	var b bytes.Buffer
	statusPrintWorm(&b, nil)
	if b.Len() != 0 {
		t.Fatalf("without a WORM copy: %q", b.String())
	}
	statusPrintWorm(&b, &admin.WormStatus{Bucket: "smimed-archive",
		Backlog: worm.Backlog{Objects: 12, Holds: 1, Unqueued: 3, Oldest: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), LastError: "worm: put x: refused\x1b[2J"},
		Stats:   worm.Stats{Uploaded: 1520, Failures: 2}})
	want := "\nWORM copy (bucket smimed-archive): 12 objects and 1 legal holds waiting (oldest queued 2026-03-01T12:00:00Z), 3 records not yet queued; since start 1520 uploaded, 2 failures\n  last error: worm: put x: refused\\x1b[2J\n"
	if b.String() != want {
		t.Fatalf("statusPrintWorm = %q, want %q", b.String(), want)
	}
}
