package archive

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.etcd.io/bbolt"
)

var auditT0 = time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)

// auditFixture is three entries, one minute apart.
func auditFixture() []AuditEntry {
	return []AuditEntry{
		{Time: auditT0, UID: 0, GID: 0, PID: 11, User: "root", Via: "direct", Action: AuditList, Detail: "from=@partner.example"},
		{Time: auditT0.Add(time.Minute), UID: 1000, GID: 1000, PID: 22, User: "alice", Via: "socket", Action: AuditShow, Detail: "id=3"},
		{Time: auditT0.Add(2 * time.Minute), UID: 1001, GID: 998, PID: 33, Via: "socket", Action: AuditBackup},
	}
}

func writeAudit(t *testing.T, a *Archive, es []AuditEntry) {
	t.Helper()
	for _, e := range es {
		if err := a.Audit(e); err != nil {
			t.Fatalf("Audit(%+v) = %v", e, err)
		}
	}
}

func readAudit(t *testing.T, a *Archive, since time.Time) []AuditEntry {
	t.Helper()
	var got []AuditEntry
	if err := a.AuditLog(since, func(e AuditEntry) error { got = append(got, e); return nil }); err != nil {
		t.Fatalf("AuditLog = %v", err)
	}
	return got
}

func TestAuditWrittenAndListedInOrder(t *testing.T) {
	a, db := openTest(t)
	want := auditFixture()
	writeAudit(t, a, want)

	got := readAudit(t, a, time.Time{})
	if len(got) != len(want) {
		t.Fatalf("AuditLog gave %d entries, want %d", len(got), len(want))
	}
	for i, g := range got {
		w := want[i]
		if g.ID != uint64(i+1) || !g.Time.Equal(w.Time) || g.UID != w.UID || g.GID != w.GID || g.PID != w.PID ||
			g.User != w.User || g.Via != w.Via || g.Action != w.Action || g.Detail != w.Detail {
			t.Errorf("entry %d = %+v, want %+v", i+1, g, w)
		}
	}

	// since: the last two.
	if got := readAudit(t, a, auditT0.Add(30*time.Second)); len(got) != 2 || got[0].ID != 2 {
		t.Errorf("AuditLog(since t0+30s) = %+v, want entries 2 and 3", got)
	}
	// fn's error stops the listing and comes back unwrapped.
	stop := errors.New("enough")
	n := 0
	if err := a.AuditLog(time.Time{}, func(AuditEntry) error { n++; return stop }); err != stop || n != 1 {
		t.Errorf("AuditLog with a failing fn = %v after %d entries, want %v after 1", err, n, stop)
	}

	// The chain as documented, recomputed here from the raw entries.
	prev := documentedChain(t, db, "archive_audit", "smimed archive audit v1\n")
	res, err := a.VerifyAudit()
	if err != nil || !res.OK() {
		t.Fatalf("VerifyAudit = %+v, %v", res, err)
	}
	if res.Records != 3 || res.HeadID != 3 || res.Head != hex.EncodeToString(prev) || got[2].Hash != res.Head {
		t.Errorf("VerifyAudit: %d entries, head %d %s; want 3, 3 %x", res.Records, res.HeadID, res.Head, prev)
	}
	// The record chain is a separate one and stays empty.
	if vr, err := a.Verify(nil); err != nil || !vr.OK() || vr.Records != 0 {
		t.Errorf("Verify of the records after auditing = %+v, %v", vr, err)
	}
}

// documentedChain recomputes a hash chain from a bucket's raw values as
// the package comment documents it: SHA-256(label | previous hash | key |
// JSON), stored in front of the JSON. It returns the last hash.
func documentedChain(t *testing.T, db *bbolt.DB, bucket, label string) []byte {
	t.Helper()
	prev := make([]byte, 32)
	db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte(bucket)).ForEach(func(k, v []byte) error {
			h := sha256.New()
			h.Write([]byte(label))
			h.Write(prev)
			h.Write(k)
			h.Write(v[32:])
			prev = h.Sum(nil)
			if !bytes.Equal(prev, v[:32]) {
				t.Errorf("%s %x: stored hash differs from the documented formula", bucket, k)
			}
			return nil
		})
	})
	return prev
}

func TestAuditDetailBounded(t *testing.T) {
	a, _ := openTest(t)
	long := strings.Repeat("é", MaxAuditDetail) // 2 bytes each
	writeAudit(t, a, []AuditEntry{{Via: "direct", Action: AuditList, Detail: long}, {Via: "direct", Action: AuditVerify}})
	got := readAudit(t, a, time.Time{})
	d := got[0].Detail
	if len(d) > MaxAuditDetail || !utf8.ValidString(d) || !strings.HasSuffix(d, "…") || !strings.HasPrefix(long, strings.TrimSuffix(d, "…")) {
		t.Errorf("Detail of %d bytes stored as %d bytes (valid UTF-8 %v): want at most %d, cut at a character", len(long), len(d), utf8.ValidString(d), MaxAuditDetail)
	}
	// A zero Time is filled with now.
	if got[1].Time.IsZero() || time.Since(got[1].Time) > time.Minute {
		t.Errorf("entry without a time got %v, want about now", got[1].Time)
	}
}

func TestVerifyAuditFindsTampering(t *testing.T) {
	key := func(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }
	for _, tc := range []struct {
		name   string
		mutate func(b *bbolt.Bucket)
		id     uint64
		what   string
	}{
		{"entry edited", func(b *bbolt.Bucket) {
			v := bytes.Clone(b.Get(key(2)))
			b.Put(key(2), bytes.Replace(v, []byte(`"uid":1000`), []byte(`"uid":1002`), 1))
		}, 2, "altered"},
		{"entry edited and its hash recomputed", func(b *bbolt.Bucket) {
			v := bytes.Clone(b.Get(key(2)))
			body := bytes.Replace(v[32:], []byte(`"action":"show"`), []byte(`"action":"list"`), 1)
			h := sha256.New()
			h.Write([]byte("smimed archive audit v1\n"))
			h.Write(b.Get(key(1))[:32])
			h.Write(key(2))
			h.Write(body)
			b.Put(key(2), append(h.Sum(nil), body...))
		}, 3, "altered"},
		{"entry deleted", func(b *bbolt.Bucket) { b.Delete(key(2)) }, 2, "missing"},
		{"first entry deleted", func(b *bbolt.Bucket) { b.Delete(key(1)) }, 1, "missing"},
		{"last entry deleted", func(b *bbolt.Bucket) { b.Delete(key(3)) }, 3, "chain head"},
		{"entry truncated", func(b *bbolt.Bucket) { b.Put(key(1), []byte("short")) }, 1, "truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, db := openTest(t)
			writeAudit(t, a, auditFixture())
			if err := db.Update(func(tx *bbolt.Tx) error { tc.mutate(tx.Bucket([]byte("archive_audit"))); return nil }); err != nil {
				t.Fatal(err)
			}
			res, err := a.VerifyAudit()
			if err != nil {
				t.Fatalf("VerifyAudit = %v", err)
			}
			for _, p := range res.Problems {
				if p.ID == tc.id && strings.Contains(p.What, tc.what) {
					return
				}
			}
			t.Errorf("VerifyAudit problems %v; want entry %d %q", res.Problems, tc.id, tc.what)
		})
	}
}

func TestAuditReadOnly(t *testing.T) {
	dir := t.TempDir()
	a, st := openAt(t, dir, false)
	writeAudit(t, a, auditFixture()[:1])
	st.Close()

	a, ro := openAt(t, dir, true)
	defer ro.Close()
	if err := a.Audit(AuditEntry{Via: "direct", Action: AuditList}); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Audit on a read-only archive = %v, want ErrReadOnly", err)
	}
	if got := readAudit(t, a, time.Time{}); len(got) != 1 || got[0].Action != AuditList {
		t.Errorf("AuditLog read-only = %+v, want the one entry", got)
	}
}
