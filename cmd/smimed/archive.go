package main

// This file is `smimed archive`: list, show, failed, retry and verify
// (export is in archive_export.go). Every subcommand talks to a
// admin.ArchiveAPI, got from admin.ArchiveFor: the running daemon through
// its control socket, or the store opened directly when no daemon runs.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/admin"
	"github.com/smimed/smimed/daemon/config"
)

const archiveUsage = `Usage: smimed archive [--config FILE] SUBCOMMAND

  list [FILTERS] [--json]                        archived messages, newest first
  show ID [--original]                           write one message to stdout (plaintext by default)
  export [FILTERS] [--format mbox|maildir] --out PATH [--original] [--force]
                                                 write the matching messages to an mbox or a Maildir
  export [FILTERS] --evidence --out DIR          the messages with proofs, seals, timestamps and VERIFY.sh
  failed [--json]                                undecryptable messages and the keys they need
  retry [ID...] [--all-untrusted | --revoked-since DATE]
                                                 judge again with the configured keys, anchors and CRLs
  verify [--evidence [--openssl]] [--json]       check the hash chain, every file, the seals' timestamps and the WORM copy
  proof ID [--json]                              a record's inclusion proof: Merkle path, seal, timestamps
  audit [--since DATE] [--json]                  who read the archive, when and what
  hold add CASE (FILTERS | --all) [--reason TEXT] | hold remove CASE | hold list [--json]
                                                 legal holds: held mail is never purged
  restrict ID --reason TEXT | restrict ID --lift hide a message (GDPR) until its retention ends
  purge --plan [--json] | purge --approve PLAN   delete what retention lets go, by two people

FILTERS (list, export, hold add); list also takes --expired: messages
whose retention has ended and that are neither held nor restricted.
` + archiveFilterHelp + `
  --config FILE   configuration file (default /etc/smimed/smimed.toml)

Run "smimed archive SUBCOMMAND --help" for one subcommand.
`

// archiveFilterHelp describes the FILTERS of list and export.
const archiveFilterHelp = `  --from ADDR        From address, or @domain
  --to ADDR          To or Cc address, or @domain
  --since DATE       arrived on or after DATE
  --until DATE       arrived on or before DATE (YYYY-MM-DD: that whole day
                     included); an RFC 3339 time is an exclusive end
  --subject TEXT     Subject contains TEXT (case-insensitive)
  --status S         decrypted, undecryptable, signed-valid, signed-partial,
                     signed-untrusted, signed-expired, signed-mismatch,
                     signed-revoked, signed-invalid, signed-error,
                     certs-only, plain or error; for outgoing mail
                     signed, encrypted, sent-unsigned, sent-unencrypted,
                     refused or passed
  --direction D      in (fetched from a mailbox) or out (sent by the gateway)
  --account NAME     fetched for this account
  --message-id ID    Message-ID, with or without <>
  --limit N          at most N messages (0: all)
DATE is YYYY-MM-DD (a day in UTC) or an RFC 3339 time such as
2026-03-01T09:00:00+01:00 (arrival times are the IMAP server's).
`

// archiveValueFlags are the flags of any archive subcommand that take a
// value: archiveCommand skips their values when it looks for the
// subcommand, so flags may come before it.
var archiveValueFlags = map[string]bool{
	"config": true, "from": true, "to": true, "since": true, "until": true, "subject": true,
	"status": true, "account": true, "message-id": true, "limit": true, "format": true, "out": true,
	"direction": true, "reason": true, "approve": true,
}

// archiveCommand finds the subcommand (the first word that is neither a
// flag nor a flag's value) and hands it every other argument.
func archiveCommand(args []string, stdout, stderr io.Writer) int {
	sub := -1
	for i := 0; i < len(args) && sub < 0; i++ {
		a := args[i]
		switch {
		case a == "--":
			i = len(args)
		case a == "-h" || a == "-help" || a == "--help":
			fmt.Fprint(stdout, archiveUsage)
			return exitOK
		case strings.HasPrefix(a, "-") && a != "-":
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") && archiveValueFlags[name] {
				i++
			}
		default:
			sub = i
		}
	}
	if sub < 0 {
		fmt.Fprintln(stderr, "smimed archive: missing subcommand: list, show, export, failed, retry, verify, proof, audit, hold, restrict or purge (see smimed archive --help)")
		return exitUsage
	}
	rest := append(append([]string{}, args[:sub]...), args[sub+1:]...)
	switch args[sub] {
	case "list":
		return archiveList(rest, stdout, stderr)
	case "show":
		return archiveShow(rest, stdout, stderr)
	case "export":
		return archiveExport(rest, stdout, stderr)
	case "failed":
		return archiveFailed(rest, stdout, stderr)
	case "retry":
		return archiveRetry(rest, stdout, stderr)
	case "verify":
		return archiveVerify(rest, stdout, stderr)
	case "proof":
		return archiveProof(rest, stdout, stderr)
	case "audit":
		return archiveAudit(rest, stdout, stderr)
	case "hold":
		return archiveHold(args[:sub], args[sub+1:], stdout, stderr)
	case "restrict":
		return archiveRestrict(rest, stdout, stderr)
	case "purge":
		return archivePurge(rest, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, archiveUsage)
		return exitOK
	}
	fmt.Fprintf(stderr, "smimed archive: unknown subcommand %q: want list, show, export, failed, retry, verify, proof, audit, hold, restrict or purge\n", args[sub])
	return exitUsage
}

// archiveSession is what every archive subcommand (and backup) starts
// with: its flags, how it reports errors, and the API (with).
type archiveSession struct {
	name       string // "archive list", for messages
	fs         *flag.FlagSet
	configPath *string
	stdout     io.Writer
	stderr     io.Writer
}

func newArchiveSession(name string, stdout, stderr io.Writer) *archiveSession {
	s := &archiveSession{name: name, fs: newFlags(name), stdout: stdout, stderr: stderr}
	s.configPath = s.fs.String("config", "", "")
	return s
}

// parse parses args against the session's flags and refuses more than
// maxPos positional arguments (-1: any number).
func (s *archiveSession) parse(args []string, usage string, maxPos int) (pos []string, code int, done bool) {
	pos, code, done = parseFlags(s.fs, args, s.stdout, s.stderr, usage)
	if !done && maxPos >= 0 && len(pos) > maxPos {
		return nil, s.usagef("unexpected argument %q", pos[maxPos]), true
	}
	return pos, code, done
}

// parseOne parses args like parse with one positional argument, which it
// requires; what names it in the message when it is missing.
func (s *archiveSession) parseOne(args []string, usage, what string) (arg string, code int, done bool) {
	pos, code, done := s.parse(args, usage, 1)
	if done {
		return "", code, true
	}
	if len(pos) == 0 {
		return "", s.usagef("missing %s", what), true
	}
	return pos[0], 0, false
}

// parseID is parseOne for a record id.
func (s *archiveSession) parseID(args []string, usage string) (id uint64, code int, done bool) {
	arg, code, done := s.parseOne(args, usage, "ID")
	if done {
		return 0, code, true
	}
	id, err := parseID(arg)
	if err != nil {
		return 0, s.usagef("%v", err), true
	}
	return id, 0, false
}

// usagef prints a one-line usage error and returns exitUsage.
func (s *archiveSession) usagef(format string, args ...any) int {
	fmt.Fprintf(s.stderr, "smimed %s: %s (see smimed %s --help)\n", s.name, fmt.Sprintf(format, args...), s.name)
	return exitUsage
}

// failf prints a one-line error and returns exitFailed.
func (s *archiveSession) failf(format string, args ...any) int {
	fmt.Fprintf(s.stderr, "smimed %s: %s\n", s.name, fmt.Sprintf(format, args...))
	return exitFailed
}

// with loads the configuration, opens the API and runs fn with it and a
// context that SIGINT or SIGTERM cancel (so an export removes its
// temporary file). A failure to open is printed in one line.
func (s *archiveSession) with(needEngine bool, fn func(ctx context.Context, api admin.ArchiveAPI, cfg *config.Config) int) int {
	cfg, err := loadConfig(*s.configPath)
	if err != nil {
		fmt.Fprintf(s.stderr, "smimed: %v\n", err)
		return exitUsage
	}
	api, err := admin.ArchiveFor(cfg, needEngine)
	if code := exitCodeOf(err); code == exitUsage {
		fmt.Fprintf(s.stderr, "smimed: %v\n", err)
		return exitUsage
	}
	if err != nil {
		return s.failf("%v", err)
	}
	defer api.Close()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	return fn(ctx, api, cfg)
}

// jsonLines is an encoder for one JSON object per line, as the other
// commands print them.
func jsonLines(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc
}

// queryFlags are the filters of list and export.
type queryFlags struct {
	from, to, since, until, subject, status, account, messageID, direction *string
	limit                                                                  *int
}

func addQueryFlags(fs *flag.FlagSet) *queryFlags {
	return &queryFlags{
		from: fs.String("from", "", ""), to: fs.String("to", "", ""),
		since: fs.String("since", "", ""), until: fs.String("until", "", ""),
		subject: fs.String("subject", "", ""), status: fs.String("status", "", ""),
		account: fs.String("account", "", ""), messageID: fs.String("message-id", "", ""),
		direction: fs.String("direction", "", ""), limit: fs.Int("limit", 0, ""),
	}
}

// query builds the archive query, checking every value.
func (f *queryFlags) query() (archive.Query, error) {
	q := archive.Query{
		From: *f.from, To: *f.to, Subject: *f.subject, Status: *f.status,
		Account: *f.account, MessageID: *f.messageID, Direction: *f.direction, Limit: *f.limit,
	}
	var err error
	if *f.since != "" {
		if q.Since, _, err = parseDate(*f.since); err != nil {
			return q, fmt.Errorf("--since: %v", err)
		}
	}
	if *f.until != "" {
		var day bool
		if q.Until, day, err = parseDate(*f.until); err != nil {
			return q, fmt.Errorf("--until: %v", err)
		}
		if day {
			q.Until = q.Until.AddDate(0, 0, 1) // the whole day is included
		}
	}
	if err := q.Check(); err != nil {
		return q, err
	}
	return q, nil
}

// parseDate reads YYYY-MM-DD (midnight UTC, day == true) or RFC 3339.
func parseDate(s string) (t time.Time, day bool, err error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, true, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, false, nil
	}
	return time.Time{}, false, fmt.Errorf("%q is neither YYYY-MM-DD nor an RFC 3339 time", s)
}

// parseID reads a record id as list shows it.
func parseID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("%q is not a record id (a number as archive list shows it)", s)
	}
	return id, nil
}

const archiveListUsage = `Usage: smimed archive list [FILTERS] [--expired] [--json] [--config FILE]

Lists the archived messages (the current version of each), newest first:
ID, arrival time (UTC), status, From and Subject, shortened to fit a line.
With --json, one record per line with every field of the index (class and
retain_until among them). Restricted messages are not listed (but to an
auditor).

  --expired          only messages whose retention has ended (retain-until
                     passed) and that are neither held nor restricted:
                     what "archive purge --plan" would list
  --json             one JSON object per record, one per line
  --config FILE      configuration file (default /etc/smimed/smimed.toml)
` + archiveFilterHelp

// Column widths of the text listing (in characters).
const (
	listFromWidth    = 32
	listSubjectWidth = 60
)

func archiveList(args []string, stdout, stderr io.Writer) int {
	s := newArchiveSession("archive list", stdout, stderr)
	qf := addQueryFlags(s.fs)
	asJSON := s.fs.Bool("json", false, "")
	expired := s.fs.Bool("expired", false, "")
	if _, code, done := s.parse(args, archiveListUsage, 0); done {
		return code
	}
	q, err := qf.query()
	if err != nil {
		return s.usagef("%v", err)
	}
	q.Expired = *expired
	return s.with(false, func(ctx context.Context, api admin.ArchiveAPI, _ *config.Config) int {
		enc := jsonLines(stdout)
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		if !*asJSON {
			fmt.Fprintln(tw, "ID\tRECEIVED (UTC)\tSTATUS\tFROM\tSUBJECT")
		}
		err := api.List(ctx, q, func(r *archive.Record) error {
			if *asJSON {
				return enc.Encode(r)
			}
			status := strings.Join(r.Status, ",")
			if status == "" {
				status = "-"
			}
			from, subject := r.From, r.Subject
			if r.PlaintextFile == "" {
				from, subject = "-", "(not fetched: "+r.Error+")"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", r.ID, listTime(r), status,
				cut(clean(from), listFromWidth), cut(clean(subject), listSubjectWidth))
			return nil
		})
		if ferr := tw.Flush(); err == nil {
			err = ferr
		}
		if err != nil {
			return s.failf("%v", err)
		}
		return exitOK
	})
}

// listTime is a record's arrival time as the listings show it.
func listTime(r *archive.Record) string { return r.When().UTC().Format("2006-01-02 15:04") }

// cut shortens s to at most n characters, marking the cut with "…".
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

const archiveShowUsage = `Usage: smimed archive show ID [--original | --record] [--config FILE]

Writes message ID (as archive list shows it) to stdout: the plaintext, or
with --original the bytes as they were fetched (for outgoing mail: as
sent). Both are checked against the SHA-256 in the index first; an altered
file is refused (exit 1). With --record, the record instead: one field a
line, for outgoing mail the envelope, the policy's decision and reasons,
the signer and the certificates and algorithms encrypted to.

  --original      the original (still encrypted) message
  --record        the record's fields, not the message
  --config FILE   configuration file (default /etc/smimed/smimed.toml)
`

func archiveShow(args []string, stdout, stderr io.Writer) int {
	s := newArchiveSession("archive show", stdout, stderr)
	original := s.fs.Bool("original", false, "")
	record := s.fs.Bool("record", false, "")
	id, code, done := s.parseID(args, archiveShowUsage)
	if done {
		return code
	}
	if *original && *record {
		return s.usagef("--original and --record exclude each other")
	}
	return s.with(false, func(ctx context.Context, api admin.ArchiveAPI, _ *config.Config) int {
		if *record {
			r, err := api.Get(ctx, id)
			if err != nil {
				return s.failf("%v", err)
			}
			printRecord(stdout, r)
			return exitOK
		}
		if err := api.Message(ctx, id, *original, stdout); err != nil {
			return s.failf("%v", err)
		}
		return exitOK
	})
}

const archiveFailedUsage = `Usage: smimed archive failed [--json] [--config FILE]

Lists every message that could not be decrypted (current version), newest
first, with the recipients it was encrypted to: issuer and serial number
or subject key identifier of each. Find the key that matches one, add it
to [[keys]] and run "smimed archive retry".

  --json          one JSON record per line (field "recipients")
  --config FILE   configuration file (default /etc/smimed/smimed.toml)
`

func archiveFailed(args []string, stdout, stderr io.Writer) int {
	s := newArchiveSession("archive failed", stdout, stderr)
	asJSON := s.fs.Bool("json", false, "")
	if _, code, done := s.parse(args, archiveFailedUsage, 0); done {
		return code
	}
	return s.with(false, func(ctx context.Context, api admin.ArchiveAPI, _ *config.Config) int {
		enc := jsonLines(stdout)
		ctx = admin.WithAuditCommand(ctx, admin.CommandFailed)
		n := 0
		err := api.List(ctx, archive.Query{Status: archive.StatusUndecryptable}, func(r *archive.Record) error {
			if *asJSON {
				return enc.Encode(r)
			}
			n++
			fmt.Fprintf(stdout, "%d  %s  %s\n", r.ID, listTime(r), clean(r.From))
			for _, rc := range r.Recipients {
				fmt.Fprintf(stdout, "    needs: %s\n", clean(rc))
			}
			if len(r.Recipients) == 0 {
				fmt.Fprintf(stdout, "    needs: (no recipient could be read) %s\n", clean(r.Decryption.Error))
			}
			return nil
		})
		if err != nil {
			return s.failf("%v", err)
		}
		if n > 0 {
			fmt.Fprintln(stdout, "(issuer and serial as `openssl x509 -noout -issuer -serial -in CERT` prints a certificate; `smimed keys list` shows the configured keys)")
		}
		return exitOK
	})
}

const archiveRetryUsage = `Usage: smimed archive retry [ID...] [--all-untrusted | --revoked-since DATE] [--config FILE]

Runs the engine again, with the keys now configured, on the stored
original of each message ID (without IDs: every undecryptable message).
A message whose outcome changes gets a new record that supersedes the old
one (the old stays in the chain). Prints per message what changed
against the version it supersedes:
  ID: decrypted now (new record N)                 was not decrypted before
  ID: verdict untrusted → valid (new record N)     the signature verdicts
  ID: decrypted now, verdict none → valid (new record N)
  ID: still undecryptable (new record N)           other recipients than before
  ID: status A → B (new record N)                  another change
  ID: unchanged
  ID: error ...
Exit 1 if any message gave an error.

With --all-untrusted (and no IDs): every message with an untrusted
signature is judged again (after "smimed certs trust", say), and each line
says what changed:
  ID: verdict untrusted → valid (new record N)
  ID: unchanged (untrusted)

With --revoked-since DATE (and no IDs): every message that arrived on or
after DATE with a signature whose chain held (valid, partial, mismatch) is
judged again, after a revocation became known (a CRL imported or fetched):
  ID: verdict valid → revoked (new record N)

  --all-untrusted       every message that has a signature judged untrusted
  --revoked-since DATE  every message since DATE (YYYY-MM-DD in UTC, or RFC 3339) whose signature held
  --config FILE         configuration file (default /etc/smimed/smimed.toml)
`

func archiveRetry(args []string, stdout, stderr io.Writer) int {
	s := newArchiveSession("archive retry", stdout, stderr)
	allUntrusted := s.fs.Bool("all-untrusted", false, "")
	revokedSince := s.fs.String("revoked-since", "", "")
	pos, code, done := s.parse(args, archiveRetryUsage, -1)
	if done {
		return code
	}
	switch {
	case *allUntrusted && *revokedSince != "":
		return s.usagef("--all-untrusted and --revoked-since: give one")
	case *allUntrusted:
		return archiveRetryUntrusted(s, pos)
	case *revokedSince != "":
		return archiveRetryRevoked(s, pos, *revokedSince)
	}
	var ids []uint64
	for _, p := range pos {
		id, err := parseID(p)
		if err != nil {
			return s.usagef("%v", err)
		}
		ids = append(ids, id)
	}
	return s.with(true, func(ctx context.Context, api admin.ArchiveAPI, _ *config.Config) int {
		n, exit := 0, exitOK
		err := api.Retry(ctx, ids, func(res admin.RetryResult) error {
			n++
			switch {
			case res.Error != "":
				exit = exitFailed
				fmt.Fprintf(stdout, "%d: error %s\n", res.ID, clean(res.Error))
			case !res.Changed:
				fmt.Fprintf(stdout, "%d: unchanged\n", res.ID)
			default:
				fmt.Fprintf(stdout, "%d: %s (new record %d)\n", res.ID, clean(res.Change), res.Record.ID)
			}
			return nil
		})
		if err != nil {
			return s.failf("%v", err)
		}
		if n == 0 {
			fmt.Fprintln(stdout, "nothing to retry: no undecryptable messages")
		}
		return exit
	})
}

func plural(n int, word string) string {
	switch n {
	case 0:
		return "no " + word + "s"
	case 1:
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// progress draws "LABEL done/total" on a terminal, redrawn at most every
// 100 ms; on anything else it stays silent.
type progress struct {
	w     io.Writer // nil: not a terminal
	label string
	last  time.Time
	drawn bool
}

func newProgress(stderr io.Writer, label string) *progress {
	p := &progress{label: label}
	if isTerminal(stderr) {
		p.w = stderr
	}
	return p
}

// on reports whether progress is shown (so callers may count ahead).
func (p *progress) on() bool { return p.w != nil }

func (p *progress) update(done, total int) {
	if p.w == nil || (time.Since(p.last) < 100*time.Millisecond && done != total) {
		return
	}
	p.last = time.Now()
	p.drawn = true
	if total > 0 {
		fmt.Fprintf(p.w, "\r%s %d/%d (%d%%)\x1b[K", p.label, done, total, done*100/total)
	} else {
		fmt.Fprintf(p.w, "\r%s %d\x1b[K", p.label, done)
	}
}

// finish erases the progress line.
func (p *progress) finish() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

const archiveAuditUsage = `Usage: smimed archive audit [--since DATE] [--json] [--config FILE]

Lists who read the archive, oldest first: time, user (uid, gid, pid),
whether through the daemon's control socket or directly, the action and
its detail (query or record ids, never message content). Listing the log
is itself recorded.

  --since DATE    entries on or after DATE (YYYY-MM-DD in UTC, or RFC 3339)
  --json          one entry per line as JSON
  --config FILE   configuration file (default /etc/smimed/smimed.toml)
`

func archiveAudit(args []string, stdout, stderr io.Writer) int {
	s := newArchiveSession("archive audit", stdout, stderr)
	asJSON := s.fs.Bool("json", false, "")
	since := s.fs.String("since", "", "")
	if _, code, done := s.parse(args, archiveAuditUsage, 0); done {
		return code
	}
	var from time.Time
	if *since != "" {
		var err error
		if from, _, err = parseDate(*since); err != nil {
			return s.usagef("--since: %v", err)
		}
	}
	return s.with(false, func(ctx context.Context, api admin.ArchiveAPI, _ *config.Config) int {
		enc := jsonLines(stdout)
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		err := api.Audit(ctx, from, func(e archive.AuditEntry) error {
			if *asJSON {
				return enc.Encode(e)
			}
			who := e.User
			if who == "" {
				who = "uid " + strconv.Itoa(e.UID)
			}
			_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Time.UTC().Format("2006-01-02 15:04:05"), clean(who), e.Via, e.Action, clean(e.Detail))
			return err
		})
		tw.Flush()
		if err != nil {
			return s.failf("%v", err)
		}
		return exitOK
	})
}
