package main

// This file is the archive's evidence for an auditor: `smimed archive
// proof ID` and `smimed archive export --evidence`, a directory that
// proves itself with VERIFY.sh (docs/evidence.md).

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/archive/timestamp"
	"github.com/smimed/smimed/daemon/admin"
	"github.com/smimed/smimed/daemon/config"
)

//go:embed VERIFY.sh
var verifyScript string

const archiveProofUsage = `Usage: smimed archive proof ID [--json] [--config FILE]

Prints the inclusion proof of record ID: its chain hash, the Merkle path
from it to the root of the seal that covers it, the seal's statement (what
the TSAs timestamped) and each TSA's timestamp with its time. The proof's
lines are the format of the export's proofs/ID.proof (docs/evidence.md).
Exit 1 when the record is not sealed yet or does not exist.

  --json          one JSON object: proof (record, prev, hash, seal, index,
                  path, root, statement, seal_info, body) and tokens (tsa,
                  response and chain, base64)
  --config FILE   configuration file (default /etc/smimed/smimed.toml)
`

func archiveProof(args []string, stdout, stderr io.Writer) int {
	s := newArchiveSession("archive proof", stdout, stderr)
	asJSON := s.fs.Bool("json", false, "")
	id, code, done := s.parseID(args, archiveProofUsage)
	if done {
		return code
	}
	return s.with(false, func(ctx context.Context, api admin.ArchiveAPI, cfg *config.Config) int {
		p, err := api.Proof(ctx, id)
		if err != nil {
			return s.failf("%v", err)
		}
		if err := p.Proof.Check(); err != nil {
			return s.failf("%v", err)
		}
		if *asJSON {
			if err := jsonLines(stdout).Encode(p); err != nil {
				return s.failf("%v", err)
			}
			return exitOK
		}
		fmt.Fprint(stdout, p.Proof.Text())
		fmt.Fprintf(stdout, "\nseal %d statement (SHA-256 timestamped):\n%s", p.Proof.Seal, p.Proof.Statement)
		if len(p.Tokens) == 0 {
			fmt.Fprintln(stdout, "\nno timestamp yet")
		}
		for _, t := range p.Tokens {
			fmt.Fprintf(stdout, "\ntimestamp %s: %s\n", t.TSA, tokenTime(t))
		}
		return exitOK
	})
}

// tokenTime is the genTime of a kept token, unverified (verify
// --evidence judges it).
func tokenTime(t archive.Token) string {
	r, err := timestamp.ParseResponse(t.Response)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	return r.Info.GenTime.UTC().Format(time.RFC3339) + " (smimed archive verify --evidence judges it)"
}

// exportEvidence writes the items to the directory out (missing or
// empty): messages/ID.eml, records/ID.json, proofs/ID.proof,
// seals/SEAL.txt, seals/SEAL.TSA.tsr and .pem, tsa/ca.pem, manifest.csv
// and VERIFY.sh. Records no seal covers yet are left out, each with a
// note.
func exportEvidence(ctx context.Context, s *archiveSession, api admin.ArchiveAPI, cfg *config.Config, items []exportItem, out string) int {
	for _, d := range []string{"", "messages", "records", "proofs", "seals", "tsa"} {
		if err := os.MkdirAll(filepath.Join(out, d), 0o700); err != nil {
			return s.failf("%v", err)
		}
	}
	ctx = admin.WithAuditCommand(ctx, admin.CommandExport)
	var manifest bytes.Buffer
	cw := csv.NewWriter(&manifest)
	cw.Write([]string{"record", "sha256", "message_id", "date", "from", "to", "subject", "class", "retain_until"})
	seals := map[uint64]bool{}
	var chains []byte
	n, left, code := 0, 0, exitOK
	bar := newProgress(s.stderr, "exporting")
	var buf bytes.Buffer
	for i, it := range items {
		bar.update(i, len(items))
		if ctx.Err() != nil {
			return exitFailed
		}
		if !it.fetched {
			bar.finish()
			fmt.Fprintf(s.stderr, "smimed %s: record %d skipped: the message was never fetched\n", s.name, it.id)
			continue
		}
		p, err := api.Proof(ctx, it.id)
		if errors.Is(err, archive.ErrNotSealed) {
			left++
			continue
		}
		if err == nil {
			buf.Reset()
			err = api.Message(ctx, it.id, false, &buf)
		}
		if err != nil {
			bar.finish()
			code = s.failf("record %d: %v", it.id, err)
			continue
		}
		id := strconv.FormatUint(it.id, 10)
		seal := strconv.FormatUint(p.Proof.Seal, 10)
		files := map[string][]byte{
			"messages/" + id + ".eml": buf.Bytes(),
			"records/" + id + ".json": p.Proof.Body,
			"proofs/" + id + ".proof": []byte(p.Proof.Text()),
		}
		if !seals[p.Proof.Seal] {
			seals[p.Proof.Seal] = true
			files["seals/"+seal+".txt"] = []byte(p.Proof.Statement)
			for _, t := range p.Tokens {
				files["seals/"+seal+"."+t.TSA+".tsr"] = t.Response
				files["seals/"+seal+"."+t.TSA+".pem"] = t.Chain
				chains = append(chains, t.Chain...)
			}
		}
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(out, name), b, 0o600); err != nil {
				return s.failf("%v", err)
			}
		}
		r := it.rec
		date := ""
		if !r.Date.IsZero() {
			date = r.Date.UTC().Format(time.RFC3339)
		}
		until := ""
		if !r.RetainUntil.IsZero() {
			until = r.RetainUntil.UTC().Format(time.RFC3339)
		}
		cw.Write([]string{id, archive.Sum(buf.Bytes()), r.MessageID, date, r.From, strings.Join(r.To, " "), r.Subject, r.Class, until})
		n++
	}
	bar.update(len(items), len(items))
	bar.finish()
	cw.Flush()
	// The trust anchors: the configured ones, else those kept with the
	// tokens (the auditor compares the fingerprint VERIFY.sh prints).
	_, anchors, err := cfg.Archive.Seal.Roots()
	if err != nil || len(anchors) == 0 {
		anchors = chains
	}
	require := max(cfg.Archive.Seal.Require, 1)
	files := map[string][]byte{
		"manifest.csv": manifest.Bytes(),
		"tsa/ca.pem":   anchors,
		"VERIFY.sh":    []byte(strings.Replace(verifyScript, "@REQUIRE@", strconv.Itoa(require), 1)),
	}
	for name, b := range files {
		mode := os.FileMode(0o600)
		if name == "VERIFY.sh" {
			mode = 0o700
		}
		if err := os.WriteFile(filepath.Join(out, name), b, mode); err != nil {
			return s.failf("%v", err)
		}
	}
	if left > 0 {
		fmt.Fprintf(s.stderr, "smimed %s: %s left out: not sealed yet (export again after the next seal)\n", s.name, plural(left, "record"))
	}
	fmt.Fprintf(s.stdout, "exported %s with %s to %s; check with: bash %s\n", plural(n, "message"), plural(len(seals), "seal"), clean(out), clean(filepath.Join(out, "VERIFY.sh")))
	return code
}

// checkEmptyDir accepts a missing or empty directory.
func checkEmptyDir(path string) error {
	entries, err := os.ReadDir(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case len(entries) > 0:
		return fmt.Errorf("%s is not empty", path)
	}
	return nil
}
