package daemon

import (
	"context"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/imapconn"
	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/cms"
	"github.com/smimed/smimed/harvest/state"
)

// TestSinkCrashWindows replays the two moments a crash can hit between
// durable steps: after the archive but before the checkpoint (the message
// comes again), and after the APPEND but before it was recorded (the copy
// is in the folder, the archive does not know). Neither may archive or
// copy twice.
func TestSinkCrashWindows(t *testing.T) {
	e := newSinkEnv(t)
	arch, logs, log := e.arch, e.logs, e.log
	cp := e.copier("pw-ceo", "Decrypted", "encrypted")
	defer cp.Close()
	eng := harvest.New(harvest.Options{Keys: []*cms.Key{e.key(t, "org-new")}})
	sink := &archiveSink{engine: enginePtr(eng), arch: arch, copier: cp, log: log}

	m, raw := e.message(t, "enc-aes256.eml", 9, 1)
	m.InternalDate = time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	ctx := context.Background()
	copies := func() int { return e.copies(t, "Decrypted") }

	// Delivered, then delivered again (checkpoint not stored before a crash).
	for range 2 {
		if err := sink.Deliver(ctx, m); err != nil {
			t.Fatalf("Deliver = %v", err)
		}
	}
	if n, _ := arch.Count(); n != 1 || copies() != 1 {
		t.Fatalf("after a repeated delivery: %d records, %d copies; want 1 and 1", n, copies())
	}
	if !strings.Contains(logs.String(), "again=true") {
		t.Errorf("the second delivery was not recognised as archived already:\n%s", logs.String())
	}

	// The server renumbered the folder: the same bytes under a new
	// UIDVALIDITY are the message already archived and copied.
	renumbered := m
	renumbered.UIDValidity = 10
	if err := sink.Deliver(ctx, renumbered); err != nil {
		t.Fatalf("Deliver after a UIDVALIDITY change = %v", err)
	}
	if n, _ := arch.Count(); n != 1 || copies() != 1 {
		t.Fatalf("after a UIDVALIDITY change: %d records, %d copies; want 1 and 1", n, copies())
	}

	// UID 2: the archive has it and the copy went out, but the crash came
	// before SetCopy.
	m.UID = 2
	res, err := eng.Process(raw, m.InternalDate)
	if err != nil {
		t.Fatal(err)
	}
	rec, _, err := arch.Put(archive.Source{Account: "ceo", Folder: "INBOX", UIDValidity: 9, UID: 2, InternalDate: m.InternalDate}, raw, res)
	if err != nil {
		t.Fatal(err)
	}
	pt, _ := arch.ReadPlaintext(rec)
	e.appendCopy(t, "Decrypted", archive.UserCopyRecord(pt, rec.Report(), rec.Source(), "mx.test", rec.ID), m.InternalDate)
	if copies() != 2 {
		t.Fatalf("setup: %d copies, want 2", copies())
	}
	if err := sink.Deliver(ctx, m); err != nil {
		t.Fatalf("Deliver after the crash = %v", err)
	}
	if n, _ := arch.Count(); n != 2 || copies() != 2 {
		t.Errorf("after the APPEND crash: %d records, %d copies; want 2 and 2", n, copies())
	}
	if c, err := arch.GetCopy(rec.ID); err != nil || c == nil || c.Folder != "Decrypted" || c.UID == 0 {
		t.Errorf("copy of record %d recorded as %+v, %v", rec.ID, c, err)
	}
	if !strings.Contains(logs.String(), "user copy already in the archive folder") {
		t.Errorf("the existing copy was not found:\n%s", logs.String())
	}

	// The server refuses the APPEND: a temporary failure, nothing recorded,
	// and the next attempt succeeds.
	m.UID = 3
	bad := &archiveSink{engine: enginePtr(eng), arch: arch, copier: e.copier("wrong", "Decrypted", "encrypted"), log: log}
	defer bad.copier.Close()
	if err := bad.Deliver(ctx, m); err == nil || !strings.Contains(err.Error(), ErrTemporary.Error()) {
		t.Errorf("Deliver with a refused copy = %v, want a temporary error", err)
	}
	if err := sink.Deliver(ctx, m); err != nil || copies() != 3 {
		t.Errorf("retry after the refused copy: %v, %d copies", err, copies())
	}
}

// TestUpdateCopiesAfterRetry: a message archived undecryptable (its copy
// under archive_folder_messages = "all" shows it as such) is decrypted by
// a retry with an old key; the copy in the archive folder is replaced.
func TestUpdateCopiesAfterRetry(t *testing.T) {
	e := newSinkEnv(t)
	d, arch, log := e.d, e.arch, e.log
	cp := e.copier("pw-ceo", "Decrypted", "all")
	defer cp.Close()
	key := func(name string) *cms.Key { return e.key(t, name) }
	sink := &archiveSink{engine: enginePtr(harvest.New(harvest.Options{Keys: []*cms.Key{key("org-new")}})), arch: arch, copier: cp, log: log}
	m, raw := e.message(t, "enc-old-key.eml", 3, 8)
	ctx := context.Background()
	if err := sink.Deliver(ctx, m); err != nil {
		t.Fatal(err)
	}
	hdr := func() string { return d.Doveadm(t, "fetch", "-u", "ceo", "hdr", "mailbox", "Decrypted", "all") }
	if h := hdr(); strings.Count(h, "X-Smimed-Decryption: failed") != 1 {
		t.Fatalf("copy before the retry:\n%s", h)
	}
	rec, _ := arch.Lookup(archive.Source{Account: "ceo", Folder: "INBOX", UIDValidity: 3, UID: 8}, sha256Hex(raw))
	v2, changed, err := arch.Reprocess(rec.ID, harvest.New(harvest.Options{Keys: []*cms.Key{key("org-new"), key("org-old")}}))
	if err != nil || !changed {
		t.Fatalf("Reprocess = %v, %v", changed, err)
	}

	arch.UpdateCopies(ctx, func(a string) *archive.Copier {
		if a == "ceo" {
			return sink.copier
		}
		return nil
	}, log)
	h := hdr()
	if strings.Count(h, "X-Smimed-Source:") != 1 || !strings.Contains(h, "X-Smimed-Decryption: ok") {
		t.Errorf("after UpdateCopies the folder holds:\n%s", h)
	}
	if c, _ := arch.GetCopy(v2.ID); c == nil || c.UID == 0 {
		t.Errorf("new copy not recorded: %+v", c)
	}
	if p, _ := arch.PendingCopies(); len(p) != 0 {
		t.Errorf("still pending: %v", p)
	}
	body := d.Doveadm(t, "fetch", "-u", "ceo", "text", "mailbox", "Decrypted", "all")
	if strings.Contains(body, "application/pkcs7-mime") {
		t.Error("the copy after the retry is still the encrypted message")
	}
}

func enginePtr(e *harvest.Engine) *atomic.Pointer[harvest.Engine] {
	var p atomic.Pointer[harvest.Engine]
	p.Store(e)
	return &p
}

// TestCopyRefusedIsSetAside: a copy the server refuses (NO) does not stop
// the folder: the message counts as done, its copy is pending and tried
// again by UpdateCopies.
func TestCopyRefusedIsSetAside(t *testing.T) {
	e := newSinkEnv(t)
	arch, logs, log := e.arch, e.logs, e.log
	// Dovecot refuses this folder name (NO to CREATE).
	cp := e.copier("pw-ceo", "../escape", "all")
	defer cp.Close()
	sink := &archiveSink{engine: enginePtr(harvest.New(harvest.Options{})), arch: arch, copier: cp, log: log}
	copierFor := func(string) *archive.Copier { return sink.copier }
	m, _ := e.message(t, "plain.eml", 1, 1)
	if err := sink.Deliver(context.Background(), m); err != nil {
		t.Fatalf("Deliver with a refused copy = %v, want nil (set aside)", err)
	}
	pend, _ := arch.PendingCopies()
	if len(pend) != 1 {
		t.Fatalf("pending copies %v, want one", pend)
	}
	if c, _ := arch.GetCopy(pend[0]); c == nil || c.Kind != archive.CopyPending || c.Reason == "" {
		t.Errorf("copy record %+v, want the refusal", c)
	}
	if !strings.Contains(logs.String(), "user copy refused") {
		t.Errorf("no log line for the refusal:\n%s", logs.String())
	}
	// Still refused: stays pending, no error line storm.
	arch.UpdateCopies(context.Background(), copierFor, log)
	if pend, _ := arch.PendingCopies(); len(pend) != 1 {
		t.Errorf("after a second refusal pending = %v", pend)
	}
	// The folder is fixed: the next round makes the copy.
	sink.copier = e.copier("pw-ceo", "Decrypted", "all")
	defer sink.copier.Close()
	arch.UpdateCopies(context.Background(), copierFor, log)
	if pend, _ := arch.PendingCopies(); len(pend) != 0 {
		t.Errorf("after the fix pending = %v", pend)
	}
	if n := e.copies(t, "Decrypted"); n != 1 {
		t.Errorf("Decrypted holds %d copies, want 1", n)
	}
}

// TestRetryWithSameDecryptionKeepsTheCopy: a retry that changes only a
// verdict (a trust anchor was added) replaces the copy, never leaves the
// user without one.
func TestRetryWithSameDecryptionKeepsTheCopy(t *testing.T) {
	e := newSinkEnv(t)
	d, arch, log := e.d, e.arch, e.log
	cp := e.copier("pw-ceo", "Decrypted", "smime")
	defer cp.Close()
	sink := &archiveSink{engine: enginePtr(harvest.New(harvest.Options{})), arch: arch, copier: cp, log: log}
	m, raw := e.message(t, "signed-rsa-sha256.eml", 1, 1)
	if err := sink.Deliver(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	rec, _ := arch.Lookup(archive.Source{Account: "ceo", Folder: "INBOX", UIDValidity: 1, UID: 1}, sha256Hex(raw))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(testenv.Testdata(t, "pki", "ca-bundle.pem"))
	v2, changed, err := arch.Reprocess(rec.ID, harvest.New(harvest.Options{Roots: roots}))
	if err != nil || !changed || !v2.Has(archive.StatusSignedValid) {
		t.Fatalf("Reprocess with the anchor: %+v %v %v", v2, changed, err)
	}
	arch.UpdateCopies(context.Background(), func(string) *archive.Copier { return cp }, log)
	hdr := d.Doveadm(t, "fetch", "-u", "ceo", "hdr", "mailbox", "Decrypted", "all")
	if n := strings.Count(hdr, "X-Smimed-Source:"); n != 1 || !strings.Contains(hdr, "X-Smimed-Record: "+strconv.FormatUint(v2.ID, 10)) || !strings.Contains(hdr, "smime=pass") {
		t.Errorf("Decrypted after the retry holds %d copies:\n%s", n, hdr)
	}
}

// sinkEnv is a Dovecot with user "ceo" and a store and archive in a temp
// dir, for the sink tests.
type sinkEnv struct {
	d    *testenv.Dovecot
	dir  string
	arch *archive.Archive
	logs *testenv.LockedBuffer
	log  *slog.Logger
}

func newSinkEnv(t *testing.T) *sinkEnv {
	t.Helper()
	e := &sinkEnv{d: testenv.StartDovecot(t), dir: t.TempDir(), logs: &testenv.LockedBuffer{}}
	e.d.AddUser(t, "ceo", "pw-ceo")
	db, err := state.Open(filepath.Join(e.dir, "smimed.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if e.arch, err = archive.Open(filepath.Join(e.dir, "archive"), db); err != nil {
		t.Fatal(err)
	}
	e.log = slog.New(slog.NewTextHandler(e.logs, nil))
	return e
}

// imapConfig is ceo's connection with this password.
func (e *sinkEnv) imapConfig(password string) imapconn.Config {
	return imapconn.Config{Addr: e.d.Addr(), TLS: "none", Username: "ceo", Password: password, Logger: e.log}
}

// copier returns a copier of ceo with this password to folder, copying
// what mode (archive_folder_messages) wants, as the service makes it
// (without metrics). The caller closes it.
func (e *sinkEnv) copier(password, folder, mode string) *archive.Copier {
	return archive.NewCopier(e.arch, archive.CopierConfig{
		Account: "ceo", Folder: folder, Mode: mode, AuthservID: "mx.test", TempDir: e.dir,
		Dial: dialCopies(e.imapConfig(password), nil), Refused: imapconn.IsRefusal, Log: e.log,
	})
}

// appendCopy puts msg into ceo's folder behind the copier's back, as a
// copy whose APPEND went through just before a crash.
func (e *sinkEnv) appendCopy(t *testing.T, folder string, msg []byte, date time.Time) {
	t.Helper()
	p := filepath.Join(e.dir, "crashed-copy.eml")
	if err := os.WriteFile(p, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := imapconn.Dial(context.Background(), e.imapConfig("pw-ceo"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Append(context.Background(), folder, p, date); err != nil {
		t.Fatal(err)
	}
}

// key loads a fixture organisation key (PEM).
func (e *sinkEnv) key(t *testing.T, name string) *cms.Key {
	t.Helper()
	kp := filepath.Join(e.dir, name+".key")
	os.WriteFile(kp, testenv.Testdata(t, "pki", name+".key"), 0o600)
	lk, err := harvest.LoadPEMKey(filepath.Join("..", "testdata", "pki", name+".crt"), kp)
	if err != nil {
		t.Fatal(err)
	}
	return &cms.Key{Cert: lk.Cert, Private: lk.Private}
}

// message writes a fixture as a fetched message of ceo's INBOX.
func (e *sinkEnv) message(t *testing.T, name string, uidValidity, uid uint32) (Message, []byte) {
	raw := testenv.Testdata(t, "msg", name)
	p := filepath.Join(e.dir, "fetched.eml")
	os.WriteFile(p, raw, 0o600)
	return Message{Account: "ceo", Folder: "INBOX", UIDValidity: uidValidity, UID: uid, Path: p, Size: int64(len(raw))}, raw
}

// copies counts the messages in ceo's folder, as doveadm sees them.
func (e *sinkEnv) copies(t *testing.T, folder string) int {
	return len(e.d.UIDs(t, "ceo", folder))
}

// TestCopierRedialsAfterServerRestart: the APPEND connection kept between
// copies dies with a server restart; the next copy goes out on a new one
// at the first try, without failing the message.
func TestCopierRedialsAfterServerRestart(t *testing.T) {
	e := newSinkEnv(t)
	cp := e.copier("pw-ceo", "Decrypted", "all")
	defer cp.Close()
	sink := &archiveSink{engine: enginePtr(harvest.New(harvest.Options{})), arch: e.arch, copier: cp, log: e.log}
	m, _ := e.message(t, "plain.eml", 1, 1)
	if err := sink.Deliver(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	e.d.Restart(t)
	m2, _ := e.message(t, "signed-rsa-sha256.eml", 1, 2)
	if err := sink.Deliver(context.Background(), m2); err != nil {
		t.Fatalf("Deliver after the server restarted = %v, want the copy made on a new connection", err)
	}
	if n := e.copies(t, "Decrypted"); n != 2 {
		t.Errorf("Decrypted holds %d copies, want 2", n)
	}
}
