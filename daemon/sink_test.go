package daemon

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/imapwatch"
	"github.com/smimed/smimed/daemon/imapwatch/dovecottest"
	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/cms"
)

// TestSinkCrashWindows replays the two moments a crash can hit between
// durable steps: after the archive but before the checkpoint (the message
// comes again), and after the APPEND but before it was recorded (the copy
// is in the folder, the archive does not know). Neither may archive or
// copy twice.
func TestSinkCrashWindows(t *testing.T) {
	d := dovecottest.Start(t)
	d.AddUser(t, "ceo", "pw-ceo")
	dir := t.TempDir()
	st, err := harvest.OpenStore(filepath.Join(dir, "smimed.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	arch, err := archive.Open(filepath.Join(dir, "archive"), st.DB())
	if err != nil {
		t.Fatal(err)
	}
	kp := filepath.Join(dir, "org-new.key")
	os.WriteFile(kp, fixture(t, "pki", "org-new.key"), 0o600)
	lk, err := harvest.LoadPEMKey(filepath.Join("..", "testdata", "pki", "org-new.crt"), kp)
	if err != nil {
		t.Fatal(err)
	}
	eng := harvest.New(harvest.Options{Keys: []*cms.Key{{Cert: lk.Cert, Private: lk.Private}}})
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	cp := &copier{
		cfg:    imapwatch.Config{Addr: d.Addr(), TLS: "none", Username: "ceo", Password: "pw-ceo", Logger: log},
		folder: "Decrypted", tmpDir: dir, log: log,
	}
	defer cp.close()
	sink := &archiveSink{engine: enginePtr(eng), arch: arch, copier: cp, mode: "encrypted", authserv: "mx.test", log: log}

	raw := fixture(t, "msg", "enc-aes256.eml")
	msgFile := filepath.Join(dir, "fetched.eml")
	os.WriteFile(msgFile, raw, 0o600)
	m := Message{Account: "ceo", Folder: "INBOX", UIDValidity: 9, UID: 1, Path: msgFile, Size: int64(len(raw)), InternalDate: time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)}
	ctx := context.Background()
	copies := func() int {
		return len(strings.Fields(d.Doveadm(t, "-f", "flow", "search", "-u", "ceo", "mailbox", "Decrypted", "all"))) / 2
	}

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
	if _, err := cp.put(ctx, archive.UserCopy(pt, rec.Report(), rec.Source(), "mx.test"), m.InternalDate); err != nil {
		t.Fatal(err)
	}
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
	bad := &archiveSink{engine: enginePtr(eng), arch: arch, copier: &copier{
		cfg:    imapwatch.Config{Addr: d.Addr(), TLS: "none", Username: "ceo", Password: "wrong", Logger: log},
		folder: "Decrypted", tmpDir: dir, log: log,
	}, mode: "encrypted", authserv: "mx.test", log: log}
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
	d := dovecottest.Start(t)
	d.AddUser(t, "ceo", "pw-ceo")
	dir := t.TempDir()
	st, err := harvest.OpenStore(filepath.Join(dir, "smimed.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	arch, err := archive.Open(filepath.Join(dir, "archive"), st.DB())
	if err != nil {
		t.Fatal(err)
	}
	key := func(name string) *cms.Key {
		kp := filepath.Join(dir, name+".key")
		os.WriteFile(kp, fixture(t, "pki", name+".key"), 0o600)
		lk, err := harvest.LoadPEMKey(filepath.Join("..", "testdata", "pki", name+".crt"), kp)
		if err != nil {
			t.Fatal(err)
		}
		return &cms.Key{Cert: lk.Cert, Private: lk.Private}
	}
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	cp := &copier{
		cfg:    imapwatch.Config{Addr: d.Addr(), TLS: "none", Username: "ceo", Password: "pw-ceo", Logger: log},
		folder: "Decrypted", tmpDir: dir, log: log,
	}
	defer cp.close()
	sink := &archiveSink{engine: enginePtr(harvest.New(harvest.Options{Keys: []*cms.Key{key("org-new")}})), arch: arch, copier: cp, mode: "all", authserv: "mx.test", log: log}

	raw := fixture(t, "msg", "enc-old-key.eml")
	p := filepath.Join(dir, "fetched.eml")
	os.WriteFile(p, raw, 0o600)
	ctx := context.Background()
	if err := sink.Deliver(ctx, Message{Account: "ceo", Folder: "INBOX", UIDValidity: 3, UID: 8, Path: p, Size: int64(len(raw))}); err != nil {
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

	updateCopies(ctx, arch, func(a string) *archiveSink {
		if a == "ceo" {
			return sink
		}
		return nil
	}, log)
	h := hdr()
	if strings.Count(h, "X-Smimed-Source:") != 1 || !strings.Contains(h, "X-Smimed-Decryption: ok") {
		t.Errorf("after updateCopies the folder holds:\n%s", h)
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
