package main

// This file is `smimed status`: what the running daemon says about every
// account and folder, asked over its control socket. With no daemon it
// says so (exit 1) and still shows how far each folder got: the
// checkpoints in the store, opened read-only.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/archive/worm"
	"github.com/smimed/smimed/daemon"
	"github.com/smimed/smimed/daemon/admin"
	"github.com/smimed/smimed/daemon/config"
)

const statusUsage = `Usage: smimed status [--json] [--config FILE]

What the running smimed says about every account and folder: connected,
or why not and when it retries (with the last error); the checkpoint
(UIDVALIDITY and the UID up to which everything is done); the backlog;
the messages processed since it started, by outcome; the last check.
For a folder with a backlog: how far it got, the messages left, the
rate over the last minute and the estimated time to go (with a progress
bar when stdout is a terminal).
Without a running daemon: exit 1, with the checkpoints of the store.

  --json          one JSON object
  --config FILE   configuration file (default /etc/smimed/smimed.toml)
`

// statusTimeout bounds the daemon's answer.
const statusTimeout = 30 * time.Second

// statusOutcomes is the order outcomes are listed in.
var statusOutcomes = []string{
	daemon.OutcomeDecrypted, daemon.OutcomeUndecryptable, daemon.OutcomeSigned,
	daemon.OutcomePlain, daemon.OutcomeError, daemon.OutcomeTooLarge,
}

func statusMain(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("status")
	asJSON := fs.Bool("json", false, "one JSON object")
	configPath := fs.String("config", "", "configuration file")
	pos, code, done := parseFlags(fs, args, stdout, stderr, statusUsage)
	if done {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "smimed status: unexpected argument %q\n", pos[0])
		return exitUsage
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "smimed: %v\n", err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	st, err := admin.QueryStatus(ctx, cfg)
	if err != nil && !errors.Is(err, admin.ErrNoDaemon) {
		fmt.Fprintf(stderr, "smimed status: %v\n", err)
		return exitFailed
	}
	code = exitOK
	var storeErr error
	if err != nil {
		// No daemon: say so, and show what the store knows.
		code = exitFailed
		st = &admin.DaemonStatus{
			StateDir: cfg.StateDir,
			Error:    fmt.Sprintf("smimed is not running (no control socket answered at %s)", strings.Join(cfg.ControlSocketPaths(), ", ")),
		}
		fmt.Fprintln(stderr, st.Error)
		if st.Folders, st.Worm, storeErr = statusStored(cfg, stderr); storeErr != nil {
			fmt.Fprintf(stderr, "smimed status: %v\n", storeErr)
		}
	}
	if st.Folders == nil {
		st.Folders = []admin.FolderStatus{} // [] rather than null in JSON
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		err = enc.Encode(st)
	} else if st.Running {
		err = statusPrint(stdout, st, time.Now(), isTerminal(stdout))
	} else if storeErr == nil {
		err = statusPrintCheckpoints(stdout, cfg.StorePath(), st.Folders)
		statusPrintWorm(stdout, st.Worm)
	}
	if err != nil {
		fmt.Fprintf(stderr, "smimed status: %v\n", err)
		return exitFailed
	}
	return code
}

// statusStored reads what cfg's state file (opened once, read-only) says
// without the service: the checkpoints and, with [archive.worm], the WORM
// copy's backlog (no counters). A backlog that cannot be read is said on
// stderr and left out.
func statusStored(cfg *config.Config, stderr io.Writer) ([]admin.FolderStatus, *admin.WormStatus, error) {
	env, err := admin.Open(cfg, admin.Read)
	if err != nil {
		return nil, nil, err
	}
	defer env.Close()
	folders, err := daemon.StoreCheckpoints(env.State)
	if err != nil || cfg.Archive.Worm == nil {
		return folders, nil, err
	}
	a, err := archive.Open(cfg.ArchiveDir(), env.State)
	if err != nil {
		fmt.Fprintf(stderr, "smimed status: %v\n", err)
		return folders, nil, nil
	}
	bl, err := worm.ReadBacklog(a, env.State)
	if err != nil {
		fmt.Fprintf(stderr, "smimed status: the WORM outbox: %v\n", err)
		return folders, nil, nil
	}
	return folders, &admin.WormStatus{Bucket: cfg.Archive.Worm.Bucket, Backlog: bl, Offline: true}, nil
}

// statusPrint writes a running daemon's status as a table, the folders'
// backlogs (with a progress bar when bar is set) and last errors below it.
func statusPrint(w io.Writer, st *admin.DaemonStatus, now time.Time, bar bool) error {
	version := st.Version
	if version == "" {
		version = "(version unknown)"
	}
	uptime := time.Duration(st.UptimeSeconds) * time.Second
	fmt.Fprintf(w, "smimed %s, up %s, state_dir %s, socket %s\n\n", version, uptime, clean(st.StateDir), clean(st.Socket))
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCOUNT\tFOLDER\tSTATE\tUIDVALIDITY\tCHECKPOINT\tBACKLOG\tPROCESSED\tLAST_CHECK")
	var errs []string
	for _, f := range st.Folders {
		state := f.Describe(now)
		if f.State == admin.FolderStopped {
			state = "stopped" // the error follows the table
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", clean(f.Account), clean(f.Folder), state,
			statusUIDValidity(f), statusCheckpointUID(f), f.Backlog, statusProcessed(f), statusTime(f.LastCheck))
		if f.LastError != "" && !f.Connected {
			e := fmt.Sprintf("%s/%s: %s (%s)", clean(f.Account), clean(f.Folder), clean(f.LastError), statusTime(f.LastErrorAt))
			if !f.RetryAt.IsZero() {
				e += "; next retry " + statusTime(f.RetryAt)
			}
			errs = append(errs, e)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := statusPrintBacklogs(w, st.Folders, bar); err != nil {
		return err
	}
	if g := st.Gateway; g != nil {
		m := g.Messages
		fmt.Fprintf(w, "\ngateway: %s on %s, relay %s, %d sessions open; messages: %d signed, %d encrypted, %d signed+encrypted, %d passed, %d refused, %d failed; %d relay errors\n",
			clean(g.Mode), clean(g.Listen), clean(g.Relay), g.Sessions, m["signed"], m["encrypted"], m["signed_encrypted"], m["passed"], m["refused"], m["failed"], g.RelayErrors)
	}
	statusPrintWorm(w, st.Worm)
	if len(errs) > 0 {
		fmt.Fprintf(w, "\nlast errors:\n  %s\n", strings.Join(errs, "\n  "))
	}
	statusPrintSeals(w, st.Seals)
	return nil
}

// statusPrintSeals writes the sealer's lines: the last seal, the records
// after it, the seals that lack timestamps, and each TSA.
func statusPrintSeals(w io.Writer, s *admin.SealStatus) {
	if s == nil {
		return
	}
	last := "none yet"
	if s.LastSeal != 0 {
		last = fmt.Sprintf("record %d", s.LastSeal)
	}
	fmt.Fprintf(w, "\nseals: last %s, %s not yet sealed, %s waiting for timestamps (require %d)\n",
		last, plural(int(s.Unsealed), "record"), plural(s.Pending, "seal"), s.Require)
	for _, t := range s.TSAs {
		line := fmt.Sprintf("  %s: %d answered, %d failed", clean(t.URL), t.Answered, t.Failed)
		if t.LastError != "" {
			line += fmt.Sprintf("; last error %s (%s)", clean(t.LastError), statusTime(t.LastErrorAt))
		}
		if !t.RetryAt.IsZero() {
			line += "; next retry " + statusTime(t.RetryAt)
		}
		fmt.Fprintln(w, line)
	}
}

// statusPrintWorm writes the WORM copy's backlog and counters, if there
// is a WORM copy:
//
//	WORM copy (bucket smimed-archive): 12 objects and 0 legal holds waiting (oldest queued 2026-12-03T15:00:00Z), 3 records not yet queued; since start 1520 uploaded, 2 failures
//	  last error: worm: put originals/…: …
func statusPrintWorm(w io.Writer, ws *admin.WormStatus) {
	if ws == nil {
		return
	}
	b := ws.Backlog
	since := fmt.Sprintf("since start %d uploaded, %d failures", ws.Stats.Uploaded, ws.Stats.Failures)
	if ws.Offline {
		since = "not uploading: the service is not running"
	}
	fmt.Fprintf(w, "\nWORM copy (bucket %s): %d objects and %d legal holds waiting (oldest queued %s), %d records not yet queued; %s\n",
		clean(ws.Bucket), b.Objects, b.Holds, statusTime(b.Oldest), b.Unqueued, since)
	if b.LastError != "" {
		fmt.Fprintf(w, "  last error: %s\n", clean(b.LastError))
	}
}

// statusBarWidth is the number of cells in a backlog's progress bar.
const statusBarWidth = 30

// statusPrintBacklogs writes a line for each folder with a backlog: how
// far it got since the backlog was first listed, the messages left, the
// rate over the last minute and the time to go, for example
//
//	ceo/INBOX  [######------------------------]   21%  157800 of 200000 left  412.5/s  ETA 6m23s
//
// The bar only when bar is set (stdout is a terminal).
func statusPrintBacklogs(w io.Writer, folders []admin.FolderStatus, bar bool) error {
	var lines []string
	for _, f := range folders {
		if f.Backlog <= 0 {
			continue
		}
		total := max(f.BacklogTotal, f.Backlog) // an older daemon sends no total
		done := total - f.Backlog
		line := clean(f.Account) + "/" + clean(f.Folder) + "\t"
		if bar {
			filled := done * statusBarWidth / total
			line += "[" + strings.Repeat("#", filled) + strings.Repeat("-", statusBarWidth-filled) + "]\t"
		}
		line += fmt.Sprintf("%3d%%\t%d of %d left\t%.1f/s\t", done*100/total, f.Backlog, total, f.RatePerSecond)
		if f.ETASeconds > 0 {
			line += "ETA " + statusETA(time.Duration(f.ETASeconds)*time.Second)
		} else {
			line += "ETA unknown (nothing done in the last minute)"
		}
		lines = append(lines, line)
	}
	if len(lines) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nbacklog:")
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, l := range lines {
		fmt.Fprintf(tw, "  %s\n", l)
	}
	return tw.Flush()
}

// statusETA writes d to the second below an hour (4m05s), to the minute
// below a day (3h07m), else to the hour (2d05h).
func statusETA(d time.Duration) string {
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
}

// statusPrintCheckpoints writes the store's checkpoints as a table.
func statusPrintCheckpoints(w io.Writer, storePath string, folders []admin.FolderStatus) error {
	if len(folders) == 0 {
		_, err := fmt.Fprintf(w, "no checkpoints in %s\n", clean(storePath))
		return err
	}
	fmt.Fprintf(w, "checkpoints in %s:\n", clean(storePath))
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCOUNT\tFOLDER\tUIDVALIDITY\tCHECKPOINT")
	for _, f := range folders {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", clean(f.Account), clean(f.Folder), statusUIDValidity(f), statusCheckpointUID(f))
	}
	return tw.Flush()
}

func statusUIDValidity(f admin.FolderStatus) string {
	if f.UIDValidity == 0 {
		return "-"
	}
	return fmt.Sprint(f.UIDValidity)
}

func statusCheckpointUID(f admin.FolderStatus) string {
	if f.UIDValidity == 0 {
		return "-"
	}
	return fmt.Sprint(f.CheckpointUID)
}

// statusProcessed is the count with its outcomes: "3 (2 decrypted, 1 signed)".
func statusProcessed(f admin.FolderStatus) string {
	var parts []string
	for _, o := range statusOutcomes {
		if n := f.Outcomes[o]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, o))
		}
	}
	if len(parts) == 0 {
		return fmt.Sprint(f.Processed)
	}
	return fmt.Sprintf("%d (%s)", f.Processed, strings.Join(parts, ", "))
}

func statusTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
