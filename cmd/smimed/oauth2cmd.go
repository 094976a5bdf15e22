package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/daemon/oauth"
)

const oauth2Usage = `Usage: smimed oauth2 login [--config FILE] --account NAME

Gets the refresh token of an account whose [accounts.oauth2] names a
device_auth_url, by the device authorization grant (RFC 8628): prints a
URL and a code, and waits while someone who may read the mailbox opens the
URL, enters the code and agrees. The refresh token is kept in
state_dir/oauth2/NAME.json (mode 0600, owned like state_dir); smimed run
uses it from its next login and keeps the one the provider rotates in.
Run it again when the grant was revoked. Exit 0 when the token is kept.

  --config FILE    configuration file (default /etc/smimed/smimed.toml)
  --account NAME   the [[accounts]] entry
`

func oauth2Main(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("oauth2 login")
	configPath := fs.String("config", config.DefaultPath, "")
	name := fs.String("account", "", "")
	if code, done := oneSubcommand(fs, args, oauth2Usage, stdout, stderr); done {
		return code
	}
	if *name == "" {
		fmt.Fprintln(stderr, "smimed oauth2 login: --account NAME is required")
		return exitUsage
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "smimed: %v\n", err)
		return exitUsage
	}
	var acct *config.Account
	for i := range cfg.Accounts {
		if cfg.Accounts[i].Name == *name {
			acct = &cfg.Accounts[i]
		}
	}
	switch {
	case acct == nil:
		fmt.Fprintf(stderr, "smimed oauth2 login: no [[accounts]] entry named %q\n", *name)
		return exitUsage
	case acct.OAuth2 == nil || acct.OAuth2.Grant() != oauth.RefreshToken:
		fmt.Fprintf(stderr, "smimed oauth2 login: account %s has no device login (auth = \"xoauth2\" or \"oauthbearer\" with oauth2.device_auth_url)\n", *name)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	file := cfg.TokenFile(*acct)
	err = oauth.DeviceLogin(ctx, *acct.OAuth2, file, func(url, code string, expires time.Time) {
		fmt.Fprintf(stdout, "Open %s and enter the code %s", url, code)
		if !expires.IsZero() {
			fmt.Fprintf(stdout, " (before %s)", expires.Local().Format("15:04"))
		}
		fmt.Fprintf(stdout, ", signed in as %s or an administrator who may grant access to it. Waiting…\n", acct.Username)
	})
	if err != nil {
		fmt.Fprintf(stderr, "smimed oauth2 login: %v\n", err)
		return exitFailed
	}
	if err := ownLikeStateDir(cfg.StateDir, file); err != nil {
		fmt.Fprintf(stderr, "smimed oauth2 login: %v\n", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "refresh token kept in %s\n", file)
	return exitOK
}

// ownLikeStateDir gives file and its directory the owner of state_dir,
// so that the service (user smimed) reads what root wrote.
func ownLikeStateDir(stateDir, file string) error {
	fi, err := os.Stat(stateDir)
	if err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || os.Geteuid() != 0 {
		return nil
	}
	for _, p := range []string{filepath.Dir(file), file} {
		if err := os.Chown(p, int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("giving %s to state_dir's owner: %w", p, err)
		}
	}
	return nil
}
