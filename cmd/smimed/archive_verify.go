package main

// smimed archive verify: the chain, the files, the seals and, with
// --evidence, the timestamps and the WORM copy.

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/archive/worm"
	"github.com/smimed/smimed/daemon/admin"
	"github.com/smimed/smimed/daemon/config"
)

const archiveVerifyUsage = `Usage: smimed archive verify [--evidence [--openssl]] [--json] [--config FILE]

Recomputes the hash chain over every index record and the SHA-256 of every
original and plaintext file, and every seal's Merkle root and links, and
prints each problem ("record N: FILE: what"), the number of records and
files checked, and the chain head: the last record's hash, the value to
publish or write down so that a later rewrite of the history can be told;
then one line per seal and the records not sealed yet. Each purge shows
as a gap ("gap: N records purged by plan …"): the purged records' hashes
are checked against their tombstone. Exit 0 when everything is intact, 1
when anything is missing or altered.

  --evidence      also judge every seal's timestamps: signature, the TSA's
                  certificate chain to [[archive.seal.tsa]] ca_file at the
                  timestamp's own time, and that it stamps the seal; a
                  seal counts as sealed with archive.seal.require good
                  ones. A changed record is named with the seal that
                  proves its original. With [archive.worm], also compare
                  the WORM copy with the local files: every object there,
                  with the local file's SHA-256, and locked.
  --openssl       with --evidence: check every timestamp with openssl ts
                  -verify too (at its own time, -attime) and report where
                  openssl and smimed disagree
  --json          one JSON object: records, files, head_id, head, problems,
                  purges, seals (id, first, last, sealed, tokens), unsealed
                  (with --evidence also worm: objects, pending, unqueued,
                  problems)
  --config FILE   configuration file (default /etc/smimed/smimed.toml)
`

func archiveVerify(args []string, stdout, stderr io.Writer) int {
	s := newArchiveSession("archive verify", stdout, stderr)
	asJSON := s.fs.Bool("json", false, "")
	evidence := s.fs.Bool("evidence", false, "")
	openssl := s.fs.Bool("openssl", false, "")
	if _, code, done := s.parse(args, archiveVerifyUsage, 0); done {
		return code
	}
	if *openssl && !*evidence {
		return s.usagef("--openssl needs --evidence")
	}
	return s.with(false, func(ctx context.Context, api admin.ArchiveAPI, cfg *config.Config) int {
		bar := newProgress(stderr, "verifying")
		var res *archive.VerifyResult
		var err error
		// Without TSAs there are no timestamps to judge; with a WORM
		// copy --evidence still compares it (and the seals' Merkle roots
		// and links are checked as by every verify).
		stamps := *evidence && (len(cfg.Archive.Seal.TSAs) > 0 || cfg.Archive.Worm == nil)
		if stamps {
			res, err = api.VerifyEvidence(ctx, *openssl, bar.update)
		} else {
			res, err = api.Verify(ctx, bar.update)
		}
		bar.finish()
		if err != nil {
			return s.failf("%v", err)
		}
		var wres *worm.VerifyResult
		if *evidence && cfg.Archive.Worm != nil {
			if wres, err = api.VerifyWorm(ctx); err != nil {
				return s.failf("%v", err)
			}
		}
		if *asJSON {
			out := struct {
				*archive.VerifyResult
				Worm *worm.VerifyResult `json:"worm,omitempty"`
			}{res, wres}
			if err := jsonLines(stdout).Encode(out); err != nil {
				return s.failf("%v", err)
			}
		} else {
			for _, p := range res.Problems {
				fmt.Fprintln(stdout, clean(p.String()))
			}
			for _, g := range res.Purges {
				fmt.Fprintf(stdout, "gap: %s purged by plan %s (tombstone record %d), planned by %s, approved by %s on %s\n",
					plural(len(g.Records), "record"), clean(g.Plan), g.Tombstone, clean(g.Planner.String()), clean(g.Approver.String()), g.ApprovedAt.UTC().Format(time.DateOnly))
			}
			fmt.Fprintf(stdout, "checked %d records, %d files: %s\n", res.Records, res.Files, plural(len(res.Problems), "problem"))
			if res.Records == 0 {
				fmt.Fprintln(stdout, "chain head: none (the archive is empty)")
			} else {
				fmt.Fprintf(stdout, "chain head: record %d sha256:%s\n", res.HeadID, res.Head)
			}
			printSeals(stdout, res, stamps)
			if *evidence && !stamps {
				fmt.Fprintln(stdout, "timestamps: not judged (no [[archive.seal.tsa]] configured)")
			}
			if *evidence {
				printWormVerify(stdout, cfg.Archive.Worm, wres)
			}
		}
		if !res.OK() || wres != nil && len(wres.Problems) > 0 {
			return exitFailed
		}
		return exitOK
	})
}

// printSeals says what verify found about the seals: one line per seal
// with its timestamps (when the evidence was checked), and the records
// not sealed yet.
func printSeals(w io.Writer, res *archive.VerifyResult, evidence bool) {
	if len(res.Seals) == 0 && !evidence {
		return // sealing never ran: nothing to say
	}
	for _, s := range res.Seals {
		line := fmt.Sprintf("seal %d: records %d to %d", s.ID, s.First, s.Last)
		if evidence {
			state := "sealed"
			if !s.Sealed {
				state = "NOT sealed (too few valid timestamps)"
			}
			line += ": " + state
			for _, t := range s.Tokens {
				v := "ok"
				if !t.OK {
					v = "FAILED"
				}
				line += fmt.Sprintf("; %s %s at %s", t.TSA, v, t.GenTime.UTC().Format(time.RFC3339))
				if t.OpenSSL != "" {
					line += ", openssl " + t.OpenSSL
				}
			}
		}
		fmt.Fprintln(w, clean(line))
	}
	if u := res.Unsealed; u != nil {
		fmt.Fprintf(w, "not sealed yet: %s, records %d to %d\n", plural(u.Count, "record"), u.First, u.Last)
	}
}

// printWormVerify writes what archive verify --evidence found in the
// WORM copy: each problem, then one line of counts.
func printWormVerify(w io.Writer, wc *config.Worm, res *worm.VerifyResult) {
	if wc == nil {
		fmt.Fprintln(w, "WORM copy: none configured ([archive.worm])")
		return
	}
	for _, p := range res.Problems {
		fmt.Fprintln(w, "WORM copy: "+clean(p.String()))
	}
	fmt.Fprintf(w, "WORM copy (bucket %s): compared %d objects: %s; %d objects waiting in the outbox, %d records not yet queued\n",
		clean(wc.Bucket), res.Objects, plural(len(res.Problems), "problem"), res.Pending, res.Unqueued)
}
