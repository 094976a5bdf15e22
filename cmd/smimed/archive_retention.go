package main

// This file is `smimed archive hold|restrict|purge`: legal holds, GDPR
// restrictions and purges of what retention lets go (docs/retention.md).

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/admin"
	"github.com/smimed/smimed/daemon/config"
)

const archiveHoldUsage = `Usage: smimed archive hold add CASE (FILTERS | --all) [--reason TEXT] [--config FILE]
       smimed archive hold remove CASE [--config FILE]
       smimed archive hold list [--json] [--config FILE]

A legal hold keeps every message its filters match (also mail archived
later) from being purged, whatever its retention says. A message may be
held by several cases. Adding and removing a hold is audited; only root
and the service user may (auditors may not list holds).

  --all           add: hold every message (no filters)
  --reason TEXT   add: why (kept with the hold)
  --json          list: one JSON object per hold
  --config FILE   configuration file (default /etc/smimed/smimed.toml)

FILTERS (add):
` + archiveFilterHelp

// archiveHold is `archive hold`: pre are the flags given before "hold",
// args what follows it (the subcommand first).
func archiveHold(pre, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "--help" || args[0] == "-h" || args[0] == "-help") {
			fmt.Fprint(stdout, archiveHoldUsage)
			return exitOK
		}
		fmt.Fprintln(stderr, "smimed archive hold: want add, remove or list (see smimed archive hold --help)")
		return exitUsage
	}
	sub, rest := args[0], append(append([]string{}, pre...), args[1:]...)
	s := newArchiveSession("archive hold "+sub, stdout, stderr)
	switch sub {
	case "add":
		qf := addQueryFlags(s.fs)
		all := s.fs.Bool("all", false, "")
		reason := s.fs.String("reason", "", "")
		name, code, done := s.parseOne(rest, archiveHoldUsage, "CASE")
		if done {
			return code
		}
		q, err := qf.query()
		if err != nil {
			return s.usagef("%v", err)
		}
		if q.Limit != 0 {
			return s.usagef("--limit makes no sense for a hold")
		}
		if (q == archive.Query{}) != *all {
			return s.usagef("give filters, or --all to hold every message")
		}
		return s.with(false, func(ctx context.Context, api admin.ArchiveAPI, _ *config.Config) int {
			n, err := api.HoldAdd(ctx, name, q, *reason)
			if err != nil {
				return s.failf("%v", err)
			}
			fmt.Fprintf(stdout, "hold %s added: it holds %s now (and matching mail archived later)\n", clean(name), plural(n, "message"))
			return exitOK
		})
	case "remove":
		name, code, done := s.parseOne(rest, archiveHoldUsage, "CASE")
		if done {
			return code
		}
		return s.with(false, func(ctx context.Context, api admin.ArchiveAPI, _ *config.Config) int {
			n, err := api.HoldRemove(ctx, name)
			if err != nil {
				return s.failf("%v", err)
			}
			fmt.Fprintf(stdout, "hold %s removed: %s no longer held by any case\n", clean(name), plural(n, "message"))
			return exitOK
		})
	case "list":
		asJSON := s.fs.Bool("json", false, "")
		if _, code, done := s.parse(rest, archiveHoldUsage, 0); done {
			return code
		}
		return s.with(false, func(ctx context.Context, api admin.ArchiveAPI, _ *config.Config) int {
			hs, err := api.Holds(ctx)
			if err != nil {
				return s.failf("%v", err)
			}
			enc := jsonLines(stdout)
			tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
			if !*asJSON {
				fmt.Fprintln(tw, "CASE\tADDED (UTC)\tBY\tFILTERS\tREASON")
			}
			for _, h := range hs {
				if *asJSON {
					enc.Encode(h)
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", clean(h.Case), h.At.UTC().Format("2006-01-02 15:04"), clean(h.By), clean(admin.QueryDetail(h.Query)), clean(h.Reason))
			}
			tw.Flush()
			return exitOK
		})
	}
	return s.usagef("unknown subcommand %q: want add, remove or list", sub)
}

const archiveRestrictUsage = `Usage: smimed archive restrict ID --reason TEXT [--config FILE]
       smimed archive restrict ID --lift [--config FILE]

Restricts message ID (GDPR art. 18: kept, but not used): it is hidden from
every list, show and export but an auditor's, and never purged, until its
retention ends (its retain-until). Then it is purged like any other
expired message: the erasure GDPR asks for. --lift ends a restriction
early. Both are audited; only root and the service user may. A message
whose retention has ended is purged, not restricted.

  --reason TEXT   why (the request it answers); required unless --lift
  --lift          end the restriction
  --config FILE   configuration file (default /etc/smimed/smimed.toml)
`

func archiveRestrict(args []string, stdout, stderr io.Writer) int {
	s := newArchiveSession("archive restrict", stdout, stderr)
	reason := s.fs.String("reason", "", "")
	lift := s.fs.Bool("lift", false, "")
	id, code, done := s.parseID(args, archiveRestrictUsage)
	if done {
		return code
	}
	switch {
	case *lift && *reason != "":
		return s.usagef("--lift takes no --reason")
	case !*lift && strings.TrimSpace(*reason) == "":
		return s.usagef("missing --reason")
	}
	return s.with(false, func(ctx context.Context, api admin.ArchiveAPI, _ *config.Config) int {
		x, err := api.Restrict(ctx, id, *reason, *lift)
		if err != nil {
			return s.failf("%v", err)
		}
		if *lift {
			fmt.Fprintf(stdout, "record %d: restriction lifted (it was restricted by %s on %s: %s)\n", id, clean(x.By), x.At.UTC().Format(time.DateOnly), clean(x.Reason))
		} else {
			fmt.Fprintf(stdout, "record %d: restricted until %s (the end of its retention)\n", id, x.Until.UTC().Format(time.DateOnly))
		}
		return exitOK
	})
}

const archivePurgeUsage = `Usage: smimed archive purge --plan [--json] [--config FILE]
       smimed archive purge --approve PLAN [--config FILE]

Deletes messages whose retention has ended, in two steps by two people.
--plan lists every message whose retain-until has passed and that is
neither held nor restricted, writes the plan to state_dir/purge/PLAN.json
and prints it. --approve PLAN, run by another person (another login: two
admins who both use sudo are two people, one admin is one whatever uid
they switch to), checks every message again (a hold or restriction added
since, or a message changed, makes the plan stale: make a new one),
deletes the original and plaintext files and the index entries, and
appends a tombstone record to the chain naming what was deleted (record
hashes and file digests), the dates, the planner and the approver.
"archive verify" passes after a purge and lists each purge's gap. Both
steps are audited; only root and the service user may run them.

  --plan          make a plan and print it
  --approve PLAN  carry out plan PLAN (made by someone else)
  --json          --plan: the plan as one JSON object
  --config FILE   configuration file (default /etc/smimed/smimed.toml)
`

func archivePurge(args []string, stdout, stderr io.Writer) int {
	s := newArchiveSession("archive purge", stdout, stderr)
	plan := s.fs.Bool("plan", false, "")
	approve := s.fs.String("approve", "", "")
	asJSON := s.fs.Bool("json", false, "")
	if _, code, done := s.parse(args, archivePurgeUsage, 0); done {
		return code
	}
	if *plan == (*approve != "") {
		return s.usagef("give --plan or --approve PLAN")
	}
	return s.with(false, func(ctx context.Context, api admin.ArchiveAPI, _ *config.Config) int {
		if *approve != "" {
			t, err := api.PurgeApprove(ctx, *approve)
			if t != nil {
				ts := t.Tombstone
				fmt.Fprintf(stdout, "plan %s carried out: %s purged, tombstone record %d (planned by %s, approved by %s)\n",
					ts.Plan, plural(len(ts.Purged), "record"), t.ID, clean(ts.Planner.String()), clean(ts.Approver.String()))
			}
			if err != nil {
				return s.failf("%v", err)
			}
			return exitOK
		}
		p, err := api.PurgePlan(ctx)
		if err != nil {
			return s.failf("%v", err)
		}
		if *asJSON {
			jsonLines(stdout).Encode(p)
			return exitOK
		}
		if len(p.Records) == 0 {
			fmt.Fprintln(stdout, "nothing to purge: no message's retention has ended that is not held or restricted")
			return exitOK
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tRECEIVED (UTC)\tCLASS\tRETAIN UNTIL\tVERSIONS\tORIGINAL SHA-256")
		for _, it := range p.Records {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\n", it.ID, it.Received.UTC().Format("2006-01-02 15:04"), clean(it.Class), it.RetainUntil.UTC().Format(time.DateOnly), len(it.Versions), it.OriginalSHA256)
		}
		tw.Flush()
		fmt.Fprintf(stdout, "plan %s by %s: %s may be purged.\nAnother person approves it with: smimed archive purge --approve %s\n", p.ID, clean(p.Planner.String()), plural(len(p.Records), "message"), p.ID)
		return exitOK
	})
}
