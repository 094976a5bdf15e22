package main

// This file is `smimed archive export`: the messages a query selects,
// written to an mbox (mboxrd) or a Maildir that any mail reader opens.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/admin"
	"github.com/smimed/smimed/daemon/config"
)

const archiveExportUsage = `Usage: smimed archive export [FILTERS] [--format mbox|maildir] --out PATH [--original] [--force] [--config FILE]
       smimed archive export [FILTERS] --evidence --out DIR [--config FILE]

Writes the messages that FILTERS select (as archive list would show them,
newest first) to PATH: their plaintexts, each with its verdict on top as
the user's copy has it (X-Smimed-Record, Authentication-Results,
X-Smimed-Decryption, X-Smimed-Signer; fields of the message claiming our
authserv-id removed), or with --original the bytes as they were fetched. Prints "exported N messages to PATH" at the end, and a
progress line on stderr when that is a terminal.

  --format mbox   (default) one file in mboxrd format: each message after
                  a "From SENDER DATE" line (the From address, the arrival
                  time in UTC), every line that starts with "From " or
                  ">From ", ">>From " ... gets one more ">", every CRLF
                  becomes LF (a message without a final line break gets
                  one), and a blank line follows each message. PATH must
                  not exist or be empty; --force replaces it. It is
                  written beside PATH and renamed into place when complete.
  --format maildir
                  a Maildir: PATH/tmp, PATH/new, PATH/cur are created, and
                  each message is written to tmp/ and moved to new/ under
                  a unique name, byte for byte as archived. PATH may be
                  missing, empty or a Maildir (messages are added).
  --out PATH      where to write (required)
  --original      the originals (still encrypted) instead of the plaintexts
  --force         mbox: replace a non-empty PATH
  --evidence      a directory DIR (missing or empty) an auditor checks
                  without smimed: messages/ID.eml (the plaintexts as
                  archived), records/ID.json, proofs/ID.proof, seals/
                  (statements, timestamps and TSA certificates),
                  tsa/ca.pem, manifest.csv and VERIFY.sh, which needs only
                  bash, sha256sum and openssl (docs/evidence.md). Records
                  not sealed yet are left out with a note.
  --config FILE   configuration file (default /etc/smimed/smimed.toml)

Messages that were never fetched (too large) have no bytes and are
skipped with a note. Files are created with mode 0600: they hold plaintext.

FILTERS:
` + archiveFilterHelp

// exportTarget receives the exported messages.
type exportTarget interface {
	add(it exportItem, msg []byte) error
	// commit makes the export complete and durable.
	commit() error
	// abort removes what is not complete.
	abort()
}

// exportItem is what export keeps of a record between listing and writing.
type exportItem struct {
	id      uint64
	from    string
	when    time.Time
	fetched bool
	rec     *archive.Record
}

func archiveExport(args []string, stdout, stderr io.Writer) int {
	s := newArchiveSession("archive export", stdout, stderr)
	qf := addQueryFlags(s.fs)
	format := s.fs.String("format", "mbox", "")
	out := s.fs.String("out", "", "")
	original := s.fs.Bool("original", false, "")
	force := s.fs.Bool("force", false, "")
	evidence := s.fs.Bool("evidence", false, "")
	if _, code, done := s.parse(args, archiveExportUsage, 0); done {
		return code
	}
	switch {
	case *out == "":
		return s.usagef("missing --out PATH")
	case *evidence && (*original || *force || *format != "mbox"):
		return s.usagef("--evidence writes a directory of its own: no --format, --original or --force")
	case *format != "mbox" && *format != "maildir":
		return s.usagef("unknown --format %q: want mbox or maildir", *format)
	}
	q, err := qf.query()
	if err != nil {
		return s.usagef("%v", err)
	}
	switch {
	case *evidence:
		err = checkEmptyDir(*out)
	case *format == "maildir":
		err = checkMaildirPath(*out)
	default:
		err = checkNewFile(*out, *force, true)
	}
	if err != nil {
		return s.failf("%v", err)
	}
	return s.with(false, func(ctx context.Context, api admin.ArchiveAPI, cfg *config.Config) int {
		// The list first, the messages after: the index is not held
		// while files are written, and the progress line knows the total.
		var items []exportItem
		err := api.List(ctx, q, func(r *archive.Record) error {
			items = append(items, exportItem{id: r.ID, from: r.From, when: r.When(), fetched: r.PlaintextFile != "", rec: r})
			return nil
		})
		if err != nil {
			return s.failf("%v", err)
		}
		if *evidence {
			return exportEvidence(ctx, s, api, cfg, items, *out)
		}
		var target exportTarget
		if *format == "maildir" {
			target, err = newMaildirTarget(*out)
		} else {
			target, err = newMboxTarget(*out)
		}
		if err != nil {
			return s.failf("%v", err)
		}
		n, code := exportItems(ctx, s, api, target, items, *original, cfg.Daemon.AuthservID)
		if ctx.Err() != nil {
			target.abort()
			return s.failf("interrupted after %s (an mbox is removed, a Maildir keeps them)", plural(n, "message"))
		}
		if err := target.commit(); err != nil {
			target.abort()
			return s.failf("%v", err)
		}
		fmt.Fprintf(stdout, "exported %s to %s\n", plural(n, "message"), *out)
		return code
	})
}

// exportItems writes each item's message to target, with a progress line
// on a terminal. A message that cannot be read is named on stderr and the
// others are written (exit 1); one never fetched is skipped with a note.
//
// A plaintext goes out as the user's copy does: with the verdict on top
// (Authentication-Results, X-Smimed-Decryption, X-Smimed-Signer, …, and
// X-Smimed-Record naming the record), and fields claiming our authserv-id
// that came with the message removed, so that an exported mail that was
// forged or tampered with reads differently from a genuine one. An
// original goes out byte for byte (its verdict is in archive show).
func exportItems(ctx context.Context, s *archiveSession, api admin.ArchiveAPI, target exportTarget, items []exportItem, original bool, authservID string) (n, code int) {
	bar := newProgress(s.stderr, "exporting")
	defer bar.finish()
	ctx = admin.WithAuditCommand(ctx, admin.CommandExport)
	var buf bytes.Buffer
	for i, it := range items {
		bar.update(i, len(items))
		if !it.fetched {
			bar.finish()
			fmt.Fprintf(s.stderr, "smimed %s: record %d skipped: the message was never fetched\n", s.name, it.id)
			continue
		}
		buf.Reset()
		err := api.Message(ctx, it.id, original, &buf)
		if err == nil {
			msg := buf.Bytes()
			if !original && it.rec != nil {
				msg = archive.ExportCopy(msg, it.rec, authservID)
			}
			err = target.add(it, msg)
		}
		if ctx.Err() != nil {
			return n, exitFailed
		}
		if err != nil {
			bar.finish()
			code = s.failf("record %d: %v", it.id, err)
			continue
		}
		n++
	}
	bar.update(len(items), len(items))
	return n, code
}

// checkNewFile refuses to replace a file unless force; an empty file is
// replaced without force when emptyOK.
func checkNewFile(path string, force, emptyOK bool) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.IsDir():
		return fmt.Errorf("%s is a directory", path)
	case force || (emptyOK && fi.Size() == 0):
		return nil
	case fi.Size() > 0:
		return fmt.Errorf("%s exists and is not empty (--force replaces it)", path)
	}
	return fmt.Errorf("%s exists (--force replaces it)", path)
}

// checkMaildirPath accepts a missing or empty directory, or a Maildir.
func checkMaildirPath(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("%s exists and is not a directory", path)
	}
	entries, err := os.ReadDir(path)
	if err != nil || len(entries) == 0 {
		return err
	}
	for _, d := range []string{"tmp", "new", "cur"} {
		if fi, err := os.Stat(filepath.Join(path, d)); err != nil || !fi.IsDir() {
			return fmt.Errorf("%s is neither empty nor a Maildir (it has no %s/)", path, d)
		}
	}
	return nil
}

// mboxTarget writes an mboxrd file beside its final name.
type mboxTarget struct {
	f *atomicFile
	w *bufio.Writer
}

func newMboxTarget(path string) (*mboxTarget, error) {
	f, err := createAtomic(path)
	if err != nil {
		return nil, err
	}
	return &mboxTarget{f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
}

// mboxDate is the date of a "From " line (asctime).
const mboxDate = "Mon Jan _2 15:04:05 2006"

func (m *mboxTarget) add(it exportItem, msg []byte) error {
	fmt.Fprintf(m.w, "From %s %s\n", envelopeSender(it.from), it.when.UTC().Format(mboxDate))
	writeMboxrd(m.w, msg)
	return m.w.WriteByte('\n')
}

// writeMboxrd writes msg with LF line ends and mboxrd quoting: a line
// matching ^>*From  gets one more ">". A last line without a line break
// gets one.
func writeMboxrd(w *bufio.Writer, msg []byte) {
	for len(msg) > 0 {
		line := msg
		if i := bytes.IndexByte(msg, '\n'); i >= 0 {
			line, msg = msg[:i], msg[i+1:]
		} else {
			msg = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if bytes.HasPrefix(bytes.TrimLeft(line, ">"), []byte("From ")) {
			w.WriteByte('>')
		}
		w.Write(line)
		w.WriteByte('\n')
	}
}

// envelopeSender is the address for a "From " line: the From address when
// it is one word of printable ASCII, else MAILER-DAEMON.
func envelopeSender(from string) string {
	if from == "" || len(from) > 256 || strings.IndexFunc(from, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0 {
		return "MAILER-DAEMON"
	}
	return from
}

func (m *mboxTarget) commit() error {
	if err := m.w.Flush(); err != nil {
		return err
	}
	return m.f.commit()
}

func (m *mboxTarget) abort() { m.f.abort() }

// maildirTarget delivers into a Maildir (tmp/ then new/).
type maildirTarget struct {
	dir  string
	host string
	pid  int
}

func newMaildirTarget(dir string) (*maildirTarget, error) {
	for _, d := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	// Maildir names must not contain "/" or ":".
	host = strings.NewReplacer("/", `\057`, ":", `\072`).Replace(host)
	return &maildirTarget{dir: dir, host: host, pid: os.Getpid()}, nil
}

// add writes msg to tmp/, syncs it and links it into new/ (a link never
// replaces an existing name), then removes the tmp/ name.
func (m *maildirTarget) add(it exportItem, msg []byte) error {
	name := fmt.Sprintf("%d.R%dP%d.%s", it.when.Unix(), it.id, m.pid, m.host)
	tmp := filepath.Join(m.dir, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(msg)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp, filepath.Join(m.dir, "new", name))
	}
	os.Remove(tmp)
	return err
}

func (m *maildirTarget) commit() error { return archive.SyncDir(filepath.Join(m.dir, "new")) }

// abort keeps what was delivered: each message in new/ is complete.
func (m *maildirTarget) abort() {}

// atomicFile is a file written as NAME.tmp (mode 0600) and renamed to
// NAME when complete, so NAME is never seen half-written.
type atomicFile struct {
	*os.File
	final string
}

func createAtomic(final string) (*atomicFile, error) {
	tmp := final + ".tmp"
	os.Remove(tmp) // the leftover of an interrupted run
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	return &atomicFile{File: f, final: final}, nil
}

// commit syncs the file, renames it into place and syncs the directory.
func (a *atomicFile) commit() error {
	err := a.Sync()
	if cerr := a.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(a.Name(), a.final)
	}
	if err != nil {
		os.Remove(a.Name())
		return err
	}
	return archive.SyncDir(filepath.Dir(a.final))
}

func (a *atomicFile) abort() {
	a.Close()
	os.Remove(a.Name())
}
