package main

// This file is `smimed docs procedure`: a draft of the procedure
// documentation (Verfahrensdokumentation) written from the configuration,
// for the administrator to complete.

import (
	"fmt"
	"io"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/smimed/smimed/daemon/admin"
	"github.com/smimed/smimed/daemon/config"
)

const docsUsage = `Usage: smimed docs procedure [--config FILE]

Prints a draft of the procedure documentation (Verfahrensdokumentation,
as GoBD asks for it) in Markdown, written from the configuration: what is
archived and where, the retention classes and rules, who may do what,
how the archive is verified, and how holds, restrictions and purges are
done. What smimed cannot know is marked "[TO COMPLETE: …]" for the
administrator to fill in. Nothing is read but the configuration (and the
owner of the state file, for the service user).

  --config FILE   configuration file (default /etc/smimed/smimed.toml)
`

func docsCommand(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("docs procedure")
	configPath := fs.String("config", "", "")
	if code, done := oneSubcommand(fs, args, docsUsage, stdout, stderr); done {
		return code
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "smimed: %v\n", err)
		return exitUsage
	}
	writeProcedure(stdout, cfg, time.Now())
	return exitOK
}

// gap marks what the administrator must complete.
func gap(what string) string { return "[TO COMPLETE: " + what + "]" }

// writeProcedure writes the draft for cfg.
func writeProcedure(w io.Writer, cfg *config.Config, now time.Time) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	src := cfg.Path
	if src == "" {
		src = "the built-in defaults (no configuration file)"
	}
	p("# Procedure documentation: e-mail archive (smimed)")
	p("")
	p("Draft written by `smimed docs procedure` on %s from %s. Everything", now.UTC().Format(time.DateOnly), src)
	p("marked TO COMPLETE is for the organisation to fill in; check the rest")
	p("against the running system.")
	p("")
	p("Organisation: %s. Responsible for the archive: %s. Version and date of", gap("name, address"), gap("name, role"))
	p("this document: %s.", gap("version, date, who approved it"))
	p("")
	p("## 1. What is archived")
	p("")
	p("smimed watches the following mailboxes read-only (IMAP EXAMINE) and")
	p("archives every message it finds there, with the bytes as received")
	p("(the original) and, for encrypted mail, the decrypted plaintext:")
	p("")
	if len(cfg.Accounts) == 0 {
		p("- %s (the configuration names no mailbox)", gap("the mailboxes"))
	}
	for _, a := range cfg.Accounts {
		p("- `%s`: %s on %s, folders %s; mail there before the first start: %s",
			a.Name, a.Username, a.Server, strings.Join(a.Folders, ", "), a.Backfill)
	}
	p("")
	p("Messages larger than %d bytes are listed in the archive with their", cfg.MaxMessageSize)
	p("size and reason but not stored. Which mail reaches these mailboxes")
	p("(journaling, forwarding rules, who delivers there): %s.", gap("how all business mail reaches the watched mailboxes"))
	p("")
	p("## 2. Where it is kept")
	p("")
	p("- Archive files: `%s` (originals by SHA-256, plaintexts as a Maildir)", cfg.ArchiveDir())
	p("- Index, hash chain and audit log: `%s`", cfg.StorePath())
	if cfg.Archive.Worm != nil {
		p("- A write-once copy in S3-compatible storage with Object Lock ([archive.worm])")
	} else {
		p("- No write-once (WORM) copy is configured ([archive.worm]). %s", gap("where backups go, how often, how long they are kept"))
	}
	p("- Machine, location and backups: %s", gap("host, room or provider, backup procedure (smimed backup) and restore tests"))
	p("")
	p("## 3. Retention")
	p("")
	r := cfg.Archive.Retention
	p("Every message gets a retention class when it is archived; it is kept")
	p("until the end of the calendar year of receipt plus the class's years")
	p("(retain-until: December 31, 23:59:59, %s time). Classes:", r.TimeZone)
	p("")
	for _, c := range r.ClassNames() {
		def := ""
		if c == r.DefaultClass {
			def = " (default: mail no rule picks)"
		}
		p("- `%s`: %d years%s", c, r.Classes[c], def)
	}
	p("")
	if len(r.Rules) > 0 {
		p("Rules, the first that matches picks the class:")
		p("")
		for i, ru := range r.Rules {
			var m []string
			for _, l := range []struct {
				what string
				v    []string
			}{{"from domain", ru.FromDomains}, {"to domain", ru.ToDomains}, {"folder", ru.Folders}, {"account", ru.Accounts}} {
				if len(l.v) > 0 {
					m = append(m, l.what+" "+strings.Join(l.v, " or "))
				}
			}
			p("%d. %s → `%s`", i+1, strings.Join(m, ", and "), ru.Class)
		}
		p("")
	}
	if r.EInvoiceClass != "" {
		p("A message with an e-invoice attached (XRechnung UBL or CII XML, or a")
		p("ZUGFeRD/Factur-X PDF embedding its XML) is at least `%s`.", r.EInvoiceClass)
		p("")
	}
	p("Why these periods apply to which mail: %s.", gap("the legal basis (e.g. § 147 AO, § 257 HGB) and who decided the rules"))
	p("")
	p("## 4. Who may do what")
	p("")
	owner := "the user owning the state file"
	if uid := admin.OwnerOf(cfg.StorePath()); uid >= 0 {
		owner = userLabel(uid)
	}
	p("- Administrators (root and the service user, %s): everything,", owner)
	p("  including holds, restrictions and purges. A purge needs two")
	p("  administrators: one plans, another person approves.")
	p("- Members of the service's group: read (list, show, export, verify).")
	acc := cfg.Archive.Access
	if acc.AuditorGroup != "" {
		limit := "all archived mail"
		if acc.AuditorQuery != nil {
			limit = "only mail matching " + admin.QueryDetail(*acc.AuditorQuery)
		}
		p("- Auditors (group `%s`): read and export only, restricted mail included; %s.", acc.AuditorGroup, limit)
	} else {
		p("- No auditor group is configured ([archive.access] auditor_group).")
	}
	p("- Every read, hold, restriction, purge and refusal is written to the")
	p("  audit log (`smimed archive audit`).")
	p("- Named persons in these roles: %s", gap("names, and how access is granted and withdrawn"))
	p("")
	p("## 5. How integrity is checked")
	p("")
	p("Each record holds the SHA-256 of the original and the plaintext and the")
	p("hash of the record before it (a hash chain). `smimed archive verify`")
	p("recomputes the chain and every file's digest and names each problem.")
	p("Trusted timestamps, seals and the export an auditor can check without")
	p("smimed are described in docs/evidence.md.")
	p("Who runs verify, how often, and where the chain head is written down: %s.", gap("schedule and place"))
	p("")
	p("## 6. Holds, restrictions and deletion")
	p("")
	p("- Legal hold: `smimed archive hold add CASE --from … --since …` holds")
	p("  every matching message (also later mail) until `hold remove CASE`.")
	p("- GDPR restriction: `smimed archive restrict ID --reason …` hides a")
	p("  message from everyone but the auditors until its retention ends.")
	p("- Deletion: `smimed archive purge --plan` lists what retention lets")
	p("  go; another administrator checks the list and runs `smimed archive")
	p("  purge --approve PLAN`. A tombstone in the chain records what was")
	p("  deleted, when, and by whom; held or restricted mail is never purged.")
	p("- Who decides holds and deletions, and how the sign-off is recorded: %s.", gap("the internal process"))
	p("")
	p("## 7. Changes to this procedure")
	p("")
	p("%s", gap("how changes to the configuration are reviewed and documented"))
}

// userLabel is "uid N (name)".
func userLabel(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("uid %d (%s)", uid, u.Username)
	}
	return "uid " + strconv.Itoa(uid)
}
