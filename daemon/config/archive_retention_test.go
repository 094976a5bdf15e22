package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/archive"
)

func TestRetentionAndAccess(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Load(writeFile(t, dir, "smimed.toml", `
[archive.retention]
default_class = "letters"
time_zone = "Europe/Berlin"
[archive.retention.classes]
letters = "6y"
bookings = "8y"
books = "10y"
[[archive.retention.rule]]
class = "bookings"
from_domain = ["@Tax.example"]
[[archive.retention.rule]]
class = "books"
folder = ["Ledger"]
account = ["finance"]
[archive.access]
auditor_group = "smimed-audit"
[archive.access.auditor_query]
to = "@org.example"
until = "2025-12-31"
`))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Archive.Retention
	if r.DefaultClass != "letters" || r.Classes["books"] != 10 || r.EInvoiceClass != "bookings" || r.Location.String() != "Europe/Berlin" {
		t.Errorf("retention %+v", r)
	}
	if len(r.Rules) != 2 || !slices.Equal(r.Rules[0].FromDomains, []string{"tax.example"}) || r.Rules[1].Class != "books" {
		t.Errorf("rules %+v", r.Rules)
	}
	p := r.Policy()
	rec := &archive.Record{From: "adviser@tax.example", Account: "finance", Folder: "Ledger"}
	if got := p.Class(rec, false); got != "bookings" {
		t.Errorf("first rule: class %q, want bookings", got)
	}
	// No [[accounts]] has the rule's account or folder: both named.
	if w := cfg.RetentionWarnings(); len(w) != 2 || !strings.Contains(strings.Join(w, "\n"), `rule[1].account: "finance"`) || !strings.Contains(strings.Join(w, "\n"), `rule[1].folder: "Ledger"`) {
		t.Errorf("RetentionWarnings = %q, want rule[1]'s account and folder", w)
	}
	writeFile(t, dir, "finance.pass", "secret\n")
	withAccount, err := Load(writeFile(t, dir, "accounts.toml", `
[[accounts]]
name = "finance"
server = "imap.example.org:993"
username = "finance@example.org"
password_file = "finance.pass"
folders = ["INBOX", "Ledger"]
[[archive.retention.rule]]
class = "books"
folder = ["Ledger"]
account = ["finance"]
[[archive.retention.rule]]
class = "books"
from_domain = ["Bücher.example"]
account = ["Finance"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if w := withAccount.RetentionWarnings(); len(w) != 1 || !strings.Contains(w[0], `rule[1].account: "Finance"`) {
		t.Errorf("RetentionWarnings = %q, want only rule[1]'s account (compared exactly)", w)
	}
	// A domain with non-ASCII labels is kept in A-labels (Python's
	// str.encode("idna")) and matches mail in either spelling.
	if got := withAccount.Archive.Retention.Rules[1].FromDomains; !slices.Equal(got, []string{"xn--bcher-kva.example"}) {
		t.Errorf("from_domain = %q, want the A-labels", got)
	}
	idn := withAccount.Archive.Retention.Policy()
	for _, from := range []string{"a@bücher.example", "a@XN--BCHER-KVA.example"} {
		if got := idn.Class(&archive.Record{From: from, Account: "Finance"}, false); got != "books" {
			t.Errorf("mail from %s: class %q, want books", from, got)
		}
	}

	a := cfg.Archive.Access
	if a.AuditorGroup != "smimed-audit" || a.AuditorQuery == nil || a.AuditorQuery.To != "@org.example" || !a.AuditorQuery.Until.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("access %+v %+v", a, a.AuditorQuery)
	}

	// Without the table: the GoBD periods.
	def, err := Load(writeFile(t, dir, "empty.toml", "\n"))
	if err != nil || def.Archive.Retention.Classes["letters"] != 6 || def.Archive.Retention.DefaultClass != "letters" || Defaults().Archive.Retention.Classes["bookings"] != 8 {
		t.Errorf("default retention %+v, %v", def.Archive.Retention, err)
	}

	_, err = Load(writeFile(t, dir, "bad.toml", `
[archive.retention]
default_class = "mail"
time_zone = "Mars/Olympus"
[archive.retention.classes]
letters = "6y"
long = "6 years"
Bad = "1y"
[[archive.retention.rule]]
class = "books"
[[archive.retention.rule]]
class = "letters"
[[archive.retention.rule]]
folder = ["x"]
[archive.access]
auditor_group = "no such group!"
[archive.access.auditor_query]
since = "yesterday"
`))
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("bad retention: %v", err)
	}
	got := strings.Join(ce.Problems, "\n")
	for _, want := range []string{
		`archive.retention.classes.long: "6 years": want a number of years`,
		`archive.retention.classes.Bad: a class name`,
		`archive.retention.default_class: class "mail" is not one of`,
		`archive.retention.time_zone: "Mars/Olympus"`,
		`archive.retention.rule[0].class: class "books" is not one of`,
		`archive.retention.rule[1]: give at least one of`,
		`archive.retention.rule[2]: class is required`,
		`archive.access.auditor_group: "no such group!" is not a group name`,
		`archive.access.auditor_query.since: "yesterday"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("problems lack %q:\n%s", want, got)
		}
	}
}
