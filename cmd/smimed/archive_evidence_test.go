package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/csv"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest"
)

// sealedFixture is the archive fixture sealed twice by a test TSA: seal 9
// over the 8 records, then one more message (record 10) and seal 11.
func sealedFixture(t *testing.T) (*archiveFixture, *testenv.TSA) {
	t.Helper()
	f := newArchiveFixture(t)
	tsa := testenv.NewTSA(t, nil, "Test TSA", time.Time{}, time.Time{})
	conf, err := os.ReadFile(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	conf = fmt.Appendf(conf, "\n[archive.seal]\nrequire = 1\n[[archive.seal.tsa]]\nurl = %q\nca_file = %q\n", tsa.URL, tsa.CAFile)
	if err := os.WriteFile(f.cfg, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	a, closeStore := f.open(t, false)
	defer closeStore()
	caPEM, _ := os.ReadFile(tsa.CAFile)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	stamp := func() {
		s, err := a.SealRecords()
		if err != nil || s == nil {
			t.Fatalf("SealRecords() = %v, %v", s, err)
		}
		if _, err := a.Stamp(context.Background(), s.ID, archive.TSA{URL: tsa.URL, Roots: roots, RootsPEM: caPEM}); err != nil {
			t.Fatal(err)
		}
	}
	stamp()
	msg := []byte("From: late@partner.example\r\nTo: ceo@org.example\r\nSubject: after the first seal\r\nMessage-ID: <late@test>\r\n\r\nlate\r\n")
	res, err := harvest.New(harvest.Options{}).Process(msg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Put(archive.Source{Account: "ceo", Folder: "INBOX", UIDValidity: 1, UID: 50}, msg, res); err != nil {
		t.Fatal(err)
	}
	stamp()
	return f, tsa
}

func TestArchiveVerifyEvidence(t *testing.T) {
	f, _ := sealedFixture(t)
	code, out, errOut := runCmd(nil, "archive", "verify", "--evidence", "--openssl", "--config", f.cfg)
	if code != exitOK {
		t.Fatalf("verify --evidence: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"seal 9: records 1 to 8: sealed", "seal 11: records 10 to 10: sealed", "openssl OK"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify --evidence output lacks %q:\n%s", want, out)
		}
	}
	// A record edited in the store: named with its seal.
	db, err := bbolt.Open(filepath.Join(f.state, "smimed.db"), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("archive_records"))
		k := []byte{0, 0, 0, 0, 0, 0, 0, 2}
		return b.Put(k, bytes.Replace(bytes.Clone(b.Get(k)), []byte(`"subject":"`), []byte(`"subject":"X`), 1))
	})
	db.Close()
	code, out, _ = runCmd(nil, "archive", "verify", "--evidence", "--config", f.cfg)
	if code != exitFailed || !strings.Contains(out, "record 2: record altered") || !strings.Contains(out, "sealed by seal 9, timestamped") {
		t.Errorf("verify --evidence after an edit: exit %d\n%s", code, out)
	}
}

func TestArchiveProof(t *testing.T) {
	f, _ := sealedFixture(t)
	code, out, errOut := runCmd(nil, "archive", "proof", "3", "--config", f.cfg)
	if code != exitOK {
		t.Fatalf("proof: exit %d\n%s%s", code, out, errOut)
	}
	// The hash the store holds for record 3, read here from the raw bucket.
	db, err := bbolt.Open(filepath.Join(f.state, "smimed.db"), 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var h []byte
	db.View(func(tx *bbolt.Tx) error {
		h = bytes.Clone(tx.Bucket([]byte("archive_records")).Get([]byte{0, 0, 0, 0, 0, 0, 0, 3})[:32])
		return nil
	})
	db.Close()
	for _, want := range []string{"smimed proof v1\nrecord 3\n", fmt.Sprintf("hash %x\n", h), "seal 9\n", "timestamp "} {
		if !strings.Contains(out, want) {
			t.Errorf("proof output lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "\npath ") != 3 {
		t.Errorf("proof of one of 8 leaves: want 3 path steps:\n%s", out)
	}
	if code, _, errOut := runCmd(nil, "archive", "proof", "9", "--config", f.cfg); code != exitFailed || !strings.Contains(errOut, "is a seal") {
		t.Errorf("proof of a seal: exit %d, %s", code, errOut)
	}
}

// runVerifyScript runs VERIFY.sh in a copy of the export that holds
// nothing else, with a PATH of bash, sha256sum and openssl only.
func runVerifyScript(t *testing.T, export string) (string, bool) {
	t.Helper()
	bin := t.TempDir()
	for _, tool := range []string{"bash", "sha256sum", "openssl"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(filepath.Join(bin, "bash"), "VERIFY.sh")
	cmd.Dir = export
	cmd.Env = []string{"PATH=" + bin}
	out, err := cmd.CombinedOutput()
	return string(out), err == nil
}

func TestArchiveExportEvidence(t *testing.T) {
	f, tsa := sealedFixture(t)
	out := filepath.Join(t.TempDir(), "export")
	code, stdout, errOut := runCmd(nil, "archive", "export", "--evidence", "--out", out, "--config", f.cfg)
	if code != exitOK {
		t.Fatalf("export --evidence: exit %d\n%s%s", code, stdout, errOut)
	}
	if !strings.Contains(errOut, "never fetched") {
		t.Errorf("stderr %q: want the note on the record never fetched", errOut)
	}
	// manifest.csv: each row's SHA-256 is that of its .eml, computed
	// here, and the record's plaintext SHA-256.
	mf, err := os.ReadFile(filepath.Join(out, "manifest.csv"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(bytes.NewReader(mf)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 9 || strings.Join(rows[0], ",") != "record,sha256,message_id,date,from,to,subject,class,retain_until" {
		t.Fatalf("manifest: %d rows, header %v; want 8 messages", len(rows)-1, rows[0])
	}
	a, closeStore := f.open(t, true)
	for _, r := range rows[1:] {
		eml, err := os.ReadFile(filepath.Join(out, "messages", r[0]+".eml"))
		if err != nil {
			t.Fatal(err)
		}
		var id uint64
		fmt.Sscan(r[0], &id)
		rec, err := a.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256Hex(eml); r[1] != sum || sum != rec.PlaintextSHA256 {
			t.Errorf("record %s: manifest %s, file %s, record %s", r[0], r[1], sum, rec.PlaintextSHA256)
		}
		// The default class, letters (6 years), counted from the end of
		// the year of receipt (UTC without [archive.retention]).
		until := time.Date(rec.When().UTC().Year()+6, 12, 31, 23, 59, 59, 0, time.UTC).Format(time.RFC3339)
		if r[7] != "letters" || r[8] != until {
			t.Errorf("record %s: class %q, retain_until %q; want letters, %s", r[0], r[7], r[8], until)
		}
	}
	closeStore()

	// A clean directory: VERIFY.sh says OK.
	clean := func() string {
		dst := filepath.Join(t.TempDir(), "copy")
		if err := os.CopyFS(dst, os.DirFS(out)); err != nil {
			t.Fatal(err)
		}
		return dst
	}
	dir := clean()
	got, ok := runVerifyScript(t, dir)
	if !ok || !strings.Contains(got, "OK: 8 messages, 2 seals") {
		t.Fatalf("VERIFY.sh on the export: ok=%v\n%s", ok, got)
	}
	// Its fingerprint line is openssl's for the TSA's CA.
	fp := string(testenv.OpenSSL(t, "", "x509", "-in", tsa.CAFile, "-noout", "-fingerprint", "-sha256"))
	if !strings.Contains(got, strings.TrimSpace(fp)) {
		t.Errorf("VERIFY.sh does not print the anchor's fingerprint %q:\n%s", fp, got)
	}

	edit := func(name string, change func([]byte) []byte) string {
		dir := clean()
		p := filepath.Join(dir, name)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, change(b), 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	flip := func(b []byte) []byte { b[len(b)/2] ^= 0x01; return b }
	for _, tc := range []struct {
		name   string
		dir    func() string
		naming string
	}{
		{"one byte of a message", func() string { return edit("messages/2.eml", flip) }, "messages/2.eml: changed"},
		{"a record's JSON", func() string {
			return edit("records/5.json", func(b []byte) []byte { return bytes.Replace(b, []byte(`"subject":"`), []byte(`"subject":"X`), 1) })
		}, "records/5.json: changed"},
		{"a proof's path", func() string {
			return edit("proofs/3.proof", func(b []byte) []byte {
				i := bytes.Index(b, []byte("\npath ")) + 8
				b[i] = otherHex(b[i])
				return b
			})
		}, "proofs/3.proof: the Merkle path does not lead to its root"},
		{"a seal's statement", func() string {
			return edit("seals/9.txt", func(b []byte) []byte { return bytes.Replace(b, []byte("last 8"), []byte("last 7"), 1) })
		}, "the timestamp does not prove seals/9.txt"},
		{"a token swapped", func() string {
			dir := clean()
			name := archive.TSAName(tsa.URL)
			b, _ := os.ReadFile(filepath.Join(dir, "seals", "9."+name+".tsr"))
			os.WriteFile(filepath.Join(dir, "seals", "11."+name+".tsr"), b, 0o600)
			return dir
		}, "seals/11." + archive.TSAName(tsa.URL) + ".tsr: the timestamp does not prove seals/11.txt"},
		{"the manifest", func() string {
			return edit("manifest.csv", func(b []byte) []byte {
				i := bytes.IndexByte(b, '\n') + 3
				for b[i] != ',' {
					i++
				}
				b[i+1] = otherHex(b[i+1])
				return b
			})
		}, "manifest.csv: record"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := runVerifyScript(t, tc.dir())
			if ok || !strings.Contains(got, tc.naming) || !strings.HasPrefix(got, "FAILED: ") {
				t.Errorf("VERIFY.sh: ok=%v, want a failure naming %q:\n%s", ok, tc.naming, got)
			}
		})
	}
}

// otherHex is a hex digit other than c.
func otherHex(c byte) byte {
	if c == '0' {
		return '1'
	}
	return '0'
}
