package archive

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"go.etcd.io/bbolt"
)

// A seal names the audit log's head, so holds, restrictions, purges and
// reads up to it come under the seal's timestamps: a consistent rewrite
// of the audit log (every hash recomputed, the head moved: VerifyAudit
// cannot tell) or its end cut off is found by Verify.
func TestSealAnchorsAuditLog(t *testing.T) {
	eng := engine(t, "org-new")
	setup := func(t *testing.T) (*Archive, *bbolt.DB, *Record) {
		a, db := openTest(t)
		for i := 1; i <= 3; i++ {
			put(t, a, eng, src(uint32(i)), synthetic("a@x.example", "b@y.example", "s", i))
		}
		for _, d := range []string{"hold add case-1 --all", "restrict 2", "list"} {
			if err := a.Audit(AuditEntry{UID: 0, Via: "direct", Action: AuditList, Detail: d}); err != nil {
				t.Fatal(err)
			}
		}
		return a, db, sealAndStamp(t, a, TSA{})
	}
	a, db, s := setup(t)
	var headID uint64
	var headHash string
	db.View(func(tx *bbolt.Tx) error {
		h := tx.Bucket(bucketMeta).Get(keyAuditHead)
		headID, headHash = binary.BigEndian.Uint64(h), hex.EncodeToString(h[8:])
		return nil
	})
	if s.Seal.AuditID != headID || s.Seal.AuditHash != headHash || headID == 0 {
		t.Fatalf("seal names audit %d %s, the log's head is %d %s", s.Seal.AuditID, s.Seal.AuditHash, headID, headHash)
	}
	st := string(s.Seal.Statement(s.ID))
	if !strings.HasPrefix(st, "smimed seal v2\n") || !strings.HasSuffix(st, "audit "+strconv.FormatUint(headID, 10)+" "+headHash+"\n") || strings.Count(st, "\n") != 8 {
		t.Errorf("statement:\n%s", st)
	}
	if res, err := a.Verify(nil); err != nil || !res.OK() {
		t.Fatalf("Verify = %+v, %v", res, err)
	}

	t.Run("rewritten", func(t *testing.T) {
		a, db, _ := setup(t)
		rewriteAudit(t, db, func(m map[string]any) { m["detail"] = "list" }, false)
		if res, err := a.VerifyAudit(); err != nil || !res.OK() {
			t.Fatalf("VerifyAudit after a consistent rewrite = %+v, %v (the test's rewrite is not consistent)", res, err)
		}
		expectProblem(t, a, "has another hash now")
	})
	t.Run("cut", func(t *testing.T) {
		a, db, _ := setup(t)
		rewriteAudit(t, db, nil, true)
		if res, err := a.VerifyAudit(); err != nil || !res.OK() {
			t.Fatalf("VerifyAudit after the end was cut = %+v, %v", res, err)
		}
		expectProblem(t, a, "is gone")
	})
}

func expectProblem(t *testing.T, a *Archive, what string) {
	t.Helper()
	res, err := a.Verify(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Problems {
		if strings.Contains(p.What, what) {
			return
		}
	}
	t.Errorf("Verify problems %+v, want one saying %q", res.Problems, what)
}

// rewriteAudit changes the first audit entry with change (when not nil)
// and recomputes every entry's hash and the head, with the hash written
// out as docs/evidence.md defines it; cut drops the last entry and moves
// the head back to the one before.
func rewriteAudit(t *testing.T, db *bbolt.DB, change func(map[string]any), cut bool) {
	t.Helper()
	err := db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		var ids []uint64
		b.ForEach(func(k, _ []byte) error { ids = append(ids, binary.BigEndian.Uint64(k)); return nil })
		if cut {
			b.Delete(u64(ids[len(ids)-1]))
			ids = ids[:len(ids)-1]
		}
		prev := make([]byte, 32)
		for i, id := range ids {
			v := b.Get(u64(id))
			m, err := bodyMap(v)
			if err != nil {
				return err
			}
			if i == 0 && change != nil {
				change(m)
			}
			m["prev"] = hex.EncodeToString(prev)
			body, _ := json.Marshal(m)
			h := sha256.New()
			h.Write([]byte("smimed archive audit v1\n"))
			h.Write(prev)
			h.Write(u64(id))
			h.Write(body)
			prev = h.Sum(nil)
			b.Put(u64(id), append(bytes.Clone(prev), body...))
		}
		return tx.Bucket(bucketMeta).Put(keyAuditHead, append(u64(ids[len(ids)-1]), prev...))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// bodyMap decodes the JSON after a stored hash (a record's or an audit
// entry's), numbers kept as written.
func bodyMap(v []byte) (map[string]any, error) {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(v[32:]))
	dec.UseNumber()
	return m, dec.Decode(&m)
}
