package main

import (
	"fmt"
	"io"
)

const certsUsage = `Usage: smimed certs [--config FILE] SUBCOMMAND

  list [--json]               every certificate in the store, usable and quarantined
  show FINGERPRINT|EMAIL      details of the matching certificates
  export EMAIL                PEM of the certificates to encrypt to EMAIL (preferred first)
  trust FINGERPRINT           release a quarantined certificate for use

  --config FILE   configuration file (default /etc/smimed/smimed.toml)
`

// certsCommand reads --config and hands the rest to certsMain.
func certsCommand(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("certs")
	configPath := fs.String("config", "", "")
	if err := fs.Parse(args); err != nil {
		if err.Error() == "flag: help requested" {
			fmt.Fprint(stdout, certsUsage)
			return exitOK
		}
		fmt.Fprintf(stderr, "smimed certs: %v (see smimed certs --help)\n", err)
		return exitUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprint(stderr, certsUsage)
		return exitUsage
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "smimed: %v\n", err)
		return exitUsage
	}
	return certsMain(cfg.StorePath(), fs.Args(), stdout, stderr)
}
