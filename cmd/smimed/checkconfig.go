package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/smimed/smimed/daemon"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/harvest"
)

const checkConfigUsage = `Usage: smimed check-config [--config FILE] [--as USER] [--connect]

Reads the configuration, loads every key and trust anchor, reads every
password file, and lists every problem with the key it belongs to. Exit 0
when all is well, 2 otherwise. A warning (exit 0) names each RSA key under
1,024 bits: it is loaded to decrypt old mail only.

Files are opened as the user that runs smimed will open them: run as root,
check-config checks as the user smimed when it exists (the service's
user), or as USER.

  --config FILE   configuration file (default /etc/smimed/smimed.toml)
  --as USER       check as USER (needs root; "root" checks as root)
  --connect       also try every mailbox: resolve, connect, TLS, log in,
                  examine each folder, create the archive folder if missing;
                  and ask the WORM bucket ([archive.worm]) for Object Lock;
                  one line a check, exit 1 when one fails
`

func checkConfigMain(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check-config")
	configPath := fs.String("config", config.DefaultPath, "")
	as := fs.String("as", "", "")
	connect := fs.Bool("connect", false, "")
	rest, code, done := parseFlags(fs, args, stdout, stderr, checkConfigUsage)
	if done {
		return code
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "smimed check-config: unexpected argument %q\n", rest[0])
		return exitUsage
	}
	var extra []string
	if *connect {
		extra = append(extra, "--connect")
	}
	if code, switched := checkAs(*as, *configPath, extra, stdout, stderr); switched {
		return code
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
		if cfg.Archive.Seal.Enabled() {
			_, _, err = cfg.Archive.Seal.Roots()
			collect(err)
		}
		collect(cfg.CheckAccounts())
		signing, swarn, err := config.LoadSigningWarn(cfg)
		collect(err)
		for _, w := range swarn {
			fmt.Fprintf(stdout, "%s: warning: %s\n", *configPath, w)
		}
		gwSummary, err := daemon.CheckGateway(cfg)
		collect(err)
		collect(cfg.CheckWorm())
		for _, w := range append(cfg.MissingRefreshTokens(), cfg.RetentionWarnings()...) {
			fmt.Fprintf(stdout, "%s: warning: %s\n", *configPath, w)
		}
		if len(problems) == 0 {
			fmt.Fprintf(stdout, "%s: ok (%d decryption key(s), %d mailbox(es), state_dir %s)\n", *configPath, len(keys), len(cfg.Accounts), cfg.StateDir)
			for _, id := range signing.All() {
				fmt.Fprintf(stdout, "%s: signing[%d]: signs for %s with %s\n", *configPath, id.Entry, strings.Join(append(slices.Clone(id.Addresses), id.Domains...), ", "), harvest.Fingerprint(id.Cert))
			}
			if gwSummary != "" {
				fmt.Fprintf(stdout, "%s: ok (%s)\n", *configPath, gwSummary)
			}
			if *connect && checkConnect(cfg, stdout) > 0 {
				return exitFailed
			}
			return exitOK
		}
	}
	for _, p := range problems {
		fmt.Fprintf(stderr, "%s: %s\n", *configPath, p)
	}
	return exitUsage
}

// serviceUser is the user the unit runs smimed as.
const serviceUser = "smimed"

// checkAs runs check-config again as the user name (as root; "" means
// the service's user when it exists, else the caller), so that every file
// is opened as `smimed run` will open it: a password file only root can
// read passes as root and fails the service. switched is false when the
// check is to run in this process.
func checkAs(name, configPath string, extra []string, stdout, stderr io.Writer) (code int, switched bool) {
	me, err := user.Current()
	if err != nil {
		fmt.Fprintf(stderr, "smimed check-config: who am I: %v\n", err)
		return exitFailed, true
	}
	if name == "" {
		if os.Geteuid() != 0 {
			return 0, false
		}
		if _, err := user.Lookup(serviceUser); err != nil {
			return 0, false
		}
		name = serviceUser
		fmt.Fprintf(stdout, "checking as user %s, the service's user (--as root checks as root)\n", name)
	} else if name != me.Username {
		fmt.Fprintf(stdout, "checking as user %s\n", name)
	}
	if name == me.Username {
		return 0, false
	}
	if os.Geteuid() != 0 {
		fmt.Fprintf(stderr, "smimed check-config: --as %s needs root (or run it as %s: sudo -u %s smimed check-config)\n", name, name, name)
		return exitUsage, true
	}
	u, err := user.Lookup(name)
	if err != nil {
		fmt.Fprintf(stderr, "smimed check-config: --as: %v\n", err)
		return exitUsage, true
	}
	cred, err := credential(u)
	if err != nil {
		fmt.Fprintf(stderr, "smimed check-config: --as %s: %v\n", name, err)
		return exitFailed, true
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "smimed check-config: %v\n", err)
		return exitFailed, true
	}
	if abs, err := filepath.Abs(configPath); err == nil {
		configPath = abs
	}
	cmd := exec.Command(exe, append([]string{"check-config", "--config", configPath, "--as", name}, extra...)...)
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return exitOK, true
	case errors.As(err, &ee) && ee.ExitCode() > 0:
		return ee.ExitCode(), true
	}
	fmt.Fprintf(stderr, "smimed check-config: running as %s: %v\n", name, err)
	return exitFailed, true
}

// credential is u's uid, primary gid and groups.
func credential(u *user.User) (*syscall.Credential, error) {
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("groups: %w", err)
	}
	var groups []uint32
	for _, g := range ids {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			groups = append(groups, uint32(n))
		}
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}, nil
}
