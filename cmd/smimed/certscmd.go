package main

import (
	"fmt"
	"io"
	"strings"
)

const certsUsage = `Usage: smimed certs [--config FILE] SUBCOMMAND

  list [--json]               every certificate in the store, usable and quarantined
  show FINGERPRINT|EMAIL      details of the matching certificates
  export EMAIL                PEM of the certificates to encrypt to EMAIL (preferred first)
  trust [--all] FINGERPRINT   release a certificate for use and pin it
  untrust FINGERPRINT         withdraw a trust: quarantined again, not pinned
  crl list [--json]           the certificate revocation lists kept, by issuer
  crl import FILE             keep a CA's CRL (DER or PEM) brought by hand
  import [--email ADDR]... [--trust] FILE
                              a partner's certificate (PEM or DER) to encrypt to

  --config FILE   configuration file (default /etc/smimed/smimed.toml)

While smimed run holds the store, the commands ask it over its control
socket; when no daemon answers, they open the store themselves.
`

// certsCommand takes --config (anywhere on the line) and hands the rest
// to certsDo, which asks the configuration's daemon or opens its store.
func certsCommand(args []string, stdout, stderr io.Writer) int {
	configPath := ""
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--config" || a == "-config":
			if i+1 == len(args) {
				fmt.Fprintln(stderr, "smimed certs: flag needs an argument: --config")
				return exitUsage
			}
			configPath = args[i+1]
			i++
		case strings.HasPrefix(a, "--config=") || strings.HasPrefix(a, "-config="):
			configPath = a[strings.IndexByte(a, '=')+1:]
		case a == "-h" || a == "--help" || a == "-help":
			if len(rest) == 0 {
				fmt.Fprint(stdout, certsUsage)
				return exitOK
			}
			rest = append(rest, a)
		default:
			rest = append(rest, a)
		}
	}
	if len(rest) == 0 {
		fmt.Fprintln(stderr, "smimed certs: missing subcommand (list, show, export, trust, untrust, crl, import; see smimed certs --help)")
		return exitUsage
	}
	cfg, err := loadConfig(configPath)
	if err != nil {
		fmt.Fprintf(stderr, "smimed: %v\n", err)
		return exitUsage
	}
	return certsDo(certsConfigOpener(cfg), rest, stdout, stderr)
}
