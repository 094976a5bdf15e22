package main

// This file is `smimed certs crl`: the certificate revocation lists smimed
// keeps (fetched from the CAs' distribution points, or imported here for
// a site that cannot reach them).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/smimed/smimed/harvest/revocation"
)

// maxCRLFile bounds a CRL file read for import.
const maxCRLFile = revocation.DefaultMaxSize

func certsCRL(open certsOpener, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "smimed certs crl: missing subcommand: list or import (see smimed certs --help)")
		return exitUsage
	}
	switch args[0] {
	case "list":
		return certsCRLList(open, args[1:], stdout, stderr)
	case "import":
		return certsCRLImport(open, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, certsSubUsage)
		return exitOK
	}
	fmt.Fprintf(stderr, "smimed certs crl: unknown subcommand %q: want list or import\n", args[0])
	return exitUsage
}

func certsCRLList(open certsOpener, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("certs crl list")
	asJSON := fs.Bool("json", false, "one JSON object per line")
	if _, code, done := certsParse(fs, args, 0, "", stdout, stderr); done {
		return code
	}
	st, ok := certsOpen(open, true, "crl list", stderr)
	if !ok {
		return exitFailed
	}
	defer st.Close()
	list, err := st.CRLs(context.Background())
	if err != nil {
		fmt.Fprintf(stderr, "smimed certs crl list: %v\n", err)
		return exitFailed
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, in := range list {
			if err := enc.Encode(in); err != nil {
				fmt.Fprintf(stderr, "smimed certs crl list: %v\n", err)
				return exitFailed
			}
		}
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ISSUER\tENTRIES\tTHIS UPDATE\tNEXT UPDATE\tSOURCE")
	now := time.Now()
	for _, in := range list {
		next := "none"
		if !in.NextUpdate.IsZero() {
			next = in.NextUpdate.Format(time.DateTime)
			if now.After(in.NextUpdate) {
				next += " (past)"
			}
		}
		source := in.Source
		if in.Scope != "" && in.Scope != in.Source {
			source += " (for " + in.Scope + ")"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", clean(in.Issuer), in.Entries, in.ThisUpdate.Format(time.DateTime), next, clean(source))
	}
	tw.Flush()
	return exitOK
}

func certsCRLImport(open certsOpener, args []string, stdout, stderr io.Writer) int {
	pos, code, done := certsParse(newFlags("certs crl import"), args, 1, "FILE (a CRL, DER or PEM)", stdout, stderr)
	if done {
		return code
	}
	data, err := readAdminFile(pos[0], maxCRLFile)
	if err != nil {
		fmt.Fprintf(stderr, "smimed certs crl import: %v\n", err)
		return exitFailed
	}
	st, ok := certsOpen(open, false, "crl import", stderr)
	if !ok {
		return exitFailed
	}
	defer st.Close()
	in, err := st.ImportCRL(context.Background(), data)
	if err != nil {
		fmt.Fprintf(stderr, "smimed certs crl import: %s: %v\n", pos[0], err)
		return exitFailed
	}
	next := "no next update"
	if !in.NextUpdate.IsZero() {
		next = "valid until " + in.NextUpdate.Format(time.DateTime) + " UTC"
	}
	fmt.Fprintf(stdout, "imported the CRL of %s: %d revoked, %s; run smimed archive retry to judge old mail again\n", clean(in.Issuer), in.Entries, next)
	return exitOK
}
