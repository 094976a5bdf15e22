// Command smimed is the S/MIME mailbox daemon and its admin tool: one
// binary with subcommands. See README.md and docs/ for the full manual.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Exit codes shared by every subcommand.
const (
	exitOK     = 0 // processed, whatever the verdicts
	exitFailed = 1 // a file or the store could not be read or written
	exitUsage  = 2 // usage or configuration error
)

const usageText = `smimed — S/MIME mailbox daemon

Usage:
  smimed inspect [--config FILE] [--json] [--harvest] [--at TIME] FILE...
                                                                what protects a message, verdicts, harvest
  smimed decrypt [--config FILE] [--at TIME] FILE               write the readable plaintext message to stdout
  smimed certs [--config FILE] list [--json]                    certificates in the store
  smimed certs [--config FILE] show FINGERPRINT|EMAIL           one certificate in detail
  smimed certs [--config FILE] export EMAIL                     PEM certificate(s) to encrypt to EMAIL
  smimed certs [--config FILE] trust [--all] FINGERPRINT        release a certificate from quarantine (pin it)
  smimed certs [--config FILE] untrust FINGERPRINT              withdraw an administrator's trust
  smimed check-config [--config FILE] [--as USER] [--connect]   list every problem in the configuration (--connect: try each mailbox)
  smimed keys list [--config FILE] [--json]                     the organisation keys: issuer, serial, SKI, fingerprint, addresses
  smimed oauth2 login [--config FILE] --account NAME            get an account's OAuth2 refresh token (device login)
  smimed run [--config FILE]                                    watch the IMAP folders (the service)
  smimed archive [--config FILE] SUBCOMMAND                     list, show, export, failed, retry, verify, audit, hold, restrict, purge
  smimed backup [--config FILE] --out FILE [--force]            consistent copy of the store (not the archive files)
  smimed status [--config FILE] [--json]                        the running daemon's accounts and folders
  smimed docs procedure [--config FILE]                         a draft procedure documentation from the configuration
  smimed demo [--dir DIR] [--listen ADDR] [--once]              the service on a demo mailbox of its own, no setup
  smimed version                                                the version smimed was built from
  smimed help                                                   this text

FILE may be "-" for standard input. The default config is /etc/smimed/smimed.toml.
Exit codes: 0 processed (whatever the verdicts), 1 a file could not be read, 2 usage or config error.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "inspect":
		return inspectMain(rest, stdin, stdout, stderr)
	case "decrypt":
		return decryptMain(rest, stdin, stdout, stderr)
	case "certs":
		return certsCommand(rest, stdout, stderr)
	case "check-config":
		return checkConfigMain(rest, stdout, stderr)
	case "keys":
		return keysMain(args[1:], stdout, stderr)
	case "oauth2":
		return oauth2Main(args[1:], stdout, stderr)
	case "run":
		return runMain(rest, stdout, stderr)
	case "archive":
		return archiveCommand(rest, stdout, stderr)
	case "backup":
		return backupMain(rest, stdout, stderr)
	case "docs":
		return docsCommand(args[1:], stdout, stderr)
	case "status":
		return statusMain(rest, stdout, stderr)
	case "demo":
		return demoMain(rest, stdout, stderr)
	case "version", "--version", "-version":
		return versionMain(rest, stdout, stderr)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usageText)
		return exitOK
	}
	fmt.Fprintf(stderr, "smimed: unknown command %q (see smimed help)\n", cmd)
	return exitUsage
}

// newFlags makes a FlagSet that reports errors in one line and never exits.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses args, allowing flags after positional arguments
// ("inspect a.eml --json"), and prints a one-line error on failure. It
// returns help=true when -h/--help was asked for.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer, usage string) (positional []string, code int, done bool) {
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return nil, exitOK, true
		}
		if err != nil {
			fmt.Fprintf(stderr, "smimed %s: %v (see smimed %s --help)\n", fs.Name(), err, fs.Name())
			return nil, exitUsage, true
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, exitOK, false
		}
		// "-" alone is a file name (stdin); "--" ends the flags.
		if rest[0] == "--" {
			return append(positional, rest[1:]...), exitOK, false
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// oneSubcommand is the start of a command with one subcommand ("keys
// list", "oauth2 login"): fs is named "COMMAND SUBCOMMAND" and has its
// flags. It checks that args begin with the subcommand (or ask for help)
// and parses the flags that follow, which take no positional argument.
// done is true, with the exit code, when the command ends here.
func oneSubcommand(fs *flag.FlagSet, args []string, usage string, stdout, stderr io.Writer) (code int, done bool) {
	cmd, sub, _ := strings.Cut(fs.Name(), " ")
	if len(args) == 0 || args[0] != sub {
		if len(args) > 0 && (args[0] == "--help" || args[0] == "-h" || args[0] == "-help" || args[0] == "help") {
			fmt.Fprint(stdout, usage)
			return exitOK, true
		}
		fmt.Fprintf(stderr, "smimed %s: want the subcommand %s (see smimed %s --help)\n", cmd, sub, cmd)
		return exitUsage, true
	}
	rest, code, done := parseFlags(fs, args[1:], stdout, stderr, usage)
	if done {
		return code, true
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "smimed %s: unexpected argument %q\n", fs.Name(), rest[0])
		return exitUsage, true
	}
	return 0, false
}
