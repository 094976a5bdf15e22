package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/cms"
	"github.com/smimed/smimed/harvest/state"
)

// These tests fill an archive with the archive package and an engine that
// holds only the org-new key (so enc-old-key is undecryptable until a retry
// with the config's keys), then run the commands as an admin would.

// archiveMsg is one message put into the test archive.
type archiveMsg struct {
	name     string // fixture file, or a synthetic message's label
	raw      []byte
	received time.Time
	from     string // what the test wrote or the fixture says
	subject  string
	id       uint64 // filled in when archived
}

// synthetic messages: the From and Subject are known because we wrote them.
var (
	fromLinesMsg = "From: Zoe Example <zoe@example.net>\r\nTo: ceo@org.example\r\nSubject: quarterly figures\r\n" +
		"Message-ID: <from-lines@test.example>\r\nDate: Sun, 01 Mar 2026 09:59:00 +0000\r\n\r\n" +
		"From here on, mbox readers beware.\r\n>From a quoted line\r\n>>From twice quoted\r\nFromage is not a separator\r\n\r\nFrom the end\r\n"
	lfMsg = "From: lf@example.org\nTo: ceo@org.example\nSubject: no final newline\n\nonly LF line ends\nand no line break at the end"
	// The Subject tries to forge a second listing line.
	evilMsg = "From: mallory@evil.example\r\nTo: ceo@org.example\r\nSubject: =?utf-8?q?Invoice=0A99__2026-01-01_00:00__signed-valid__ceo@org.example?=\r\n\r\nhi\r\n"
)

type archiveFixture struct {
	cfg   string // config file
	state string // state_dir
	msgs  []*archiveMsg
	byKey map[string]*archiveMsg
}

func utc(y int, m time.Month, d, h, min int) time.Time {
	return time.Date(y, m, d, h, min, 0, 0, time.UTC)
}

// newArchiveFixture archives four OpenSSL fixtures, three synthetic
// messages and one that was never fetched (record 8).
func newArchiveFixture(t *testing.T) *archiveFixture {
	t.Helper()
	read := func(name string) []byte { return testenv.Testdata(t, "msg", name) }
	return archiveOf(t, []*archiveMsg{
		{name: "plain.eml", raw: read("plain.eml"), received: utc(2026, 1, 10, 8, 0)},
		{name: "sign-then-encrypt.eml", raw: read("sign-then-encrypt.eml"), received: utc(2026, 2, 15, 12, 30),
			from: "alice@partner.example", subject: "smimed test: sign-then-encrypt"},
		{name: "enc-old-key.eml", raw: read("enc-old-key.eml"), received: utc(2026, 2, 28, 23, 59)},
		{name: "enc-nokey.eml", raw: read("enc-nokey.eml"), received: utc(2026, 3, 1, 0, 0)},
		{name: "from-lines", raw: []byte(fromLinesMsg), received: utc(2026, 3, 1, 10, 0), from: "zoe@example.net", subject: "quarterly figures"},
		{name: "lf", raw: []byte(lfMsg), received: utc(2026, 3, 2, 9, 0), from: "lf@example.org", subject: "no final newline"},
		{name: "evil", raw: []byte(evilMsg), received: utc(2026, 3, 3, 9, 0), from: "mallory@evil.example"},
		{name: "too-large", received: utc(2026, 3, 4, 9, 0)},
	})
}

// archiveOf archives msgs (UIDs 1, 2, …) with an engine that holds the
// org-new key and trusts the test CA; a message without bytes is recorded
// as never fetched.
func archiveOf(t *testing.T, msgs []*archiveMsg) *archiveFixture {
	t.Helper()
	return archiveWith(t, msgs, true)
}

// archiveWith is archiveOf with or without the test CA as trust anchor.
func archiveWith(t *testing.T, msgs []*archiveMsg, trustCA bool) *archiveFixture {
	t.Helper()
	cfg := writeConfig(t, "")
	dir := filepath.Dir(cfg)
	f := &archiveFixture{cfg: cfg, state: filepath.Join(dir, "state"), msgs: msgs, byKey: map[string]*archiveMsg{}}
	a, closeStore := f.open(t, false)
	defer closeStore()
	lk, err := harvest.LoadPEMKey(filepath.Join(dir, "org-new.crt"), filepath.Join(dir, "org-new.key"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	pem, err := os.ReadFile(filepath.Join(dir, "ca-bundle.pem"))
	if err != nil || !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("ca-bundle.pem: %v", err)
	}
	if !trustCA {
		roots = x509.NewCertPool()
	}
	eng := harvest.New(harvest.Options{Keys: []*cms.Key{{Cert: lk.Cert, Private: lk.Private}}, Roots: roots})
	for i, m := range f.msgs {
		src := archive.Source{Account: "ceo", Folder: "INBOX", UIDValidity: 1, UID: uint32(i + 1), InternalDate: m.received}
		var rec *archive.Record
		if m.raw == nil {
			src.UID = 99
			rec, _, err = a.PutUnfetched(src, 99<<20, "message exceeds max_message_size")
		} else {
			var res *harvest.Result
			if res, err = eng.Process(m.raw, m.received); err != nil {
				t.Fatalf("Process(%s): %v", m.name, err)
			}
			rec, _, err = a.Put(src, m.raw, res)
		}
		if err != nil {
			t.Fatalf("Put(%s): %v", m.name, err)
		}
		m.id = rec.ID
		f.byKey[m.name] = m
	}
	return f
}

// open opens the fixture's state file and archive; the caller closes the
// state file with the function returned.
func (f *archiveFixture) open(t *testing.T, readOnly bool) (*archive.Archive, func() error) {
	t.Helper()
	db, err := state.Open(filepath.Join(f.state, "smimed.db"), readOnly)
	if err != nil {
		t.Fatal(err)
	}
	a, err := archive.Open(filepath.Join(f.state, "archive"), db)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	return a, db.Close
}

func (f *archiveFixture) id(name string) string { return fmt.Sprint(f.byKey[name].id) }

// listIDs runs archive list with args and returns the IDs in output order.
func (f *archiveFixture) listIDs(t *testing.T, args ...string) []string {
	t.Helper()
	code, out, errOut := runCmd(nil, append([]string{"archive", "list", "--json", "--config", f.cfg}, args...)...)
	if code != exitOK {
		t.Fatalf("archive list %v: exit %d, %s", args, code, errOut)
	}
	var ids []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var r struct{ ID uint64 }
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		ids = append(ids, fmt.Sprint(r.ID))
	}
	return ids
}

func (f *archiveFixture) ids(names ...string) []string {
	var out []string
	for _, n := range names {
		out = append(out, f.id(n))
	}
	return out
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestArchiveListText(t *testing.T) {
	f := newArchiveFixture(t)
	// Flags before the subcommand too.
	code, out, errOut := runCmd(nil, "archive", "--config", f.cfg, "list")
	if code != exitOK {
		t.Fatalf("archive list: exit %d, %s", code, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 1+len(f.msgs) {
		t.Fatalf("archive list printed %d lines, want a header and %d:\n%s", len(lines), len(f.msgs), out)
	}
	if !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[0], "SUBJECT") {
		t.Errorf("header = %q", lines[0])
	}
	// Newest first: the never-fetched one arrived last.
	wantOrder := []string{"too-large", "evil", "lf", "from-lines", "enc-nokey.eml", "enc-old-key.eml", "sign-then-encrypt.eml", "plain.eml"}
	for i, name := range wantOrder {
		if fields := strings.Fields(lines[i+1]); fields[0] != f.id(name) {
			t.Errorf("line %d = %q, want record %s (%s)", i+1, lines[i+1], f.id(name), name)
		}
	}
	zoe := lines[1+slices.Index(wantOrder, "from-lines")]
	for _, want := range []string{"2026-03-01 10:00", "zoe@example.net", "quarterly figures", "plain"} {
		if !strings.Contains(zoe, want) {
			t.Errorf("zoe's line %q lacks %q", zoe, want)
		}
	}
	ste := lines[1+slices.Index(wantOrder, "sign-then-encrypt.eml")]
	if !strings.Contains(ste, "decrypted,signed-valid") || !strings.Contains(ste, "2026-02-15 12:30") || !strings.Contains(ste, "alice@partner.example") {
		t.Errorf("sign-then-encrypt line = %q", ste)
	}
	if big := lines[1]; !strings.Contains(big, "(not fetched: message exceeds max_message_size)") {
		t.Errorf("the unfetched record's line %q does not say why it has no message", big)
	}
	// The evil Subject stays on its line: the record holds its line
	// break as a space (one sanitising step for every header value).
	if evil := lines[1+slices.Index(wantOrder, "evil")]; !strings.Contains(evil, "Invoice 99  2026-01-01 00:00") || len(lines) != len(f.msgs)+1 {
		t.Errorf("evil subject not kept on its line:\n%s", out)
	}
	// Columns line up: every SUBJECT starts at the header's column.
	col := strings.Index(lines[0], "SUBJECT")
	if !strings.Contains(lines[1+slices.Index(wantOrder, "lf")][col:], "no final newline") {
		t.Errorf("subject column not aligned:\n%s", out)
	}
}

func TestArchiveListJSONAndFilters(t *testing.T) {
	f := newArchiveFixture(t)
	code, out, errOut := runCmd(nil, "archive", "list", "--json", "--config", f.cfg, "--message-id", "from-lines@test.example")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, k := range []string{"id", "account", "folder", "uidvalidity", "uid", "message_id", "from", "to", "subject", "date",
		"archived_at", "original_sha256", "plaintext_sha256", "layers", "decryption", "signatures", "harvested", "error"} {
		if _, ok := got[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, out)
		}
	}
	if got["from"] != "zoe@example.net" || got["subject"] != "quarterly figures" || got["original_sha256"] != sha256Hex([]byte(fromLinesMsg)) ||
		got["date"] != "2026-03-01T09:59:00Z" || fmt.Sprint(got["to"]) != "[ceo@org.example]" {
		t.Errorf("from-lines record = %s", out)
	}
	// The fixture's SHA-256, computed here.
	ste := f.byKey["sign-then-encrypt.eml"]
	_, out, _ = runCmd(nil, "archive", "list", "--json", "--config", f.cfg, "--message-id", "<sign-then-encrypt@test.smimed.example>")
	if !strings.Contains(out, `"original_sha256":"`+sha256Hex(ste.raw)+`"`) {
		t.Errorf("alice's record lacks the fixture's SHA-256 %s:\n%s", sha256Hex(ste.raw), out)
	}

	for _, c := range []struct {
		args []string
		want []string
	}{
		// --until DATE includes the whole day; --since DATE starts at 00:00 UTC.
		{[]string{"--since", "2026-03-01", "--until", "2026-03-01"}, f.ids("from-lines", "enc-nokey.eml")},
		{[]string{"--until", "2026-02-28"}, f.ids("enc-old-key.eml", "sign-then-encrypt.eml", "plain.eml")},
		// An RFC 3339 --until is an exclusive end.
		{[]string{"--until", "2026-03-01T00:00:00Z"}, f.ids("enc-old-key.eml", "sign-then-encrypt.eml", "plain.eml")},
		{[]string{"--since", "2026-03-01T01:00:00+01:00", "--until", "2026-03-01T10:00:01Z"}, f.ids("from-lines", "enc-nokey.eml")},
		{[]string{"--status", "undecryptable"}, f.ids("enc-nokey.eml", "enc-old-key.eml")},
		{[]string{"--status", "error"}, f.ids("too-large", "enc-nokey.eml", "enc-old-key.eml")},
		{[]string{"--status", "signed-valid"}, f.ids("sign-then-encrypt.eml")},
		{[]string{"--from", "@PARTNER.example"}, f.ids("enc-nokey.eml", "enc-old-key.eml", "sign-then-encrypt.eml", "plain.eml")},
		{[]string{"--from", "@example.net"}, f.ids("from-lines")},
		{[]string{"--to", "ceo@org.example", "--subject", "FIGURES"}, f.ids("from-lines")},
		{[]string{"--account", "nobody"}, nil},
		{[]string{"--limit", "2"}, f.ids("too-large", "evil")},
	} {
		if got := f.listIDs(t, c.args...); !slices.Equal(got, c.want) {
			t.Errorf("archive list %v = %v, want %v", c.args, got, c.want)
		}
	}
}

// opensslInner decrypts a fixture with org-new and unwraps alice's
// signature with OpenSSL, returning the signed content.
func opensslInner(t *testing.T, dir string, raw []byte) []byte {
	t.Helper()
	signed := testenv.OpenSSLInput(t, "", raw, "cms", "-decrypt", "-recip", filepath.Join(dir, "org-new.crt"), "-inkey", filepath.Join(dir, "org-new.key"))
	return testenv.OpenSSLInput(t, "", signed, "cms", "-verify", "-noverify")
}

func TestArchiveShow(t *testing.T) {
	f := newArchiveFixture(t)
	ste := f.byKey["sign-then-encrypt.eml"]
	code, out, errOut := runCmd(nil, "archive", "show", f.id("sign-then-encrypt.eml"), "--config", f.cfg)
	if code != exitOK {
		t.Fatalf("archive show: exit %d, %s", code, errOut)
	}
	// Compared with LF line ends: the fixture was signed in LF form.
	inner := bytes.ReplaceAll(opensslInner(t, filepath.Dir(f.cfg), ste.raw), []byte("\r\n"), []byte("\n"))
	_, body, ok := bytes.Cut(inner, []byte("\n\n"))
	if lf := strings.ReplaceAll(out, "\r\n", "\n"); !ok || len(body) < 50 || !strings.HasSuffix(lf, string(body)) || !strings.Contains(out, "Subject: smimed test: sign-then-encrypt") {
		t.Errorf("archive show = %q\nwant the headers and the body OpenSSL decrypts: %q", out, body)
	}
	code, out, _ = runCmd(nil, "archive", "show", "--original", f.id("sign-then-encrypt.eml"), "--config", f.cfg)
	if code != exitOK || out != string(ste.raw) {
		t.Errorf("archive show --original: exit %d, same bytes %v", code, out == string(ste.raw))
	}
	code, out, errOut = runCmd(nil, "archive", "show", "999", "--config", f.cfg)
	if code != exitFailed || out != "" || !strings.Contains(errOut, "no such record") {
		t.Errorf("show 999: exit %d, %q; want 1, no such record", code, errOut)
	}
	code, _, errOut = runCmd(nil, "archive", "show", f.id("too-large"), "--config", f.cfg)
	if code != exitFailed || !strings.Contains(errOut, "not fetched") {
		t.Errorf("show of an unfetched record: exit %d, %q", code, errOut)
	}
}

// python3 runs a Python script with args and returns stdout, skipping the
// test when there is no python3.
func python3(t *testing.T, script string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not found: the export tests read the result with Python's mailbox module")
	}
	cmd := exec.Command("python3", append([]string{"-c", script}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, stderr.String())
	}
	return out
}

// pyMessage is one message as Python's mailbox module read it.
type pyMessage struct {
	Key   string `json:"key"`
	From  string `json:"from"`   // mbox: the "From " line without "From "
	Where string `json:"subdir"` // maildir: new or cur
	B64   string `json:"bytes"`
}

const pyReadMbox = `
import base64, json, mailbox, sys
mb = mailbox.mbox(sys.argv[1], create=False)
out = []
for key in sorted(mb.keys()):
    out.append({"key": str(key), "from": mb.get_message(key).get_from(), "bytes": base64.b64encode(mb.get_bytes(key)).decode()})
print(json.dumps(out))
`

const pyReadMaildir = `
import base64, json, mailbox, sys
md = mailbox.Maildir(sys.argv[1], factory=None, create=False)
out = []
for key in md.keys():
    out.append({"key": key, "subdir": md.get_message(key).get_subdir(), "bytes": base64.b64encode(md.get_bytes(key)).decode()})
print(json.dumps(out))
`

func readPy(t *testing.T, out []byte) []pyMessage {
	t.Helper()
	var msgs []pyMessage
	if err := json.Unmarshal(out, &msgs); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return msgs
}

func (m pyMessage) bytes(t *testing.T) []byte {
	b, err := base64.StdEncoding.DecodeString(m.B64)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// show returns `archive show ID` (with --original if asked).
func (f *archiveFixture) show(t *testing.T, id string, original bool) []byte {
	t.Helper()
	args := []string{"archive", "show", id, "--config", f.cfg}
	if original {
		args = append(args, "--original")
	}
	code, out, errOut := runCmd(nil, args...)
	if code != exitOK {
		t.Fatalf("archive show %s: exit %d, %s", id, code, errOut)
	}
	return []byte(out)
}

// mboxLineEnds is the documented conversion: CRLF → LF, and a final line
// break when there was none.
func mboxLineEnds(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	if len(b) > 0 && b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	return b
}

// mboxrdUnquote is what an mboxrd reader does and Python's mailbox.mbox
// (an mboxo reader) does not: one ">" less on every line matching ^>+From .
var mboxrdQuoted = regexp.MustCompile(`(?m)^>(>*From )`)

func TestArchiveExportMbox(t *testing.T) {
	f := newArchiveFixture(t)
	out := filepath.Join(t.TempDir(), "export.mbox")
	code, stdout, errOut := runCmd(nil, "archive", "export", "--config", f.cfg, "--out", out)
	if code != exitOK {
		t.Fatalf("archive export: exit %d, %s", code, errOut)
	}
	fetched := len(f.msgs) - 1
	if want := fmt.Sprintf("exported %d messages to %s\n", fetched, out); stdout != want {
		t.Errorf("stdout = %q, want %q", stdout, want)
	}
	if !strings.Contains(errOut, "record "+f.id("too-large")+" skipped") {
		t.Errorf("the unfetched record is not named as skipped: %q", errOut)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mbox mode: %v %v, want 0600", fi.Mode(), err)
	}
	msgs := readPy(t, python3(t, pyReadMbox, out))
	order := []string{"evil", "lf", "from-lines", "enc-nokey.eml", "enc-old-key.eml", "sign-then-encrypt.eml", "plain.eml"}
	if len(msgs) != len(order) {
		t.Fatalf("Python read %d messages, want %d", len(msgs), len(order))
	}
	for i, name := range order {
		want := mboxLineEnds(f.show(t, f.id(name), false))
		top, got := splitVerdict(mboxrdQuoted.ReplaceAll(msgs[i].bytes(t), []byte("$1")))
		if !bytes.Equal(got, want) {
			t.Errorf("message %d (%s): Python read\n%q\nwant (archive show, LF)\n%q", i, name, got, want)
		}
		checkVerdict(t, name, f.id(name), top)
	}
	// The "From " line: the sender and the arrival time in asctime form.
	if got := msgs[slices.Index(order, "from-lines")].From; got != "zoe@example.net Sun Mar  1 10:00:00 2026" {
		t.Errorf("From line = %q", got)
	}
	if got := msgs[slices.Index(order, "plain.eml")].From; !strings.HasSuffix(got, " Sat Jan 10 08:00:00 2026") {
		t.Errorf("plain.eml From line = %q", got)
	}
	// The quoting itself, on the raw file.
	raw, _ := os.ReadFile(out)
	for _, want := range []string{"\n>From here on,", "\n>>From a quoted line\n", "\n>>>From twice quoted\n", "\nFromage is", "\n>From the end\n"} {
		if !bytes.Contains(raw, []byte(want)) {
			t.Errorf("mbox lacks %q", want)
		}
	}

	// A non-empty mbox is not overwritten without --force.
	code, _, errOut = runCmd(nil, "archive", "export", "--config", f.cfg, "--out", out, "--status", "plain")
	if code != exitFailed || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "--force") {
		t.Errorf("export over a non-empty mbox: exit %d, %q; want 1 and one line", code, errOut)
	}
	code, stdout, _ = runCmd(nil, "archive", "export", "--config", f.cfg, "--out", out, "--status", "undecryptable", "--original", "--force")
	if code != exitOK || stdout != "exported 2 messages to "+out+"\n" {
		t.Fatalf("export --force: exit %d, %q", code, stdout)
	}
	msgs = readPy(t, python3(t, pyReadMbox, out))
	for i, name := range []string{"enc-nokey.eml", "enc-old-key.eml"} {
		want := mboxLineEnds(f.byKey[name].raw)
		if got := msgs[i].bytes(t); !bytes.Equal(got, want) {
			t.Errorf("--original %s: Python read %d bytes that differ from the fixture (%d bytes)", name, len(got), len(want))
		}
	}
	if _, err := os.Stat(out + ".tmp"); err == nil {
		t.Errorf("%s.tmp left behind", out)
	}
}

func TestArchiveExportMaildir(t *testing.T) {
	f := newArchiveFixture(t)
	out := filepath.Join(t.TempDir(), "Export")
	code, stdout, errOut := runCmd(nil, "archive", "export", "--format", "maildir", "--out", out, "--config", f.cfg, "--until", "2026-03-02")
	if code != exitOK {
		t.Fatalf("archive export maildir: exit %d, %s", code, errOut)
	}
	names := []string{"lf", "from-lines", "enc-nokey.eml", "enc-old-key.eml", "sign-then-encrypt.eml", "plain.eml"}
	if want := fmt.Sprintf("exported %d messages to %s\n", len(names), out); stdout != want {
		t.Errorf("stdout = %q, want %q", stdout, want)
	}
	msgs := readPy(t, python3(t, pyReadMaildir, out))
	if len(msgs) != len(names) {
		t.Fatalf("Python read %d messages, want %d", len(msgs), len(names))
	}
	byID := map[string]pyMessage{}
	for _, m := range msgs {
		id := regexp.MustCompile(`\.R(\d+)P`).FindStringSubmatch(m.Key)
		if id == nil || m.Where != "new" {
			t.Errorf("maildir message %q in %q: want new/ and a name with the record id", m.Key, m.Where)
			continue
		}
		byID[id[1]] = m
	}
	for _, name := range names {
		m, ok := byID[f.id(name)]
		if !ok {
			t.Errorf("%s (record %s) not in the Maildir", name, f.id(name))
			continue
		}
		// Byte for byte, line ends as archived, under the verdict.
		top, got := splitVerdict(m.bytes(t))
		if want := f.show(t, f.id(name), false); !bytes.Equal(got, want) {
			t.Errorf("%s: Python read\n%q\nwant\n%q", name, got, want)
		}
		checkVerdict(t, name, f.id(name), top)
	}
	if tmp, _ := os.ReadDir(filepath.Join(out, "tmp")); len(tmp) != 0 {
		t.Errorf("tmp/ not empty: %v", tmp)
	}
	// Adding to the Maildir is allowed.
	code, stdout, errOut = runCmd(nil, "archive", "export", "--format", "maildir", "--out", out, "--config", f.cfg, "--from", "mallory@evil.example")
	if code != exitOK || !strings.HasPrefix(stdout, "exported 1 message to") {
		t.Errorf("second export into the Maildir: exit %d, %q %q", code, stdout, errOut)
	}
	if got := len(readPy(t, python3(t, pyReadMaildir, out))); got != len(names)+1 {
		t.Errorf("after the second export Python reads %d messages, want %d", got, len(names)+1)
	}
	// A directory that is not a Maildir is refused.
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "notes.txt"), []byte("x"), 0o600)
	if code, _, errOut := runCmd(nil, "archive", "export", "--format", "maildir", "--out", other, "--config", f.cfg); code != exitFailed || !strings.Contains(errOut, "neither empty nor a Maildir") {
		t.Errorf("export into a non-Maildir: exit %d, %q", code, errOut)
	}
}

// storeHead reads the chain head straight from the bbolt file.
func storeHead(t *testing.T, db string) (uint64, string) {
	t.Helper()
	b, err := bbolt.Open(db, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var id uint64
	var h string
	b.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket([]byte("archive_meta")).Get([]byte("head"))
		if len(v) != 40 {
			t.Fatalf("head = %x", v)
		}
		id, h = binary.BigEndian.Uint64(v), hex.EncodeToString(v[8:])
		return nil
	})
	return id, h
}

func TestArchiveVerify(t *testing.T) {
	f := newArchiveFixture(t)
	headID, head := storeHead(t, filepath.Join(f.state, "smimed.db"))
	code, out, errOut := runCmd(nil, "archive", "verify", "--config", f.cfg)
	if code != exitOK {
		t.Fatalf("verify of an intact archive: exit %d\n%s%s", code, out, errOut)
	}
	// 7 fetched messages, an original and a plaintext each.
	want := fmt.Sprintf("checked %d records, 14 files: no problems\nchain head: record %d sha256:%s\n", len(f.msgs), headID, head)
	if out != want {
		t.Errorf("verify = %q, want %q", out, want)
	}

	// Alter alice's plaintext.
	var rec archive.Record
	_, js, _ := runCmd(nil, "archive", "list", "--json", "--config", f.cfg, "--message-id", "sign-then-encrypt@test.smimed.example")
	if err := json.Unmarshal([]byte(js), &rec); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(f.state, "archive", "maildir", "new", rec.PlaintextFile)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(data, "P.S. forged\r\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCmd(nil, "archive", "verify", "--config", f.cfg)
	if code != exitFailed {
		t.Errorf("verify after tampering: exit %d, want 1", code)
	}
	if !strings.Contains(out, fmt.Sprintf("record %d: %s: file altered", rec.ID, path)) || !strings.Contains(out, "1 problem\n") {
		t.Errorf("verify does not name the altered file %s:\n%s", path, out)
	}
	code, out, _ = runCmd(nil, "archive", "verify", "--json", "--config", f.cfg)
	var res archive.VerifyResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != exitFailed || len(res.Problems) != 1 || res.Problems[0].File != path || res.Head != head {
		t.Errorf("verify --json: exit %d, %v, %+v", code, err, res)
	}
}

func TestArchiveFailedAndRetry(t *testing.T) {
	f := newArchiveFixture(t)
	dir := filepath.Dir(f.cfg)
	// The recipient as openssl prints the certificate it needs.
	serial := func(cert string) string {
		out := testenv.OpenSSL(t, "", "x509", "-in", filepath.Join(fixtures, "pki", cert), "-noout", "-issuer", "-serial")
		return "ktri " + strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", " ")
	}
	code, out, errOut := runCmd(nil, "archive", "failed", "--config", f.cfg)
	if code != exitOK {
		t.Fatalf("archive failed: exit %d, %s", code, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 5 || !strings.Contains(lines[4], "openssl x509 -noout -issuer -serial") || !strings.HasPrefix(lines[0], f.id("enc-nokey.eml")+"  2026-03-01 00:00  ") || !strings.HasPrefix(lines[2], f.id("enc-old-key.eml")+"  2026-02-28 23:59  ") {
		t.Fatalf("archive failed =\n%s", out)
	}
	if lines[1] != "    needs: "+serial("stranger.crt") {
		t.Errorf("enc-nokey needs %q, want the stranger's %s", lines[1], serial("stranger.crt"))
	}
	if lines[3] != "    needs: "+serial("org-old.crt") {
		t.Errorf("enc-old-key needs %q, want org-old's %s", lines[3], serial("org-old.crt"))
	}

	// The config has the old key (PKCS#12): retry decrypts enc-old-key.
	code, out, errOut = runCmd(nil, "archive", "retry", "--config", f.cfg)
	next := len(f.msgs) + 1
	// enc-nokey stays undecryptable (more keys tried, same outcome): no
	// new version.
	want := fmt.Sprintf("%s: unchanged\n%s: decrypted now (new record %d)\n", f.id("enc-nokey.eml"), f.id("enc-old-key.eml"), next)
	if code != exitOK || out != want {
		t.Fatalf("archive retry: exit %d, %q (stderr %q), want %q", code, out, errOut, want)
	}
	// Again: nothing changes now.
	code, out, _ = runCmd(nil, "archive", "retry", "--config", f.cfg)
	if want := fmt.Sprintf("%s: unchanged\n", f.id("enc-nokey.eml")); code != exitOK || out != want {
		t.Errorf("second archive retry: exit %d, %q, want %q", code, out, want)
	}
	// The new plaintext is what OpenSSL decrypts with the old key.
	key := filepath.Join(dir, "org-old.key")
	data, _ := os.ReadFile(filepath.Join(fixtures, "pki", "org-old.key"))
	os.WriteFile(key, data, 0o600)
	plain := testenv.OpenSSLInput(t, "", f.byKey["enc-old-key.eml"].raw, "cms", "-decrypt", "-recip", filepath.Join(fixtures, "pki", "org-old.crt"), "-inkey", key)
	_, body, _ := bytes.Cut(plain, []byte("\r\n\r\n"))
	if got := f.show(t, fmt.Sprint(next), false); !bytes.HasSuffix(got, body) {
		t.Errorf("show of the new record:\n%q\nwant the body OpenSSL decrypts:\n%q", got, body)
	}
	if _, out, _ := runCmd(nil, "archive", "failed", "--config", f.cfg); strings.Contains(out, "org-old") || strings.Count(out, "needs:") != 1 {
		t.Errorf("after retry, archive failed =\n%s", out)
	}
	// Explicit IDs; an unknown one is an error (exit 1), the rest goes on.
	code, out, _ = runCmd(nil, "archive", "retry", "999", f.id("plain.eml"), "--config", f.cfg)
	if code != exitFailed || !strings.HasPrefix(out, "999: error ") || !strings.HasSuffix(out, f.id("plain.eml")+": unchanged\n") {
		t.Errorf("retry 999 and plain: exit %d, %q", code, out)
	}
}

func TestArchiveStoreLockedOrMissing(t *testing.T) {
	f := newArchiveFixture(t)
	defer func(d time.Duration) { state.LockTimeout = d }(state.LockTimeout)
	state.LockTimeout = 100 * time.Millisecond
	st, err := state.Open(filepath.Join(f.state, "smimed.db"), false) // as the daemon does
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	code, _, errOut := runCmd(nil, "archive", "list", "--config", f.cfg)
	if code != exitFailed || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "locked by a running smimed whose control socket did not answer") {
		t.Errorf("list on a locked store: exit %d, %q", code, errOut)
	}
	empty := writeConfig(t, "")
	code, _, errOut = runCmd(nil, "archive", "list", "--config", empty)
	if code != exitFailed || !strings.Contains(errOut, "no state file at") {
		t.Errorf("list without a store: exit %d, %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(empty), "state")); err == nil {
		t.Errorf("archive list created a state_dir")
	}
}

func TestArchiveUsageErrors(t *testing.T) {
	cfg := writeConfig(t, "")
	for _, args := range [][]string{
		{"archive"},
		{"archive", "frobnicate"},
		{"archive", "list", "--bogus"},
		{"archive", "list", "--since", "1 March"},
		{"archive", "list", "--until", "2026-02-30"},
		{"archive", "list", "--status", "encrypted-ish"},
		{"archive", "list", "--direction", "sideways"},
		{"archive", "show", "1", "--original", "--record"},
		{"archive", "list", "--limit", "-1"},
		{"archive", "list", "--since", "2026-03-02", "--until", "2026-03-01"},
		{"archive", "list", "extra"},
		{"archive", "show"},
		{"archive", "show", "abc"},
		{"archive", "show", "1", "2"},
		{"archive", "retry", "1", "x"},
		{"archive", "export", "--format", "mbox"},
		{"archive", "export", "--out", "x", "--format", "pst"},
		{"archive", "verify", "--json=maybe"},
		{"archive", "failed", "now"},
	} {
		code, out, errOut := runCmd(nil, append(args, "--config", cfg)...)
		if code != exitUsage {
			t.Errorf("smimed %v: exit %d, want 2 (%q)", args, code, errOut)
		}
		if out != "" || strings.Count(errOut, "\n") != 1 {
			t.Errorf("smimed %v: want one line on stderr, got stdout %q stderr %q", args, out, errOut)
		}
	}
	for _, args := range [][]string{
		{"archive", "--help"}, {"archive", "list", "--help"}, {"archive", "show", "-h"}, {"archive", "export", "--help"},
		{"archive", "failed", "--help"}, {"archive", "retry", "--help"}, {"archive", "verify", "--help"},
	} {
		code, out, _ := runCmd(nil, args...)
		if code != exitOK || !strings.HasPrefix(out, "Usage: smimed "+args[0]) {
			t.Errorf("smimed %v: exit %d, %q", args, code, out)
		}
	}
}

// TestArchiveHostileMessageID: a Message-ID with invalid UTF-8 (issue 9,
// item 7) used to make verify report an edited index and list unable to
// find it. The record holds it with U+FFFD per invalid byte (as JSON
// stores it); list finds it by the raw bytes and by the shown value.
func TestArchiveHostileMessageID(t *testing.T) {
	raw := "From: mallory@evil.example\r\nTo: ceo@org.example\r\nSubject: pay\x00now \xff\r\nMessage-ID: <\xff\xfe@evil.example>\r\n\r\nhi\r\n"
	f := archiveOf(t, []*archiveMsg{{name: "hostile", raw: []byte(raw), received: utc(2026, 3, 5, 9, 0)}})
	code, out, errOut := runCmd(nil, "archive", "verify", "--config", f.cfg)
	if code != exitOK || !strings.HasPrefix(out, "checked 1 records, 2 files: no problems\n") {
		t.Fatalf("verify: exit %d\n%s%s", code, out, errOut)
	}
	for _, id := range []string{"<\xff\xfe@evil.example>", "\xff\xfe@evil.example", "<\ufffd\ufffd@evil.example>"} {
		if got := f.listIDs(t, "--message-id", id); !slices.Equal(got, f.ids("hostile")) {
			t.Errorf("list --message-id %q = %v, want %v", id, got, f.ids("hostile"))
		}
	}
	if got := f.listIDs(t, "--subject", "pay\x00now"); !slices.Equal(got, f.ids("hostile")) {
		t.Errorf("list --subject with a NUL = %v, want %v", got, f.ids("hostile"))
	}
	_, js, _ := runCmd(nil, "archive", "list", "--json", "--config", f.cfg)
	var rec archive.Record
	if err := json.Unmarshal([]byte(js), &rec); err != nil || rec.MessageID != "<\ufffd\ufffd@evil.example>" || rec.Subject != "pay now \ufffd" {
		t.Errorf("record: %v, message_id %q subject %q", err, rec.MessageID, rec.Subject)
	}
}

// TestArchiveRetrySaysWhatChanged: a message archived before its CA was
// a trust anchor (the config's ca-bundle is one now) is re-judged by
// retry, which says "verdict untrusted → valid" — and never "decrypted
// now" for a message that was decrypted already (issue 9). The record
// versions show the same.
func TestArchiveRetrySaysWhatChanged(t *testing.T) {
	read := func(name string) []byte { return testenv.Testdata(t, "msg", name) }
	f := archiveWith(t, []*archiveMsg{
		{name: "sign-then-encrypt.eml", raw: read("sign-then-encrypt.eml"), received: utc(2026, 2, 15, 12, 30)},
		{name: "signed-rsa-sha256.eml", raw: read("signed-rsa-sha256.eml"), received: utc(2026, 2, 16, 12, 30)},
		{name: "enc-old-key.eml", raw: read("enc-old-key.eml"), received: utc(2026, 2, 17, 12, 30)},
	}, false)
	code, out, errOut := runCmd(nil, "archive", "retry", f.id("sign-then-encrypt.eml"), f.id("signed-rsa-sha256.eml"), f.id("enc-old-key.eml"), "--config", f.cfg)
	want := fmt.Sprintf("%s: verdict untrusted → valid (new record 4)\n%s: verdict untrusted → valid (new record 5)\n%s: decrypted now (new record 6)\n",
		f.id("sign-then-encrypt.eml"), f.id("signed-rsa-sha256.eml"), f.id("enc-old-key.eml"))
	if code != exitOK || out != want {
		t.Fatalf("archive retry: exit %d, %q (stderr %q), want %q", code, out, errOut, want)
	}
	// The versions: 1 → 4 and 2 → 5, each the decryption it had and the
	// new verdict; 3 → 6 decrypted.
	_, js, _ := runCmd(nil, "archive", "list", "--json", "--config", f.cfg)
	got := map[uint64]archive.Record{}
	for _, l := range strings.Split(strings.TrimSpace(js), "\n") {
		var r archive.Record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		got[r.ID] = r
	}
	for id, w := range map[uint64]struct {
		supersedes uint64
		status     string
	}{4: {1, "decrypted,signed-valid"}, 5: {2, "signed-valid"}, 6: {3, "decrypted"}} {
		r := got[id]
		if r.Version != 2 || r.Supersedes != w.supersedes || strings.Join(r.Status, ",") != w.status {
			t.Errorf("record %d: version %d supersedes %d status %v, want 2, %d, %s", id, r.Version, r.Supersedes, r.Status, w.supersedes, w.status)
		}
	}
	// The superseded versions keep what was judged then.
	a, closeStore := f.open(t, true)
	defer closeStore()
	for id, status := range map[uint64]string{1: "decrypted,signed-untrusted", 2: "signed-untrusted", 3: "undecryptable,error"} {
		if r, err := a.Get(id); err != nil || r.Version != 1 || strings.Join(r.Status, ",") != status {
			t.Errorf("record %d = %+v, %v; want version 1, status %s", id, r, err, status)
		}
	}
}

// splitVerdict splits an exported plaintext into the verdict fields smimed
// put on top (X-Smimed-*, Authentication-Results, with their continuation
// lines) and the message as archived.
func splitVerdict(msg []byte) (top, rest []byte) {
	i := 0
	for i < len(msg) {
		end := bytes.IndexByte(msg[i:], '\n')
		if end < 0 {
			break
		}
		line := msg[i : i+end+1]
		ours := bytes.HasPrefix(line, []byte("X-Smimed-")) || bytes.HasPrefix(line, []byte("Authentication-Results:"))
		cont := len(line) > 0 && (line[0] == ' ' || line[0] == '\t') && i > 0
		if !ours && !cont {
			break
		}
		i += end + 1
	}
	return msg[:i], msg[i:]
}

// checkVerdict: an exported plaintext names its record and carries the
// RFC 7281 result its verdict calls for.
func checkVerdict(t *testing.T, name, id string, top []byte) {
	t.Helper()
	want := map[string]string{"plain.eml": "smime=none", "sign-then-encrypt.eml": "smime=pass", "enc-nokey.eml": "smime=permerror", "enc-old-key.eml": "smime=permerror"}[name]
	if !bytes.Contains(top, []byte("X-Smimed-Record: "+id+"\n")) && !bytes.Contains(top, []byte("X-Smimed-Record: "+id+"\r\n")) {
		t.Errorf("%s: the export does not name record %s on top:\n%s", name, id, top)
	}
	if !bytes.Contains(top, []byte("Authentication-Results: ")) || want != "" && !bytes.Contains(top, []byte(want)) {
		t.Errorf("%s: the export's verdict lacks Authentication-Results with %q:\n%s", name, want, top)
	}
}
