package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest"
)

// outgoingFiles writes a submitted message and the message as sent into
// dir and returns their paths and bytes.
func outgoingFiles(t *testing.T, dir, name string) (ptPath, sentPath string, pt, sent []byte) {
	t.Helper()
	pt = []byte("From: CEO <CEO@Org.example>\r\nTo: bob@partner.example\r\nCc: carol@partner.example\r\n" +
		"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= " + name + "\r\nMessage-ID: <" + name + "@org.example>\r\n" +
		"Date: Tue, 1 Dec 2026 10:00:00 +0000\r\nX-Smimed-Outgoing: decision=forged\r\n\r\nhello " + name + "\r\n")
	sent = append([]byte("Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\n"), bytes.Repeat([]byte("ciphertext "+name+" "), 1000)...)
	ptPath, sentPath = filepath.Join(dir, name+".pt"), filepath.Join(dir, name+".sent")
	for p, b := range map[string][]byte{ptPath: pt, sentPath: sent} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return ptPath, sentPath, pt, sent
}

func testOutgoing(id string) Outgoing {
	return Outgoing{
		ID: id, MailFrom: "CEO@org.example", RcptTo: []string{"bob@partner.example", "carol@partner.example", "Hidden@Partner.example"},
		Accepted: time.Date(2026, 12, 1, 10, 0, 1, 0, time.UTC),
		Decision: []string{DecisionSigned, DecisionEncrypted}, Reasons: []string{"encrypt = always for partner.example"},
		Signer: strings.Repeat("ab", 32), SignatureAlgorithm: "rsassa-pkcs1-v1_5-sha256", ContentCipher: "aes256-gcm",
		Recipients: []OutgoingRecipient{
			{Address: "bob@partner.example", Fingerprint: strings.Repeat("cd", 32), KeyManagement: "rsaes-oaep"},
			{Fingerprint: strings.Repeat("ef", 32), KeyManagement: "rsaes-pkcs1-v1_5", Escrow: true},
		},
	}
}

// An outgoing message is kept like an incoming one: the plaintext in the
// Maildir, the message as sent among the originals, byte for byte, in
// the same hash chain; a second PutOutgoing of the same message writes
// nothing; records without a direction read as incoming.
func TestPutOutgoing(t *testing.T) {
	a, db := openTest(t)
	in, _ := put(t, a, engine(t), src(1), testenv.Testdata(t, "msg", "plain.eml"))
	ptPath, sentPath, pt, sent := outgoingFiles(t, t.TempDir(), "m1")
	rec, err := a.PutOutgoing(testOutgoing("s1.t1"), ptPath, sentPath)
	if err != nil {
		t.Fatalf("PutOutgoing = %v", err)
	}
	if rec.Direction != DirectionOut || rec.Prev != in.Hash || rec.OriginalSHA256 != hexSHA(sent) || rec.PlaintextSHA256 != hexSHA(pt) ||
		rec.OriginalSize != int64(len(sent)) || rec.PlaintextSize != int64(len(pt)) {
		t.Errorf("PutOutgoing = %+v; want direction out after record %d (%s), original %s, plaintext %s", rec, in.ID, in.Hash, hexSHA(sent), hexSHA(pt))
	}
	if rec.From != "ceo@org.example" || rec.Subject != "Grüße m1" || rec.MessageID != "<m1@org.example>" ||
		!slices.Equal(rec.To, []string{"bob@partner.example", "carol@partner.example", "hidden@partner.example"}) {
		t.Errorf("record header fields: from %q subject %q message-id %q to %v", rec.From, rec.Subject, rec.MessageID, rec.To)
	}
	if o := rec.Outgoing; o == nil || o.MailFrom != "ceo@org.example" || o.RcptTo[2] != "hidden@partner.example" || len(o.Recipients) != 2 {
		t.Errorf("outgoing part = %+v", rec.Outgoing)
	}
	if !slices.Equal(rec.Status, []string{DecisionSigned, DecisionEncrypted}) {
		t.Errorf("status = %v, want the decisions", rec.Status)
	}
	got, err := a.ReadOriginal(rec)
	if err != nil || !bytes.Equal(got, sent) {
		t.Errorf("ReadOriginal = %d bytes, %v; want the message as sent", len(got), err)
	}
	got, err = a.ReadPlaintext(rec)
	if err != nil || !bytes.Equal(got, pt) {
		t.Errorf("ReadPlaintext = %d bytes, %v; want the message as submitted", len(got), err)
	}
	again, err := a.PutOutgoing(testOutgoing("s1.t1"), ptPath, sentPath)
	if err != nil || again.ID != rec.ID {
		t.Errorf("PutOutgoing again = %+v, %v; want record %d", again, err, rec.ID)
	}
	if n, _ := a.Count(); n != 2 {
		t.Errorf("Count = %d, want 2", n)
	}
	// Refused: nothing sent, one file.
	ptPath2, _, pt2, _ := outgoingFiles(t, t.TempDir(), "m2")
	o := testOutgoing("s1.t2")
	o.Decision, o.Reasons = []string{DecisionRefused}, []string{"no certificate for carol@partner.example"}
	ref, err := a.PutOutgoing(o, ptPath2, "")
	if err != nil || ref.OriginalSHA256 != hexSHA(pt2) || ref.PlaintextSHA256 != hexSHA(pt2) {
		t.Fatalf("PutOutgoing without a sent message = %+v, %v", ref, err)
	}
	// Stored JSON: incoming records carry no direction (as before),
	// and read as in.
	db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketRecords).Get(u64(in.ID))
		var raw map[string]any
		json.Unmarshal(v[32:], &raw)
		if _, ok := raw["direction"]; ok {
			t.Errorf("incoming record stored with a direction: %s", v[32:])
		}
		return nil
	})
	if r, _ := a.Get(in.ID); r.Direction != DirectionIn {
		t.Errorf("incoming record reads direction %q, want in", r.Direction)
	}
	res, err := a.Verify(nil)
	if err != nil || !res.OK() || res.Records != 3 {
		t.Errorf("Verify = %+v, %v; want 3 records, no problem", res, err)
	}
	if _, _, err := a.Reprocess(rec.ID, engine(t)); !errors.Is(err, ErrOutgoing) {
		t.Errorf("Reprocess of an outgoing record = %v, want ErrOutgoing", err)
	}
	if _, err := a.PutOutgoing(Outgoing{ID: "bad\nid", Decision: []string{DecisionSigned}}, ptPath, ""); err == nil {
		t.Errorf("PutOutgoing with a line break in the id: no error")
	}
	if _, err := a.PutOutgoing(Outgoing{ID: "x", Decision: []string{"signed-ish"}}, ptPath, ""); err == nil || !strings.Contains(err.Error(), "unknown decision") {
		t.Errorf("PutOutgoing with an unknown decision = %v", err)
	}
}

// Verify checks the files of outgoing records like those of incoming
// ones.
func TestVerifyOutgoingFiles(t *testing.T) {
	for _, which := range []string{"plaintext", "original"} {
		t.Run(which, func(t *testing.T) {
			a, _ := openTest(t)
			ptPath, sentPath, _, _ := outgoingFiles(t, t.TempDir(), "m1")
			rec, err := a.PutOutgoing(testOutgoing("s1.t1"), ptPath, sentPath)
			if err != nil {
				t.Fatal(err)
			}
			path := a.OriginalPath(rec.OriginalSHA256)
			if which == "plaintext" {
				path, _ = a.PlaintextPath(rec)
			}
			b, _ := os.ReadFile(path)
			b[len(b)/2] ^= 1
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			res, err := a.Verify(nil)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, p := range res.Problems {
				found = found || p.ID == rec.ID && p.File == path && strings.Contains(p.What, "file altered")
			}
			if !found {
				t.Errorf("Verify problems %v; want %s altered for record %d", res.Problems, path, rec.ID)
			}
		})
	}
}

// archive list --direction: an index of outgoing records, a filter for
// incoming ones.
func TestListDirection(t *testing.T) {
	a, _ := openTest(t)
	eng := engine(t)
	dir := t.TempDir()
	var outIDs, inIDs []uint64
	for i := range 3 {
		r, _ := put(t, a, eng, src(uint32(i+1)), synthetic("alice@partner.example", "ceo@org.example", "in", i))
		inIDs = append(inIDs, r.ID)
		pt, sent, _, _ := outgoingFiles(t, dir, "m"+string(rune('a'+i)))
		o, err := a.PutOutgoing(testOutgoing("id"+string(rune('a'+i))), pt, sent)
		if err != nil {
			t.Fatal(err)
		}
		outIDs = append(outIDs, o.ID)
	}
	ids := func(q Query) []uint64 {
		var out []uint64
		if err := a.List(q, func(r *Record) error { out = append(out, r.ID); return nil }); err != nil {
			t.Fatal(err)
		}
		slices.Sort(out)
		return out
	}
	if got := ids(Query{Direction: DirectionOut}); !slices.Equal(got, outIDs) {
		t.Errorf("--direction out = %v, want %v", got, outIDs)
	}
	if got := ids(Query{Direction: DirectionIn}); !slices.Equal(got, inIDs) {
		t.Errorf("--direction in = %v, want %v", got, inIDs)
	}
	if got := ids(Query{Direction: DirectionOut, To: "hidden@partner.example"}); !slices.Equal(got, outIDs) {
		t.Errorf("--direction out --to (a Bcc recipient) = %v, want %v", got, outIDs)
	}
	if got := ids(Query{Status: DecisionEncrypted}); !slices.Equal(got, outIDs) {
		t.Errorf("--status encrypted = %v, want %v", got, outIDs)
	}
	if err := (&Query{Direction: "sideways"}).Check(); err == nil {
		t.Errorf("Check(direction sideways) = nil")
	}
}

// The copier never appends a user copy of outgoing mail, whatever its
// mode; an export shows the gateway's decision, never one the message
// brought.
func TestOutgoingNotCopied(t *testing.T) {
	e := newCopierEnv(t, UserCopyAll)
	pt, sent, _, _ := outgoingFiles(t, t.TempDir(), "m1")
	rec, err := e.a.PutOutgoing(testOutgoing("s1.t1"), pt, sent)
	if err != nil {
		t.Fatal(err)
	}
	for _, copy := range []func(context.Context, *Record, []byte) (CopyState, error){e.cp.Copy, e.cp.CopyNew} {
		st, err := copy(context.Background(), rec, nil)
		if err != nil || st.Kind != CopyNotWanted {
			t.Errorf("Copy of an outgoing record = %v, %v; want not wanted", st, err)
		}
	}
	if msgs := e.srv.messages("Decrypted"); len(msgs) != 0 {
		t.Errorf("%d messages appended for an outgoing record", len(msgs))
	}
	plain, _ := e.a.ReadPlaintext(rec)
	exp := ExportCopy(plain, rec, "mx.test")
	h := fields(exp)
	if got := h.Values(OutgoingField); len(got) != 1 || !strings.Contains(got[0], "decision=signed,encrypted;") || !strings.Contains(got[0], "encrypted-to=escrow:"+strings.Repeat("ef", 32)) {
		t.Errorf("export's %s = %q, want one, ours", OutgoingField, got)
	}
	if h.Get("X-Smimed-Record") != "1" || !bytes.Contains(exp, []byte("hello m1")) {
		t.Errorf("export = %q", exp)
	}
}

// A crash after the files were written and before the record was
// committed leaves files a second attempt takes over: no orphan, no
// duplicate. Open removes what an interrupted copy left in tmp/.
func TestPutOutgoingAfterCrash(t *testing.T) {
	dir := t.TempDir()
	a, st := openAt(t, dir, false)
	pt, sent, _, _ := outgoingFiles(t, t.TempDir(), "m1")
	o := testOutgoing("s1.t1")
	r := &Record{Version: 1, Direction: DirectionOut, Outgoing: &o, Received: o.Accepted}
	if _, err := a.storeOutgoingFiles(r, pt, sent); err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(dir, "archive", "maildir", "tmp", r.PlaintextFile+".4242")
	if err := os.WriteFile(leftover, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	st.Close() // the crash

	a, st = openAt(t, dir, false)
	defer st.Close()
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the interrupted copy %s is still there after Open", leftover)
	}
	rec, err := a.PutOutgoing(testOutgoing("s1.t1"), pt, sent)
	if err != nil {
		t.Fatal(err)
	}
	if rec.PlaintextFile != r.PlaintextFile {
		t.Errorf("second attempt wrote %s, the first %s", rec.PlaintextFile, r.PlaintextFile)
	}
	res, err := a.Verify(nil)
	if err != nil || !res.OK() || res.Records != 1 {
		t.Errorf("Verify after the second attempt = %+v, %v; want 1 record and nothing stray", res, err)
	}
}

// BenchmarkPutOutgoing20MiB archives a 20 MiB message (submitted and as
// sent), against Put of the same bytes (a message in memory) as the
// baseline in the same run. Its figure: bytes allocated per message
// relative to the message's size ("alloc/size"); the files are copied
// in pieces, so it stays far below 1 whatever the size.
func BenchmarkPutOutgoing20MiB(b *testing.B) {
	const size = 20 << 20
	dir := b.TempDir()
	body := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n"), size/64)
	msg := append([]byte("From: ceo@org.example\r\nTo: bob@partner.example\r\nSubject: big\r\n\r\n"), body...)
	pt, sent := filepath.Join(dir, "pt"), filepath.Join(dir, "sent")
	if err := os.WriteFile(pt, msg, 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(sent, append([]byte("X-Sent: 1\r\n"), msg...), 0o600); err != nil {
		b.Fatal(err)
	}
	a, st := openAt(b, b.TempDir(), false)
	defer st.Close()
	for _, bc := range []struct {
		name string
		put  func(i int) error
	}{
		{"PutOutgoing", func(i int) error {
			_, err := a.PutOutgoing(Outgoing{ID: fmt.Sprint("bench.", i), Decision: []string{DecisionSigned}}, pt, sent)
			return err
		}},
		{"Put-baseline", func(i int) error {
			src := Source{Account: "ceo", Folder: "INBOX", UIDValidity: 1, UID: uint32(i + 1)}
			_, _, err := a.Put(src, msg, &harvest.Result{Plaintext: msg, Report: harvest.Report{Decryption: harvest.Decryption{Status: harvest.DecryptNone}}})
			return err
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			for i := 0; b.Loop(); i++ {
				if err := bc.put(i); err != nil {
					b.Fatal(err)
				}
			}
			runtime.ReadMemStats(&ms1)
			b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(b.N)/float64(len(msg)), "alloc/size")
		})
	}
}
