package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// TestBackup reads the copy with bbolt itself, not with smimed's code.
func TestBackup(t *testing.T) {
	f := newArchiveFixture(t)
	out := filepath.Join(t.TempDir(), "smimed-backup.db")
	code, stdout, errOut := runCmd(nil, "backup", "--out", out, "--config", f.cfg)
	if code != exitOK || !strings.HasPrefix(stdout, "backed up the store to "+out) {
		t.Fatalf("backup: exit %d, %q %q", code, stdout, errOut)
	}
	fi, err := os.Stat(out)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v, want mode 0600", fi, err)
	}
	db, err := bbolt.Open(out, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("archive_records"))
		if b == nil {
			t.Fatal("backup has no archive_records bucket")
		}
		return b.ForEach(func(k, v []byte) error { n++; return nil })
	})
	db.Close()
	if n != len(f.msgs) {
		t.Errorf("backup holds %d records, want %d", n, len(f.msgs))
	}
	if _, err := os.Stat(out + ".tmp"); err == nil {
		t.Errorf("%s.tmp left behind", out)
	}
	code, _, errOut = runCmd(nil, "backup", "--out", out, "--config", f.cfg)
	if code != exitFailed || !strings.Contains(errOut, "--force") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("backup over an existing file: exit %d, %q", code, errOut)
	}
	if code, _, errOut := runCmd(nil, "backup", "--force", "--out", out, "--config", f.cfg); code != exitOK {
		t.Errorf("backup --force: exit %d, %q", code, errOut)
	}
}

func TestBackupUsage(t *testing.T) {
	cfg := writeConfig(t, "")
	for _, args := range [][]string{{"backup"}, {"backup", "--out", "x", "y"}, {"backup", "--bogus"}} {
		code, out, errOut := runCmd(nil, append(args, "--config", cfg)...)
		if code != exitUsage || out != "" || strings.Count(errOut, "\n") != 1 {
			t.Errorf("smimed %v: exit %d, stdout %q, stderr %q; want 2 and one line", args, code, out, errOut)
		}
	}
	if code, out, _ := runCmd(nil, "backup", "--help"); code != exitOK || !strings.Contains(out, "state_dir/archive") {
		t.Errorf("backup --help: exit %d, %q; want the note on the archive files", code, out)
	}
}
