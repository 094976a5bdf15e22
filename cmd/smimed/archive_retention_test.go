package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/smimed/smimed/archive"
)

func oldLetter(n int) []byte {
	return []byte(fmt.Sprintf("From: clerk@supplier.example\r\nTo: ceo@org.example\r\nSubject: old letter %d\r\nMessage-ID: <old%d@supplier.example>\r\n\r\nletter %d\r\n", n, n, n))
}

// retentionArchive: three letters received in 2015 (archived before
// retention existed: their retain-until, end of 2021, comes from the
// configuration when read) and one of 2026.
func retentionArchive(t *testing.T) *archiveFixture {
	t.Helper()
	return archiveOf(t, []*archiveMsg{
		{name: "old1", raw: oldLetter(1), received: utc(2015, 3, 1, 9, 0)},
		{name: "old2", raw: oldLetter(2), received: utc(2015, 3, 2, 9, 0)},
		{name: "old3", raw: oldLetter(3), received: utc(2015, 3, 3, 9, 0)},
		{name: "new", raw: []byte(fromLinesMsg), received: utc(2026, 3, 1, 10, 0)},
	})
}

func (f *archiveFixture) run(t *testing.T, want int, args ...string) string {
	t.Helper()
	args = append(args[:1:1], append([]string{"--config", f.cfg}, args[1:]...)...)
	code, out, errOut := runCmd(nil, args...)
	if code != want {
		t.Fatalf("smimed %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, want, out, errOut)
	}
	return out + errOut
}

func TestArchiveHoldRestrictPurge(t *testing.T) {
	f := retentionArchive(t)
	if got, want := f.listIDs(t, "--expired"), f.ids("old3", "old2", "old1"); !slices.Equal(got, want) {
		t.Fatalf("list --expired: %v, want %v", got, want)
	}
	f.run(t, exitOK, "archive", "hold", "add", "case-1", "--subject", "old letter 1", "--reason", "audit 2015")
	f.run(t, exitOK, "archive", "hold", "add", "case-2", "--from", "clerk@supplier.example", "--until", "2015-03-01")
	f.run(t, exitUsage, "archive", "hold", "add", "case-3")
	if out := f.run(t, exitFailed, "archive", "hold", "add", "case-2", "--all"); !strings.Contains(out, "already exists") {
		t.Errorf("a second case-2: %s", out)
	}
	out := f.run(t, exitOK, "archive", "hold", "list")
	if !strings.Contains(out, "case-1") || !strings.Contains(out, `subject="old letter 1"`) || !strings.Contains(out, "case-2") {
		t.Errorf("hold list:\n%s", out)
	}
	if got, want := f.listIDs(t, "--expired"), f.ids("old3", "old2"); !slices.Equal(got, want) {
		t.Errorf("list --expired with old1 held twice: %v, want %v", got, want)
	}
	// Restriction: the 2026 message disappears; an expired one is purged instead.
	f.run(t, exitOK, "archive", "restrict", f.id("new"), "--reason", "GDPR request 17")
	if got := f.listIDs(t); slices.Contains(got, f.id("new")) {
		t.Errorf("list shows the restricted message: %v", got)
	}
	if out := f.run(t, exitFailed, "archive", "show", f.id("new")); !strings.Contains(out, "no such record") {
		t.Errorf("show of the restricted message: %s", out)
	}
	if out := f.run(t, exitFailed, "archive", "restrict", f.id("old2"), "--reason", "x"); !strings.Contains(out, "purge it") {
		t.Errorf("restrict of an expired message: %s", out)
	}
	out = f.run(t, exitOK, "archive", "purge", "--plan", "--json")
	var plan archive.PurgePlan
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatalf("plan: %v\n%s", err, out)
	}
	var planned []string
	for _, it := range plan.Records {
		planned = append(planned, fmt.Sprint(it.ID))
	}
	if want := f.ids("old3", "old2"); !slices.Equal(planned, want) {
		t.Fatalf("planned %v, want %v (old1 held, new restricted and young)", planned, want)
	}
	// The planner approving: refused.
	if out := f.run(t, exitFailed, "archive", "purge", "--approve", plan.ID); !strings.Contains(out, "approved by another person") {
		t.Errorf("approve by the planner: %s", out)
	}
	out = f.run(t, exitOK, "archive", "audit", "--json")
	for _, want := range []string{`"action":"hold-add","detail":"case=\"case-1\" subject=\"old letter 1\""`, `"action":"restrict"`, `"action":"purge-plan","detail":"plan=` + plan.ID, `"action":"refused","detail":"archive purge --approve plan=` + plan.ID} {
		if !strings.Contains(out, want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
	if os.Getuid() != 0 {
		t.Skip("a second admin needs a second user: run the tests as root")
	}
	// Another person: the state file's owner (the service user), uid
	// 4343, running the smimed binary offline.
	const other = 4343
	bin := filepath.Join(t.TempDir(), "smimed")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	filepath.WalkDir(f.state, func(p string, _ fs.DirEntry, _ error) error { return os.Lchown(p, other, other) })
	for d := filepath.Dir(f.cfg); d != "/"; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o005 != 0o005 {
			os.Chmod(d, fi.Mode().Perm()|0o005)
		}
	}
	os.Chmod(filepath.Dir(bin), 0o755)
	os.Chmod(f.cfg, 0o644)
	cmd := exec.Command(bin, "archive", "--config", f.cfg, "purge", "--approve", plan.ID)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: other, Gid: other, Groups: []uint32{}}}
	approved, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(approved), "2 records purged, tombstone record") {
		t.Fatalf("approve by uid %d: %v\n%s", other, err, approved)
	}
	out = f.run(t, exitOK, "archive", "verify")
	if !strings.Contains(out, "no problems") || !strings.Contains(out, "gap: 2 records purged by plan "+plan.ID) || !strings.Contains(out, fmt.Sprintf("approved by uid %d", other)) {
		t.Errorf("verify after the purge:\n%s", out)
	}
	if got, want := f.listIDs(t, "--expired"), []string(nil); !slices.Equal(got, want) {
		t.Errorf("list --expired after the purge: %v", got)
	}
	if out := f.run(t, exitOK, "archive", "audit", "--json"); !strings.Contains(out, fmt.Sprintf(`"uid":%d`, other)) || !strings.Contains(out, `"action":"purge-approve","detail":"plan=`+plan.ID) {
		t.Errorf("audit log lacks the approval by uid %d", other)
	}
	// Holds survive: old1 is there still.
	if out := f.run(t, exitOK, "archive", "show", f.id("old1")); !strings.Contains(out, "letter 1") {
		t.Errorf("held message after the purge: %s", out)
	}
}

func TestDocsProcedure(t *testing.T) {
	cfg := writeConfig(t, `
[[accounts]]
name = "finance"
server = "imap.example.org:993"
username = "finance@org.example"
password_file = "org-new.key"
folders = ["INBOX", "Rechnungen"]
[archive.retention]
time_zone = "Europe/Berlin"
[archive.retention.classes]
letters = "6y"
bookings = "8y"
contracts = "30y"
[[archive.retention.rule]]
class = "contracts"
from_domain = ["notary.example"]
[archive.access]
auditor_group = "finanzamt"
[archive.access.auditor_query]
to = "@org.example"
`)
	code, out, errOut := runCmd(nil, "docs", "procedure", "--config", cfg)
	if code != exitOK {
		t.Fatalf("docs procedure: exit %d %s", code, errOut)
	}
	for _, want := range []string{
		"`finance`: finance@org.example on imap.example.org:993, folders INBOX, Rechnungen",
		"- `letters`: 6 years (default: mail no rule picks)",
		"- `contracts`: 30 years",
		"1. from domain notary.example → `contracts`",
		"Europe/Berlin time",
		"is at least `bookings`",
		"Auditors (group `finanzamt`): read and export only, restricted mail included; only mail matching to=\"@org.example\"",
		"docs/evidence.md",
		"[TO COMPLETE: ",
		filepath.Join(filepath.Dir(cfg), "state", "archive"),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("docs procedure lacks %q:\n%s", want, out)
		}
	}
	if code, _, _ := runCmd(nil, "docs", "nothing"); code != exitUsage {
		t.Errorf("docs nothing: exit %d, want 2", code)
	}
}
