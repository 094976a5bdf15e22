package archive

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/cms"
	"github.com/smimed/smimed/harvest/state"
)

const testdataDir = "../testdata"

func openTest(t *testing.T) (*Archive, *bbolt.DB) {
	t.Helper()
	a, st := openAt(t, t.TempDir(), false)
	t.Cleanup(func() { st.Close() })
	return a, st.Bolt()
}

// openAt opens the state file in dir (smimed.db) and the archive beside it
// (archive/); the caller closes the state file.
func openAt(tb testing.TB, dir string, readOnly bool) (*Archive, *state.DB) {
	tb.Helper()
	st, err := state.Open(filepath.Join(dir, "smimed.db"), readOnly)
	if err != nil {
		tb.Fatal(err)
	}
	a, err := Open(filepath.Join(dir, "archive"), st)
	if err != nil {
		st.Close()
		tb.Fatal(err)
	}
	return a, st
}

// orgKey loads one of the fixture organisation keys (PEM).
func orgKey(t *testing.T, name string) *cms.Key {
	t.Helper()
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join(testdataDir, "pki", name+".key"))
	if err != nil {
		t.Fatal(err)
	}
	kp := filepath.Join(dir, name+".key")
	if err := os.WriteFile(kp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	lk, err := harvest.LoadPEMKey(filepath.Join(testdataDir, "pki", name+".crt"), kp)
	if err != nil {
		t.Fatal(err)
	}
	return &cms.Key{Cert: lk.Cert, Private: lk.Private}
}

func engine(t *testing.T, keys ...string) *harvest.Engine {
	var ks []*cms.Key
	for _, k := range keys {
		ks = append(ks, orgKey(t, k))
	}
	return harvest.New(harvest.Options{Keys: ks})
}

func put(t *testing.T, a *Archive, eng *harvest.Engine, src Source, raw []byte) (*Record, bool) {
	t.Helper()
	res, err := eng.Process(raw, src.InternalDate)
	if err != nil {
		t.Fatal(err)
	}
	rec, created, err := a.Put(src, raw, res)
	if err != nil {
		t.Fatalf("Put(%s) = %v", src.Marker(), err)
	}
	return rec, created
}

func hexSHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func src(uid uint32) Source {
	return Source{Account: "ceo", Folder: "INBOX", UIDValidity: 7, UID: uid, InternalDate: time.Date(2026, 3, 1, 12, 0, int(uid), 0, time.UTC)}
}

func TestPutKeepsBothAndIsIdempotent(t *testing.T) {
	a, _ := openTest(t)
	eng := engine(t, "org-new")
	enc, plain := testenv.Testdata(t, "msg", "enc-aes256.eml"), testenv.Testdata(t, "msg", "plain.eml")

	r1, created := put(t, a, eng, src(1), enc)
	if !created || r1.ID != 1 || r1.Version != 1 {
		t.Fatalf("first Put: id %d version %d created %v", r1.ID, r1.Version, created)
	}
	if !r1.Has(StatusDecrypted) || r1.Decryption.Cipher == "" {
		t.Errorf("encrypted fixture: status %v decryption %+v", r1.Status, r1.Decryption)
	}
	r2, _ := put(t, a, eng, src(2), plain)
	if !slices.Equal(r2.Status, []string{StatusPlain}) {
		t.Errorf("plain fixture: status %v", r2.Status)
	}

	// Again: the same record, nothing new.
	again, created := put(t, a, eng, src(1), enc)
	if created || again.ID != r1.ID || again.Hash != r1.Hash {
		t.Errorf("second Put of the same message: id %d created %v, want id %d not created", again.ID, created, r1.ID)
	}
	// The same UID with other bytes (a server bug) is another message.
	if r3, created := put(t, a, eng, src(1), plain); !created || r3.ID == r1.ID {
		t.Errorf("same source, other bytes: id %d created %v", r3.ID, created)
	}
	if n, _ := a.Count(); n != 3 {
		t.Errorf("Count = %d, want 3", n)
	}
	// The folder was renumbered (new UIDVALIDITY): the same bytes under a
	// new UID are the message already archived.
	moved := Source{Account: "ceo", Folder: "INBOX", UIDValidity: 8, UID: 1}
	if r, created := put(t, a, eng, moved, enc); created || r.ID != r1.ID {
		t.Errorf("same bytes after a UIDVALIDITY change: id %d created %v, want %d not created", r.ID, created, r1.ID)
	}
	// In another folder, or twice under one UIDVALIDITY, they are not.
	if r, created := put(t, a, eng, Source{Account: "ceo", Folder: "Partners", UIDValidity: 8, UID: 1}, enc); !created || r.ID == r1.ID {
		t.Errorf("same bytes in another folder: id %d created %v", r.ID, created)
	}
	if r, created := put(t, a, eng, src(9), enc); !created || r.ID == r1.ID {
		t.Errorf("same bytes, same UIDVALIDITY, another UID: id %d created %v", r.ID, created)
	}
	if n, _ := a.Count(); n != 5 {
		t.Errorf("Count = %d, want 5", n)
	}

	// The original is kept byte for byte under its SHA-256.
	got, err := os.ReadFile(a.OriginalPath(hexSHA(enc)))
	if err != nil || !bytes.Equal(got, enc) {
		t.Errorf("original of the encrypted message not kept as fetched (%v)", err)
	}
	// Mail without S/MIME: one file with two names.
	pp, err := a.PlaintextPath(r2)
	if err != nil {
		t.Fatal(err)
	}
	st1, err1 := os.Stat(pp)
	st2, err2 := os.Stat(a.OriginalPath(hexSHA(plain)))
	if err1 != nil || err2 != nil || !os.SameFile(st1, st2) {
		t.Errorf("plain message stored twice (or missing): %v %v", err1, err2)
	}
	for _, p := range []string{pp, a.OriginalPath(hexSHA(enc))} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, %v; want 0600", p, fi.Mode().Perm(), err)
		}
	}
	if fi, err := os.Stat(a.MaildirPath()); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("maildir mode %v, %v; want 0700", fi.Mode().Perm(), err)
	}

	// The decrypted plaintext ends with what OpenSSL decrypts.
	pt, err := a.ReadPlaintext(r1)
	if err != nil {
		t.Fatal(err)
	}
	want := opensslDecrypt(t, "enc-aes256.eml", "org-new")
	_, wantBody, _ := bytes.Cut(lf(want), []byte("\n\n"))
	if len(wantBody) == 0 || !bytes.HasSuffix(lf(pt), wantBody) {
		t.Errorf("archived plaintext does not end with OpenSSL's decrypted body")
	}
	if bytes.Contains(pt, []byte("application/pkcs7-mime")) {
		t.Errorf("archived plaintext still holds the encrypted layer")
	}
}

func lf(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")) }

func opensslDecrypt(t *testing.T, msg, key string) []byte {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed: cannot compare with OpenSSL")
	}
	dir := t.TempDir()
	kp := filepath.Join(dir, "k.pem")
	data, _ := os.ReadFile(filepath.Join(testdataDir, "pki", key+".key"))
	os.WriteFile(kp, data, 0o600)
	return testenv.OpenSSL(t, "", "cms", "-decrypt", "-in", filepath.Join(testdataDir, "msg", msg),
		"-recip", filepath.Join(testdataDir, "pki", key+".crt"), "-inkey", kp)
}

// TestMaildirReadableByPython checks the plaintexts with an independent
// Maildir reader (Python's mailbox module).
func TestMaildirReadableByPython(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed: Maildir not checked with an independent reader")
	}
	a, _ := openTest(t)
	eng := engine(t, "org-new")
	want := map[string]bool{}
	for i, name := range []string{"enc-aes256.eml", "plain.eml", "signed-rsa-sha256.eml", "enc-nokey.eml"} {
		r, _ := put(t, a, eng, src(uint32(i+1)), testenv.Testdata(t, "msg", name))
		want[r.PlaintextSHA256] = true
	}
	script := `
import hashlib, mailbox, sys
md = mailbox.Maildir(sys.argv[1], factory=None, create=False)
for key in md.keys():
    print(hashlib.sha256(md.get_bytes(key)).hexdigest())
`
	out, err := exec.Command("python3", "-c", script, a.MaildirPath()).CombinedOutput()
	if err != nil {
		t.Fatalf("python3 mailbox: %v\n%s", err, out)
	}
	got := map[string]bool{}
	for _, l := range strings.Fields(string(out)) {
		got[l] = true
	}
	if len(got) != len(want) {
		t.Errorf("Python sees %d messages, want %d", len(got), len(want))
	}
	for s := range want {
		if !got[s] {
			t.Errorf("plaintext %s not seen by Python's Maildir reader", s)
		}
	}
}

func TestVerifyNamesWhatWasTampered(t *testing.T) {
	setup := func(t *testing.T) (*Archive, *bbolt.DB, []*Record) {
		a, db := openTest(t)
		eng := engine(t, "org-new")
		var recs []*Record
		for i, name := range []string{"enc-aes256.eml", "plain.eml", "signed-rsa-sha256.eml", "enc-gcm256.eml"} {
			r, _ := put(t, a, eng, src(uint32(i+1)), testenv.Testdata(t, "msg", name))
			recs = append(recs, r)
		}
		return a, db, recs
	}
	expectProblem := func(t *testing.T, a *Archive, id uint64, file, what string) {
		t.Helper()
		res, err := a.Verify(nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.OK() {
			t.Fatalf("Verify found nothing wrong; want %q", what)
		}
		for _, p := range res.Problems {
			if p.ID == id && (file == "" || p.File == file) && strings.Contains(p.What, what) {
				return
			}
		}
		t.Errorf("Verify problems %v; want record %d file %q %q", res.Problems, id, file, what)
	}

	t.Run("clean", func(t *testing.T) {
		a, _, recs := setup(t)
		res, err := a.Verify(nil)
		if err != nil || !res.OK() {
			t.Fatalf("Verify = %+v, %v", res, err)
		}
		if res.Records != 4 || res.HeadID != 4 || res.Head != recs[3].Hash {
			t.Errorf("Verify: %d records, head %d %s; want 4, 4 %s", res.Records, res.HeadID, res.Head, recs[3].Hash)
		}
		// The chain as documented, recomputed here from the raw records.
		prev := make([]byte, 32)
		db := a.db
		db.View(func(tx *bbolt.Tx) error {
			return tx.Bucket([]byte("archive_records")).ForEach(func(k, v []byte) error {
				h := sha256.New()
				h.Write([]byte("smimed archive record v1\n"))
				h.Write(prev)
				h.Write(k)
				h.Write(v[32:])
				prev = h.Sum(nil)
				if !bytes.Equal(prev, v[:32]) {
					t.Errorf("record %x: stored hash differs from the documented formula", k)
				}
				return nil
			})
		})
		if hex.EncodeToString(prev) != res.Head {
			t.Errorf("head %s, documented formula gives %x", res.Head, prev)
		}
	})
	t.Run("plaintext byte changed", func(t *testing.T) {
		a, _, recs := setup(t)
		p, _ := a.PlaintextPath(recs[0])
		b, _ := os.ReadFile(p)
		b[len(b)-3] ^= 1
		os.WriteFile(p, b, 0o600)
		expectProblem(t, a, recs[0].ID, p, "file altered")
	})
	t.Run("original deleted", func(t *testing.T) {
		a, _, recs := setup(t)
		p := a.OriginalPath(recs[2].OriginalSHA256)
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		expectProblem(t, a, recs[2].ID, p, "file missing")
	})
	t.Run("plaintext deleted", func(t *testing.T) {
		a, _, recs := setup(t)
		p, _ := a.PlaintextPath(recs[3])
		os.Remove(p)
		expectProblem(t, a, recs[3].ID, "", "file missing")
	})
	t.Run("flags added by a mail reader are fine", func(t *testing.T) {
		a, _, recs := setup(t)
		p, _ := a.PlaintextPath(recs[0])
		if err := os.Rename(p, filepath.Join(a.MaildirPath(), "cur", recs[0].PlaintextFile+":2,S")); err != nil {
			t.Fatal(err)
		}
		if res, _ := a.Verify(nil); !res.OK() {
			t.Errorf("Verify after new/ → cur/:2,S: %v", res.Problems)
		}
	})
	t.Run("record edited", func(t *testing.T) {
		a, db, recs := setup(t)
		db.Update(func(tx *bbolt.Tx) error {
			b := tx.Bucket([]byte("archive_records"))
			k := binary.BigEndian.AppendUint64(nil, recs[1].ID)
			v := bytes.Clone(b.Get(k))
			v = bytes.Replace(v, []byte(`"subject":"`), []byte(`"subject":"X`), 1)
			return b.Put(k, v)
		})
		expectProblem(t, a, recs[1].ID, "", "record altered")
	})
	t.Run("record deleted", func(t *testing.T) {
		a, db, recs := setup(t)
		db.Update(func(tx *bbolt.Tx) error {
			return tx.Bucket([]byte("archive_records")).Delete(binary.BigEndian.AppendUint64(nil, recs[1].ID))
		})
		expectProblem(t, a, recs[1].ID, "", "missing")
	})
	t.Run("index entry deleted", func(t *testing.T) {
		a, db, recs := setup(t)
		db.Update(func(tx *bbolt.Tx) error {
			return tx.Bucket([]byte("archive_index")).Delete(indexKey(idxAll, "", recs[2].When(), recs[2].ID))
		})
		expectProblem(t, a, recs[2].ID, "", "hidden from queries")
	})
	t.Run("key points at another record", func(t *testing.T) {
		a, db, recs := setup(t)
		db.Update(func(tx *bbolt.Tx) error {
			k, _ := idemKey(recs[0].Source(), recs[0].OriginalSHA256)
			return tx.Bucket([]byte("archive_keys")).Put(k, binary.BigEndian.AppendUint64(nil, recs[1].ID))
		})
		expectProblem(t, a, recs[0].ID, "", "current version")
	})
	t.Run("file planted in the Maildir", func(t *testing.T) {
		a, _, _ := setup(t)
		p := filepath.Join(a.MaildirPath(), "new", "1700000000.forged.smimed")
		os.WriteFile(p, []byte("From: boss@org.example\r\n\r\npay now\r\n"), 0o600)
		old := time.Now().Add(-time.Hour)
		os.Chtimes(p, old, old)
		expectProblem(t, a, 0, p, "not named by any record")
	})
	t.Run("archiving goes on during verify", func(t *testing.T) {
		a, _, _ := setup(t)
		eng := engine(t, "org-new")
		n := 0
		res, err := a.Verify(func(done, total int) {
			if n < 3 {
				n++
				put(t, a, eng, src(uint32(100+n)), synthetic("x@y.example", "z@y.example", "late", 100+n))
			}
		})
		if err != nil || !res.OK() || res.Records != 7 {
			t.Errorf("Verify while archiving: %+v, %v", res, err)
		}
	})
	t.Run("last record deleted", func(t *testing.T) {
		a, db, recs := setup(t)
		db.Update(func(tx *bbolt.Tx) error {
			return tx.Bucket([]byte("archive_records")).Delete(binary.BigEndian.AppendUint64(nil, recs[3].ID))
		})
		expectProblem(t, a, recs[3].ID, "", "chain head")
	})
}

func synthetic(from, to, subject string, n int) []byte {
	return fmt.Appendf(nil, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: Mon, 2 Mar 2026 10:00:00 +0100\r\nMessage-ID: <m%d@test>\r\n\r\nbody %d\r\n", from, to, subject, n, n)
}

func TestListFilters(t *testing.T) {
	a, _ := openTest(t)
	eng := engine(t, "org-new")
	type msg struct{ from, to, subject string }
	msgs := []msg{
		{"Alice <alice@partner.example>", "ceo@org.example", "Quarterly report"},
		{"bob@other.example", "ceo@org.example, Sales <sales@org.example>", "Invoice 42"},
		{"alice@partner.example", "sales@org.example", "Re: invoice 42"},
		{"carol@partner.example", "hr@org.example", "hello"},
	}
	for i, m := range msgs {
		put(t, a, eng, src(uint32(i+1)), synthetic(m.from, m.to, m.subject, i+1))
	}
	put(t, a, eng, src(10), testenv.Testdata(t, "msg", "enc-aes256.eml"))
	put(t, a, eng, src(11), testenv.Testdata(t, "msg", "enc-nokey.eml"))
	put(t, a, eng, src(12), synthetic("dave@partner.example", "hr@org.example", strings.Repeat("x", 300)+" tail-of-a-long-subject", 12))

	ids := func(q Query) []uint32 {
		var out []uint32
		if err := a.List(q, func(r *Record) error { out = append(out, r.UID); return nil }); err != nil {
			t.Fatalf("List(%+v) = %v", q, err)
		}
		return out
	}
	day := func(s string) time.Time { d, _ := time.Parse(time.DateOnly, s); return d }
	for _, tc := range []struct {
		q    Query
		want []uint32
	}{
		{Query{}, []uint32{12, 11, 10, 4, 3, 2, 1}},
		{Query{Limit: 2}, []uint32{12, 11}},
		{Query{From: "ALICE@partner.example"}, []uint32{11, 10, 3, 1}},
		{Query{From: "@partner.example"}, []uint32{12, 11, 10, 4, 3, 1}},
		{Query{To: "sales@org.example"}, []uint32{3, 2}},
		{Query{To: "@org.example", Subject: "INVOICE"}, []uint32{3, 2}},
		{Query{Status: StatusDecrypted}, []uint32{10}},
		{Query{Status: StatusUndecryptable}, []uint32{11}},
		{Query{Status: StatusPlain, From: "alice@partner.example"}, []uint32{3, 1}},
		{Query{MessageID: "m2@test"}, []uint32{2}},
		{Query{Subject: "INVOICE"}, []uint32{3, 2}},              // the summary in the broad index
		{Query{Subject: "tail-of-a-long-subject"}, []uint32{12}}, // past the summary's length
		{Query{Status: StatusPlain, Subject: "quarterly"}, []uint32{1}},
		{Query{Since: src(3).InternalDate, Until: src(10).InternalDate}, []uint32{4, 3}},
		{Query{Account: "other"}, nil},
		{Query{Until: day("2026-01-01")}, nil},
	} {
		if got := ids(tc.q); !slices.Equal(got, tc.want) {
			t.Errorf("List(%+v) = UIDs %v, want %v", tc.q, got, tc.want)
		}
	}
	if err := a.List(Query{Status: "bogus"}, func(*Record) error { return nil }); err == nil {
		t.Error("List with an unknown status: no error")
	}
	var r2 *Record
	a.List(Query{MessageID: "<m2@test>"}, func(r *Record) error { r2 = r; return nil })
	if r2 == nil || !slices.Equal(r2.To, []string{"ceo@org.example", "sales@org.example"}) || r2.Date.IsZero() {
		t.Errorf("record of message 2: %+v", r2)
	}
}

// TestListManyPages crosses the read-transaction batches.
func TestListManyPages(t *testing.T) {
	a, _ := openTest(t)
	eng := engine(t)
	const n = listBatch*2 + 7
	for i := 1; i <= n; i++ {
		put(t, a, eng, src(uint32(i)), synthetic("x@y.example", "z@y.example", "s", i))
	}
	var got []uint32
	a.List(Query{}, func(r *Record) error { got = append(got, r.UID); return nil })
	if len(got) != n {
		t.Fatalf("List returned %d records, want %d", len(got), n)
	}
	for i, uid := range got {
		if uid != uint32(n-i) {
			t.Fatalf("record %d has UID %d, want %d (newest first, each once)", i, uid, n-i)
		}
	}
	stop := errors.New("stop")
	if err := a.List(Query{}, func(*Record) error { return stop }); err != stop {
		t.Errorf("List did not return fn's error: %v", err)
	}
}

func TestReprocessAfterAddingOldKey(t *testing.T) {
	a, _ := openTest(t)
	raw := testenv.Testdata(t, "msg", "enc-old-key.eml")
	r1, _ := put(t, a, engine(t, "org-new"), src(5), raw)
	if !r1.Has(StatusUndecryptable) || len(r1.Recipients) == 0 {
		t.Fatalf("without org-old: status %v recipients %v", r1.Status, r1.Recipients)
	}
	// Nothing changed: no new version — also with another key that does
	// not fit (the error text counts the keys tried).
	for _, keys := range [][]string{{"org-new"}, {"org-new", "org-ec256"}} {
		if r, changed, err := a.Reprocess(r1.ID, engine(t, keys...)); err != nil || changed || r.ID != r1.ID {
			t.Errorf("Reprocess with keys %v: id %d changed %v err %v", keys, r.ID, changed, err)
		}
	}
	r2, changed, err := a.Reprocess(r1.ID, engine(t, "org-new", "org-old"))
	if err != nil || !changed {
		t.Fatalf("Reprocess with org-old: changed %v err %v", changed, err)
	}
	if r2.Version != 2 || r2.Supersedes != r1.ID || !r2.Has(StatusDecrypted) || r2.PlaintextFile == r1.PlaintextFile {
		t.Errorf("new version: %+v", r2)
	}
	pt, err := a.ReadPlaintext(r2)
	if err != nil {
		t.Fatal(err)
	}
	_, wantBody, _ := bytes.Cut(lf(opensslDecrypt(t, "enc-old-key.eml", "org-old")), []byte("\n\n"))
	if !bytes.HasSuffix(lf(pt), wantBody) {
		t.Error("retried plaintext does not end with OpenSSL's decrypted body")
	}
	// History kept, only the current version listed and found.
	if old, err := a.Get(r1.ID); err != nil || !old.Has(StatusUndecryptable) {
		t.Errorf("old version: %v %v", old, err)
	}
	var listed []uint64
	a.List(Query{}, func(r *Record) error { listed = append(listed, r.ID); return nil })
	if !slices.Equal(listed, []uint64{r2.ID}) {
		t.Errorf("List = %v, want only %d", listed, r2.ID)
	}
	a.List(Query{Status: StatusUndecryptable}, func(r *Record) error { t.Errorf("old version still listed as undecryptable"); return nil })
	if cur, _ := a.Current(r1.ID); cur == nil || cur.ID != r2.ID {
		t.Errorf("Current(%d) = %v, want %d", r1.ID, cur, r2.ID)
	}
	if res, _ := a.Verify(nil); !res.OK() || res.Records != 2 {
		t.Errorf("Verify after retry: %+v", res)
	}
	// The user's copy must follow: the new version is pending until done.
	if p, err := a.PendingCopies(); err != nil || !slices.Equal(p, []uint64{r2.ID}) {
		t.Errorf("PendingCopies = %v, %v; want [%d]", p, err, r2.ID)
	}
	if err := a.CopyDone(r2.ID); err != nil {
		t.Fatal(err)
	}
	if p, _ := a.PendingCopies(); len(p) != 0 {
		t.Errorf("PendingCopies after CopyDone = %v", p)
	}
}

func TestConcurrentPuts(t *testing.T) {
	a, _ := openTest(t)
	eng := engine(t, "org-new")
	raws := [][]byte{testenv.Testdata(t, "msg", "enc-aes256.eml"), testenv.Testdata(t, "msg", "plain.eml"), testenv.Testdata(t, "msg", "signed-rsa-sha256.eml")}
	var wg sync.WaitGroup
	for i := 1; i <= 30; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			raw := raws[i%len(raws)]
			res, err := eng.Process(raw, time.Now())
			if err != nil {
				t.Error(err)
				return
			}
			// Each message twice at once: still archived once.
			for range 2 {
				if _, _, err := a.Put(src(uint32(i)), raw, res); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	res, err := a.Verify(nil)
	if err != nil || !res.OK() || res.Records != 30 || res.Files != 3+30 {
		t.Errorf("Verify after concurrent puts: %+v, %v", res, err)
	}
}

func TestUnfetchedAndReadOnly(t *testing.T) {
	dir := t.TempDir()
	a, st := openAt(t, dir, false)
	r, created, err := a.PutUnfetched(src(9), 80<<20, "larger than max_message_size")
	if err != nil || !created || !r.Has(StatusError) {
		t.Fatalf("PutUnfetched = %+v %v %v", r, created, err)
	}
	if _, err := a.ReadOriginal(r); err == nil {
		t.Error("ReadOriginal of an unfetched message: no error")
	}
	// After a renumbering, another too-large message is not taken for it
	// (there are no bytes to recognise it by).
	other := Source{Account: "ceo", Folder: "INBOX", UIDValidity: 8, UID: 77}
	if r2, created, err := a.PutUnfetched(other, 200<<20, "larger than max_message_size"); err != nil || !created || r2.ID == r.ID {
		t.Errorf("PutUnfetched of another message after a UIDVALIDITY change = %+v %v %v", r2, created, err)
	}
	st.Close()

	a, ro := openAt(t, dir, true)
	defer ro.Close()
	if res, err := a.Verify(nil); err != nil || !res.OK() || res.Records != 2 {
		t.Errorf("read-only Verify = %+v %v", res, err)
	}
	if _, _, err := a.PutUnfetched(src(10), 1, "x"); !errors.Is(err, ErrReadOnly) {
		t.Errorf("PutUnfetched read-only: %v", err)
	}
}

// TestOpenRemovesCrashLeftovers: files an interrupted write left in
// maildir/tmp, originals/tmp and state_dir/.backup-* are removed by the
// next writable Open (the holder of the store's lock), not by a
// read-only one, and never while another process holds the store.
func TestOpenRemovesCrashLeftovers(t *testing.T) {
	dir := t.TempDir()
	_, st := openAt(t, dir, false)
	st.Close()
	sha := strings.Repeat("ab", 32)
	left := []string{
		filepath.Join(dir, "archive", "maildir", "tmp", "1772366400.0123456789abcdef0123456789abcdef.smimed.123456"),
		filepath.Join(dir, "archive", "originals", "tmp", sha+".987654"),
		filepath.Join(dir, ".backup-42424242"),
	}
	kept := []string{
		filepath.Join(dir, "archive", "maildir", "tmp", "1772366400.M1P2.mutt"), // another program's
		filepath.Join(dir, "backup-not-ours"),
	}
	exist := func(fs []string) int {
		n := 0
		for _, f := range fs {
			if _, err := os.Stat(f); err == nil {
				n++
			}
		}
		return n
	}

	// A running daemon holds the store and is writing these files:
	// another process cannot open it writable, so it removes nothing.
	_, daemonStore := openAt(t, dir, false)
	for _, f := range append(slices.Clone(left), kept...) {
		if err := os.WriteFile(f, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := state.LockTimeout
	state.LockTimeout = 100 * time.Millisecond
	if st, err := state.Open(filepath.Join(dir, "smimed.db"), false); err == nil {
		st.Close()
		t.Fatal("a second writable state.Open succeeded while the state file is held")
	}
	state.LockTimeout = old
	daemonStore.Close()
	if n := exist(left); n != len(left) {
		t.Fatalf("%d of %d leftovers remain while the store was held", n, len(left))
	}

	ro, st := openAt(t, dir, true)
	st.Close()
	if ro.LeftoversRemoved() != 0 || exist(left) != len(left) {
		t.Fatalf("a read-only Open removed leftovers (%d)", ro.LeftoversRemoved())
	}
	a, st := openAt(t, dir, false)
	defer st.Close()
	if a.LeftoversRemoved() != len(left) || exist(left) != 0 {
		t.Errorf("writable Open removed %d, %d of %d leftovers remain", a.LeftoversRemoved(), exist(left), len(left))
	}
	if exist(kept) != len(kept) {
		t.Errorf("Open removed files that are not smimed's")
	}
}
