package main

// This file is `smimed certs`: list, show, export, trust and untrust the
// partners' certificates in the store. The subcommands work on an admin.CertsAPI:
// the running daemon's, over its control socket (it holds the store), or,
// when none answers, the bbolt file opened here, read-only for everything
// but trust and untrust; a store locked by a daemon whose socket did not answer fails
// after state.LockTimeout with a message saying so.

import (
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/smimed/smimed/daemon/admin"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/harvest"
)

const certsSubUsage = `Usage: smimed certs SUBCOMMAND

  list [--json]            every certificate in the store, usable and quarantined
  show FINGERPRINT|EMAIL   details of the matching certificates
  export EMAIL             PEM of the usable certificates for EMAIL, preferred first
  trust [--all] FINGERPRINT  release a certificate for use and pin it
  untrust FINGERPRINT      withdraw a trust: quarantined again, not pinned
  crl list [--json]        the certificate revocation lists kept, by issuer
  crl import FILE          keep a CA's CRL (DER or PEM) brought by hand
  import [--email ADDR]... [--trust] FILE
                           a partner's certificate (PEM or DER) to encrypt to

FINGERPRINT is the SHA-256 fingerprint in hex (colons allowed) or a unique
prefix of at least 8 digits, such as the 16 that "list" shows.

A trusted certificate is a pinned leaf for the addresses it was trusted
for: its signatures are valid without a CA chain ("trusted by admin on
DATE (no CA chain)"); From, validity and key usage are still checked.
Old mail is judged again by "smimed archive retry --all-untrusted".
`

// certsHelps is each certs subcommand's own --help.
var certsHelps = map[string]string{
	"certs list": `Usage: smimed certs list [--json]

Every certificate in the store, usable and quarantined, one line an
address: the address, the fingerprint (16 digits), the last day it is
valid, and its status: usable, quarantined, trusted (pinned by "certs
trust"), imported ("certs import"; imported+trusted with --trust) or
revoked, with +pref on the one preferred to encrypt to.

  --json   one object a line with every field (issuer, serial, validation,
           capabilities, when seen, why quarantined or revoked, …)
`,
	"certs show": `Usage: smimed certs show FINGERPRINT|EMAIL

Everything known of the matching certificates: subject, issuer, serial,
validity, addresses, what the CA validated, where and when it was seen,
why it is quarantined or revoked.
`,
	"certs export": `Usage: smimed certs export EMAIL

PEM of the usable certificates to encrypt to EMAIL, the preferred one
first; quarantined and revoked ones are left out. Exit 1 when there is
none.
`,
	"certs trust": `Usage: smimed certs trust [--all] FINGERPRINT

Releases a quarantined certificate for use and pins it: its signatures are
valid without a CA chain for the addresses it was trusted for ("trusted by
admin on DATE (no CA chain)"); From, validity and key usage are still
checked. --all trusts it for every address it names. Old mail is judged
again by "smimed archive retry --all-untrusted".

  --all   trust it for every address in the certificate
`,
	"certs untrust": `Usage: smimed certs untrust FINGERPRINT

Withdraws a trust given with "certs trust": the certificate is quarantined
again and no longer pinned.
`,
	"certs crl list": `Usage: smimed certs crl list [--json]

The certificate revocation lists kept, by issuer: scope, where each came
from (a URL, "import" or "enclosed"), when fetched, its validity and the
number of entries.
`,
	"certs import": `Usage: smimed certs import [--email ADDR]... [--trust] FILE

Keeps a partner's certificate brought by hand (PEM or DER, with its CA
certificates if you have them), for partners who never signed mail to us:
the gateway encrypts their mail to it, as it would to a harvested one,
until a later valid signature of theirs names another. Its chain must lead
to a trust anchor (trust.ca_files, the system's roots) as a harvested
signer's must; one that does not is refused unless --trust is given, after
you compared its fingerprint with the partner over another channel. It
must be able to receive encrypted mail now (valid, keyEncipherment for RSA
or keyAgreement for EC, email protection). The import is audited; "certs
list" shows it as imported. Needs root or the service user.

  --email ADDR   import it for ADDR only, which must be one of the
                 certificate's addresses (repeatable; default: all of them)
  --trust        also trust it (pinned, as "certs trust" does) when its
                 chain does not lead to a trust anchor
`,
	"certs crl import": `Usage: smimed certs crl import FILE

Keeps a CA's CRL (DER or PEM) brought by hand, for sites that cannot fetch
it: it must be signed by a trust anchor or an intermediate in the store,
and current.
`,
}

// certsHelp is the --help of the certs subcommand name ("certs trust").
func certsHelp(name string) string {
	h, ok := certsHelps[name]
	switch {
	case !ok:
		return certsSubUsage
	case strings.Contains(h, "FINGERPRINT"):
		return h + "\nFINGERPRINT is the SHA-256 fingerprint in hex (colons allowed) or a unique\nprefix of at least 8 digits, such as the 16 that \"list\" shows.\n"
	}
	return h
}

// certsOpener returns the store to work on, once a subcommand's arguments
// are checked; readOnly is false for trust and untrust.
type certsOpener func(readOnly bool) (admin.CertsAPI, error)

// certsConfigOpener asks the daemon of cfg, or opens its state file when
// no daemon answers (admin.CertsFor).
func certsConfigOpener(cfg *config.Config) certsOpener {
	return func(readOnly bool) (admin.CertsAPI, error) {
		return admin.CertsFor(cfg, !readOnly)
	}
}

// certsMain runs `smimed certs SUBCOMMAND ...` on the state file at
// storePath (state_dir/smimed.db) itself, asking no daemon. Returns the
// exit code: 0 ok, 1 runtime error (e.g. not found), 2 usage error.
func certsMain(storePath string, args []string, stdout, stderr io.Writer) int {
	cfg := config.Defaults()
	cfg.StateDir = filepath.Dir(storePath)
	return certsDo(func(readOnly bool) (admin.CertsAPI, error) {
		return admin.OpenCerts(cfg, !readOnly)
	}, args, stdout, stderr)
}

// certsDo runs `smimed certs SUBCOMMAND ...` on the store open returns.
func certsDo(open certsOpener, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "smimed certs: missing subcommand: list, show, export, trust, untrust, crl or import (see smimed certs --help)")
		return exitUsage
	}
	switch args[0] {
	case "list":
		return certsList(open, args[1:], stdout, stderr)
	case "show":
		return certsShow(open, args[1:], stdout, stderr)
	case "export":
		return certsExport(open, args[1:], stdout, stderr)
	case "trust":
		return certsTrust(open, args[1:], stdout, stderr)
	case "untrust":
		return certsUntrust(open, args[1:], stdout, stderr)
	case "crl":
		return certsCRL(open, args[1:], stdout, stderr)
	case "import":
		return certsImport(open, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, certsSubUsage)
		return exitOK
	}
	fmt.Fprintf(stderr, "smimed certs: unknown subcommand %q: want list, show, export, trust, untrust, crl or import\n", args[0])
	return exitUsage
}

// certsParse parses the flags of one subcommand, also after positional
// arguments, and checks that exactly nargs positional arguments remain. On
// failure it prints one line and returns done with the exit code.
func certsParse(fs *flag.FlagSet, args []string, nargs int, argName string, stdout, stderr io.Writer) (pos []string, code int, done bool) {
	name := "smimed " + fs.Name()
	pos, code, done = parseFlags(fs, args, stdout, stderr, certsHelp(fs.Name()))
	if done {
		return nil, code, true
	}
	switch {
	case len(pos) < nargs:
		fmt.Fprintf(stderr, "%s: missing %s\n", name, argName)
		return nil, exitUsage, true
	case len(pos) > nargs:
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", name, pos[nargs])
		return nil, exitUsage, true
	}
	return pos, exitOK, false
}

// certsOpen opens the store and prints the error if it cannot.
func certsOpen(open certsOpener, readOnly bool, cmd string, stderr io.Writer) (admin.CertsAPI, bool) {
	st, err := open(readOnly)
	if err != nil {
		fmt.Fprintf(stderr, "smimed certs %s: %v\n", cmd, err)
		return nil, false
	}
	return st, true
}

// certsLookupError prints err and returns its exit code: 2 for a malformed
// fingerprint or address, else 1.
func certsLookupError(cmd string, err error, stderr io.Writer) int {
	fmt.Fprintf(stderr, "smimed certs %s: %s\n", cmd, clean(err.Error()))
	if errors.Is(err, harvest.ErrBadFingerprint) || errors.Is(err, harvest.ErrBadAddress) || errors.Is(err, admin.ErrNeedsAll) {
		return exitUsage
	}
	return exitFailed
}

// certJSON is one line of `list --json`.
type certJSON struct {
	Email               string   `json:"email"`
	Fingerprint         string   `json:"fingerprint"`
	Subject             string   `json:"subject"`
	Issuer              string   `json:"issuer"`
	Serial              string   `json:"serial"`
	NotBefore           string   `json:"not_before"`
	NotAfter            string   `json:"not_after"`
	Key                 string   `json:"key"`
	Quarantined         bool     `json:"quarantined"`
	QuarantineReason    string   `json:"quarantine_reason,omitempty"`
	EncryptionPreferred bool     `json:"encryption_preferred"`
	Capabilities        []string `json:"capabilities,omitempty"`
	FirstSeen           string   `json:"first_seen"`
	LastSeen            string   `json:"last_seen"`
	MessageID           string   `json:"message_id"`
	TrustedAt           string   `json:"trusted_at,omitempty"`
	TrustedBy           string   `json:"trusted_by,omitempty"`
	ImportedAt          string   `json:"imported_at,omitempty"`
	ImportedBy          string   `json:"imported_by,omitempty"`
	RevokedAt           string   `json:"revoked_at,omitempty"`
	RevokedReason       string   `json:"revoked_reason,omitempty"`
	Validation          string   `json:"validation"`
	ValidatedName       string   `json:"validated_name,omitempty"`
}

func certsTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func certsStatus(e harvest.Entry) string {
	s := "usable"
	switch {
	case e.Revoked(time.Now()):
		s = "revoked"
	case e.Quarantined:
		s = "quarantined"
	case !e.ImportedAt.IsZero() && !e.TrustedAt.IsZero():
		s = "imported+trusted"
	case !e.ImportedAt.IsZero():
		s = "imported"
	case !e.TrustedAt.IsZero():
		s = "trusted"
	}
	if e.EncryptionPreferred {
		s += "+pref"
	}
	return s
}

func certsList(open certsOpener, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("certs list")
	asJSON := fs.Bool("json", false, "one JSON object per line")
	if _, code, done := certsParse(fs, args, 0, "", stdout, stderr); done {
		return code
	}
	st, ok := certsOpen(open, true, "list", stderr)
	if !ok {
		return exitFailed
	}
	defer st.Close()
	entries, err := st.List(context.Background())
	if err != nil {
		fmt.Fprintf(stderr, "smimed certs list: %v\n", err)
		return exitFailed
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false) // message-ids are <...>
		for _, e := range entries {
			c := e.Cert
			validation, validated := harvest.CertValidation(c)
			err := enc.Encode(certJSON{
				Email:               e.Email,
				Fingerprint:         e.Fingerprint,
				Subject:             c.Subject.String(),
				Issuer:              c.Issuer.String(),
				Serial:              c.SerialNumber.Text(16),
				NotBefore:           certsTime(c.NotBefore),
				NotAfter:            certsTime(c.NotAfter),
				Key:                 certsKeyType(c.PublicKey),
				Quarantined:         e.Quarantined,
				QuarantineReason:    e.QuarantineReason,
				EncryptionPreferred: e.EncryptionPreferred,
				Capabilities:        e.Capabilities,
				FirstSeen:           certsTime(e.FirstSeen),
				LastSeen:            certsTime(e.LastSeen),
				MessageID:           e.MessageID,
				TrustedAt:           certsTime(e.TrustedAt),
				TrustedBy:           e.TrustedBy,
				ImportedAt:          certsTime(e.ImportedAt),
				ImportedBy:          e.ImportedBy,
				RevokedAt:           certsTime(e.RevokedAt),
				RevokedReason:       e.RevokedReason,
				Validation:          validation,
				ValidatedName:       validated,
			})
			if err != nil {
				fmt.Fprintf(stderr, "smimed certs list: %v\n", err)
				return exitFailed
			}
		}
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "EMAIL\tFINGERPRINT\tNOT_AFTER\tSTATUS")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", clean(e.Email), e.Fingerprint[:16], e.Cert.NotAfter.UTC().Format(time.DateOnly), certsStatus(e))
	}
	if err := tw.Flush(); err != nil {
		fmt.Fprintf(stderr, "smimed certs list: %v\n", err)
		return exitFailed
	}
	return exitOK
}

func certsShow(open certsOpener, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("certs show")
	pos, code, done := certsParse(fs, args, 1, "FINGERPRINT or EMAIL", stdout, stderr)
	if done {
		return code
	}
	st, ok := certsOpen(open, true, "show", stderr)
	if !ok {
		return exitFailed
	}
	defer st.Close()
	arg := pos[0]
	var entries []harvest.Entry
	var err error
	if strings.Contains(arg, "@") {
		entries, err = st.ByEmail(context.Background(), arg)
	} else {
		entries, err = st.ByFingerprint(context.Background(), arg)
	}
	if err != nil {
		return certsLookupError("show", err, stderr)
	}
	if len(entries) == 0 && !strings.Contains(arg, "@") {
		// Not bound to an address: perhaps an intermediate.
		c, err := st.Certificate(context.Background(), arg)
		if err != nil {
			return certsLookupError("show", err, stderr)
		}
		if c != nil {
			fmt.Fprintf(stdout, "%-15s %s\n", "status:", "intermediate CA (not bound to an address)")
			certsPrintCert(stdout, c)
			return exitOK
		}
	}
	if len(entries) == 0 {
		fmt.Fprintf(stderr, "smimed certs show: no certificate for %s\n", arg)
		return exitFailed
	}
	for i, e := range entries {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		certsPrintEntry(stdout, e)
	}
	return exitOK
}

func certsPrintEntry(w io.Writer, e harvest.Entry) {
	// Every value may come from a stranger's certificate or message.
	line := func(k, v string) { fmt.Fprintf(w, "%-15s %s\n", k+":", clean(v)) }
	line("email", e.Email)
	status := "usable"
	if e.Quarantined {
		status = "quarantined: " + e.QuarantineReason
	}
	if !e.TrustedAt.IsZero() {
		status = fmt.Sprintf("trusted by %s on %s (pinned: no CA chain needed)", e.TrustedBy, e.TrustedAt.UTC().Format(time.DateOnly))
	}
	if !e.ImportedAt.IsZero() && !e.Quarantined {
		status = fmt.Sprintf("imported by %s on %s", e.ImportedBy, e.ImportedAt.UTC().Format(time.DateOnly))
		if !e.TrustedAt.IsZero() {
			status += " and trusted (pinned: no CA chain needed)"
		}
	}
	if !e.RevokedAt.IsZero() {
		status = fmt.Sprintf("revoked since %s: %s", e.RevokedAt.UTC().Format(time.RFC3339), e.RevokedReason)
	}
	if e.EncryptionPreferred {
		status += ", preferred for encryption"
	}
	line("status", status)
	certsPrintCert(w, e.Cert)
	caps := "-"
	if len(e.Capabilities) > 0 {
		caps = strings.Join(e.Capabilities, ", ")
	}
	line("capabilities", caps)
	line("first seen", certsTime(e.FirstSeen))
	line("last seen", certsTime(e.LastSeen))
	line("message-id", e.MessageID)
}

func certsPrintCert(w io.Writer, c *x509.Certificate) {
	// Every value may come from a stranger's certificate or message.
	line := func(k, v string) { fmt.Fprintf(w, "%-15s %s\n", k+":", clean(v)) }
	line("fingerprint", harvest.Fingerprint(c))
	line("subject", c.Subject.String())
	line("issuer", c.Issuer.String())
	line("serial", c.SerialNumber.Text(16))
	validation, validated := harvest.CertValidation(c)
	if validated != "" {
		validation += ": " + validated
	}
	line("validation", validation)
	line("not before", certsTime(c.NotBefore))
	notAfter := certsTime(c.NotAfter)
	if time.Now().After(c.NotAfter) {
		notAfter += " (expired)"
	}
	line("not after", notAfter)
	if len(c.EmailAddresses) > 0 {
		line("email SANs", strings.Join(c.EmailAddresses, ", "))
	}
	if len(c.DNSNames) > 0 {
		line("DNS SANs", strings.Join(c.DNSNames, ", "))
	}
	if len(c.URIs) > 0 {
		var uris []string
		for _, u := range c.URIs {
			uris = append(uris, u.String())
		}
		line("URI SANs", strings.Join(uris, ", "))
	}
	if len(c.IPAddresses) > 0 {
		var ips []string
		for _, ip := range c.IPAddresses {
			ips = append(ips, ip.String())
		}
		line("IP SANs", strings.Join(ips, ", "))
	}
	line("key", certsKeyType(c.PublicKey))
	line("key usage", certsKeyUsage(c.KeyUsage))
	line("ext key usage", certsExtKeyUsage(c))
	if c.IsCA {
		line("CA", "yes")
	}
}

func certsKeyType(pub any) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	case *ecdh.PublicKey:
		return fmt.Sprint(k.Curve())
	}
	return fmt.Sprintf("%T", pub)
}

var certsKeyUsageNames = []struct {
	bit  x509.KeyUsage
	name string
}{
	{x509.KeyUsageDigitalSignature, "digitalSignature"},
	{x509.KeyUsageContentCommitment, "nonRepudiation"},
	{x509.KeyUsageKeyEncipherment, "keyEncipherment"},
	{x509.KeyUsageDataEncipherment, "dataEncipherment"},
	{x509.KeyUsageKeyAgreement, "keyAgreement"},
	{x509.KeyUsageCertSign, "keyCertSign"},
	{x509.KeyUsageCRLSign, "cRLSign"},
	{x509.KeyUsageEncipherOnly, "encipherOnly"},
	{x509.KeyUsageDecipherOnly, "decipherOnly"},
}

func certsKeyUsage(ku x509.KeyUsage) string {
	if ku == 0 {
		return "- (any)"
	}
	var names []string
	for _, n := range certsKeyUsageNames {
		if ku&n.bit != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ", ")
}

var certsExtKeyUsageNames = map[x509.ExtKeyUsage]string{
	x509.ExtKeyUsageAny:             "any",
	x509.ExtKeyUsageServerAuth:      "serverAuth",
	x509.ExtKeyUsageClientAuth:      "clientAuth",
	x509.ExtKeyUsageCodeSigning:     "codeSigning",
	x509.ExtKeyUsageEmailProtection: "emailProtection",
	x509.ExtKeyUsageTimeStamping:    "timeStamping",
	x509.ExtKeyUsageOCSPSigning:     "OCSPSigning",
}

func certsExtKeyUsage(c *x509.Certificate) string {
	var names []string
	for _, u := range c.ExtKeyUsage {
		if n, ok := certsExtKeyUsageNames[u]; ok {
			names = append(names, n)
		} else {
			names = append(names, fmt.Sprintf("eku-%d", u))
		}
	}
	for _, oid := range c.UnknownExtKeyUsage {
		names = append(names, oid.String())
	}
	if len(names) == 0 {
		return "- (any)"
	}
	return strings.Join(names, ", ")
}

func certsExport(open certsOpener, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("certs export")
	pos, code, done := certsParse(fs, args, 1, "EMAIL", stdout, stderr)
	if done {
		return code
	}
	st, ok := certsOpen(open, true, "export", stderr)
	if !ok {
		return exitFailed
	}
	defer st.Close()
	entries, err := st.ByEmail(context.Background(), pos[0])
	if err != nil {
		return certsLookupError("export", err, stderr)
	}
	usable := harvest.Usable(entries)
	if len(usable) == 0 {
		msg := fmt.Sprintf("smimed certs export: no usable certificate for %s", pos[0])
		if q := len(entries) - len(usable); q > 0 {
			msg += fmt.Sprintf(" (%d quarantined or revoked; see smimed certs show %s)", q, pos[0])
		}
		fmt.Fprintln(stderr, msg)
		return exitFailed
	}
	// Preferred first, the rest in the store's order (latest not_after first).
	var ordered []harvest.Entry
	for _, e := range usable {
		if e.EncryptionPreferred {
			ordered = append(ordered, e)
		}
	}
	for _, e := range usable {
		if !e.EncryptionPreferred {
			ordered = append(ordered, e)
		}
	}
	for _, e := range ordered {
		if err := pem.Encode(stdout, &pem.Block{Type: "CERTIFICATE", Bytes: e.Cert.Raw}); err != nil {
			fmt.Fprintf(stderr, "smimed certs export: %v\n", err)
			return exitFailed
		}
	}
	return exitOK
}

// certsDecision is what trust and untrust start from: the store, opened
// for writing, and the certificate's addresses by whether an
// administrator trusted it for them.
type certsDecision struct {
	st                 admin.CertsAPI
	fp                 string // as given
	entries            []harvest.Entry
	trusted, untrusted []string
}

// certsDecide parses the FINGERPRINT of trust or untrust and opens the
// store; done with the exit code when it failed (printed).
func certsDecide(open certsOpener, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (d *certsDecision, code int, done bool) {
	cmd := strings.TrimPrefix(fs.Name(), "certs ")
	pos, code, done := certsParse(fs, args, 1, "FINGERPRINT", stdout, stderr)
	if done {
		return nil, code, true
	}
	st, ok := certsOpen(open, false, cmd, stderr)
	if !ok {
		return nil, exitFailed, true
	}
	es, err := st.ByFingerprint(context.Background(), pos[0])
	if err != nil {
		st.Close()
		return nil, certsLookupError(cmd, err, stderr), true
	}
	d = &certsDecision{st: st, fp: pos[0], entries: es}
	for _, e := range es {
		if e.TrustedAt.IsZero() {
			d.untrusted = append(d.untrusted, e.Email)
		} else {
			d.trusted = append(d.trusted, e.Email)
		}
	}
	return d, exitOK, false
}

func certsTrust(open certsOpener, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("certs trust")
	all := fs.Bool("all", false, "trust for every address it is bound to")
	d, code, done := certsDecide(open, fs, args, stdout, stderr)
	if done {
		return code
	}
	defer d.st.Close()
	if len(d.entries) > 0 && len(d.untrusted) == 0 {
		fmt.Fprintf(stdout, "%s is already trusted for %s\n", d.entries[0].Fingerprint, clean(certsEmails(d.entries)))
		return exitOK
	}
	e, err := d.st.Trust(context.Background(), d.fp, *all)
	if err != nil {
		return certsLookupError("trust", err, stderr)
	}
	fmt.Fprintf(stdout, "trusted %s (%s) for %s; run smimed archive retry --all-untrusted to judge old mail again\n",
		e.Fingerprint, clean(e.Cert.Subject.String()), clean(strings.Join(d.untrusted, ", ")))
	return exitOK
}

func certsUntrust(open certsOpener, args []string, stdout, stderr io.Writer) int {
	d, code, done := certsDecide(open, newFlags("certs untrust"), args, stdout, stderr)
	if done {
		return code
	}
	defer d.st.Close()
	e, err := d.st.Untrust(context.Background(), d.fp)
	if err != nil {
		return certsLookupError("untrust", err, stderr)
	}
	fmt.Fprintf(stdout, "untrusted %s (%s): quarantined again for %s\n", e.Fingerprint, clean(e.Cert.Subject.String()), clean(strings.Join(d.trusted, ", ")))
	return exitOK
}

func certsEmails(es []harvest.Entry) string {
	var out []string
	for _, e := range es {
		out = append(out, e.Email)
	}
	return strings.Join(out, ", ")
}
