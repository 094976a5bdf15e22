package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/smimed/smimed/daemon/config"
)

const checkConfigUsage = `Usage: smimed check-config [--config FILE]

Reads the configuration, loads every key and trust anchor, and lists every
problem with the key it belongs to. Exit 0 when all is well, 2 otherwise.
A warning (exit 0) names each RSA key under 1,024 bits: it is loaded to
decrypt old mail only.

  --config FILE   configuration file (default /etc/smimed/smimed.toml)
`

func checkConfigMain(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check-config")
	configPath := fs.String("config", config.DefaultPath, "")
	rest, code, done := parseFlags(fs, args, stdout, stderr, checkConfigUsage)
	if done {
		return code
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "smimed check-config: unexpected argument %q\n", rest[0])
		return exitUsage
	}
	var problems []string
	collect := func(err error) {
		var ce *config.Error
		if errors.As(err, &ce) {
			problems = append(problems, ce.Problems...)
		} else if err != nil {
			problems = append(problems, err.Error())
		}
	}
	cfg, err := config.Load(*configPath)
	collect(err)
	if cfg != nil {
		keys, warnings, err := cfg.LoadKeysWarn()
		collect(err)
		for _, w := range warnings {
			fmt.Fprintf(stdout, "%s: warning: %s\n", *configPath, w)
		}
		_, err = cfg.TrustPool()
		collect(err)
		collect(cfg.CheckAccounts())
		if len(problems) == 0 {
			fmt.Fprintf(stdout, "%s: ok (%d decryption key(s), %d mailbox(es), state_dir %s)\n", *configPath, len(keys), len(cfg.Accounts), cfg.StateDir)
			return exitOK
		}
	}
	for _, p := range problems {
		fmt.Fprintf(stderr, "%s: %s\n", *configPath, p)
	}
	return exitUsage
}
