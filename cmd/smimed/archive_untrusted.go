package main

// This file is `smimed archive retry --all-untrusted` and `--revoked-since
// DATE`: after a `certs trust`, every message whose signature was judged
// untrusted is judged again; after a revocation became known, every
// message since DATE whose signature held; each line says how its verdict
// changed.

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/admin"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/harvest"
)

// retryBatch is how many records one retry request names (the control
// socket takes at most 4096).
const retryBatch = 1000

// verdicts is a record's signature verdicts in order, "none" without one.
func verdicts(r *archive.Record) string {
	if r == nil || len(r.Signatures) == 0 {
		return "none"
	}
	v := make([]string, len(r.Signatures))
	for i, sig := range r.Signatures {
		v[i] = sig.Status
	}
	return strings.Join(v, ",")
}

func archiveRetryUntrusted(s *archiveSession, ids []string) int {
	if len(ids) > 0 {
		return s.usagef("--all-untrusted takes no IDs")
	}
	return archiveRetryVerdicts(s, []string{harvest.StatusUntrusted}, time.Time{}, "no message with an untrusted signature")
}

// archiveRetryRevoked judges again every message since since with a
// signature whose chain held (valid, partial or mismatch): revocation is
// judged at a message's arrival, so a revocation that takes effect at
// since concerns those.
func archiveRetryRevoked(s *archiveSession, ids []string, since string) int {
	if len(ids) > 0 {
		return s.usagef("--revoked-since takes no IDs")
	}
	t, _, err := parseDate(since)
	if err != nil {
		return s.usagef("--revoked-since: %v", err)
	}
	return archiveRetryVerdicts(s, []string{harvest.StatusValid, harvest.StatusPartial, harvest.StatusMismatch}, t,
		"no message since "+t.UTC().Format(time.RFC3339)+" with a signature whose chain held")
}

// archiveRetryVerdicts retries every message that arrived on or after
// since (zero: any time) with a signature judged one of verdicts, and
// says how each one's verdicts changed.
func archiveRetryVerdicts(s *archiveSession, which []string, since time.Time, nothing string) int {
	return s.with(true, func(ctx context.Context, api admin.ArchiveAPI, _ *config.Config) int {
		// Selected by the signatures' verdicts, not by record status.
		before := map[uint64]string{}
		var todo []uint64
		for _, v := range which {
			err := api.List(ctx, archive.Query{Verdict: v, Since: since}, func(r *archive.Record) error {
				if _, dup := before[r.ID]; !dup {
					before[r.ID] = verdicts(r)
					todo = append(todo, r.ID)
				}
				return nil
			})
			if err != nil {
				return s.failf("%v", err)
			}
		}
		if len(todo) == 0 {
			fmt.Fprintln(s.stdout, "nothing to retry: "+nothing)
			return exitOK
		}
		exit := exitOK
		for len(todo) > 0 {
			batch := todo[:min(retryBatch, len(todo))]
			todo = todo[len(batch):]
			err := api.Retry(ctx, batch, func(res admin.RetryResult) error {
				was := before[res.ID]
				switch now := verdicts(res.Record); {
				case res.Error != "":
					exit = exitFailed
					fmt.Fprintf(s.stdout, "%d: error %s\n", res.ID, clean(res.Error))
				case !res.Changed:
					fmt.Fprintf(s.stdout, "%d: unchanged (%s)\n", res.ID, was)
				case now != was:
					fmt.Fprintf(s.stdout, "%d: verdict %s → %s (new record %d)\n", res.ID, was, now, res.Record.ID)
				default:
					fmt.Fprintf(s.stdout, "%d: reprocessed, verdict still %s (new record %d)\n", res.ID, now, res.Record.ID)
				}
				return nil
			})
			if err != nil {
				return s.failf("%v", err)
			}
		}
		return exit
	})
}
