package main

// This file is `smimed certs import`: a partner's certificate brought by
// hand, for partners who never signed mail to us, so that the gateway can
// encrypt to them.

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/smimed/smimed/daemon/admin"
)

// maxCertFile bounds a certificate file read by certs import.
const maxCertFile = admin.MaxCRLImport

// emailFlags collects repeated --email flags.
type emailFlags []string

func (e *emailFlags) String() string     { return strings.Join(*e, ",") }
func (e *emailFlags) Set(v string) error { *e = append(*e, v); return nil }

func certsImport(open certsOpener, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("certs import")
	var emails emailFlags
	fs.Var(&emails, "email", "an address of the certificate to import it for (repeatable; default: all of them)")
	trust := fs.Bool("trust", false, "also trust it (pinned) when its chain does not lead to a trust anchor")
	pos, code, done := certsParse(fs, args, 1, "FILE (the partner's certificate, PEM or DER)", stdout, stderr)
	if done {
		return code
	}
	data, err := readAdminFile(pos[0], maxCertFile)
	if err != nil {
		fmt.Fprintf(stderr, "smimed certs import: %v\n", err)
		return exitFailed
	}
	st, ok := certsOpen(open, false, "import", stderr)
	if !ok {
		return exitFailed
	}
	defer st.Close()
	es, err := st.Import(context.Background(), data, emails, *trust)
	if err != nil {
		return certsLookupError("import", fmt.Errorf("%s: %w", pos[0], err), stderr)
	}
	how := "its chain leads to a trust anchor"
	if !es[0].TrustedAt.IsZero() {
		how = "trusted by you (pinned)"
	}
	fmt.Fprintf(stdout, "imported %s (%s) for %s: %s; mail to them is encrypted to it\n",
		es[0].Fingerprint, clean(es[0].Cert.Subject.String()), clean(certsEmails(es)), how)
	return exitOK
}

// readAdminFile reads a file an administrator names (a CRL, a
// certificate), at most max bytes.
func readAdminFile(path string, max int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, max)
	}
	return data, nil
}
