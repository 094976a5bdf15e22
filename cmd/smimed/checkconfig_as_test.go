package main

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
)

// TestCheckConfigAs (issue 14): check-config opens every secret as the
// user who will run smimed. As root, a password file only root can read
// passes with --as root and fails with --as nobody, with exit 2 (what
// `run` would then meet); root:nogroup 0640 (the service's group) passes
// for nobody; an empty password file fails.
func TestCheckConfigAs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root (CI runs as root)")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	dir, err := os.MkdirTemp("", "checkconfig-as-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "smimed")
	data, err := os.ReadFile(buildBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.CopyPKI(t, dir, "org-new.crt", "org-new.key", "ca-bundle.pem")
	for _, f := range []string{"org-new.crt", "org-new.key", "ca-bundle.pem"} {
		if err := os.Chown(filepath.Join(dir, f), uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "smimed.toml")
	if err := os.WriteFile(conf, []byte(testenv.Config("state", "", []string{"org-new"}, testenv.Account("ceo", "127.0.0.1:1", ""))), 0o644); err != nil {
		t.Fatal(err)
	}
	pass := filepath.Join(dir, "ceo.pass")
	run := func(args ...string) (int, string) {
		t.Helper()
		out, err := exec.Command(bin, append([]string{"check-config", "--config", conf}, args...)...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	for _, tc := range []struct {
		name, content string
		uid, gid      int
		mode          os.FileMode
		as            string
		code          int
		want          string
	}{
		{"root's file, as root", "secret\n", 0, 0, 0o600, "root", 0, "ok ("},
		{"root's file, as nobody", "secret\n", 0, 0, 0o600, "nobody", 2, "accounts[0].password_file: password file " + pass},
		{"root:nogroup 0640, as nobody", "secret\n", 0, gid, 0o640, "nobody", 0, "ok ("},
		{"root:root 0640, as nobody", "secret\n", 0, 0, 0o640, "nobody", 2, "is readable by group or others (mode 0640)"},
		{"empty, as nobody", "", uid, gid, 0o600, "nobody", 2, "password file " + pass + " is empty"},
	} {
		if err := os.WriteFile(pass, []byte(tc.content), tc.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(pass, tc.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(pass, tc.uid, tc.gid); err != nil {
			t.Fatal(err)
		}
		code, out := run("--as", tc.as)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d:\n%s\nwant exit %d with %q", tc.name, code, out, tc.code, tc.want)
		}
		if tc.as != "root" && !strings.Contains(out, "checking as user "+tc.as) {
			t.Errorf("%s: does not say as whom it checks:\n%s", tc.name, out)
		}
	}
	if code, out := run("--as", "no-such-user-here"); code != 2 || !strings.Contains(out, "no-such-user-here") {
		t.Errorf("--as an unknown user: exit %d:\n%s", code, out)
	}
}

// TestRunEmptyPasswordFile (issue 14): what check-config refuses, run
// refuses the same way: a configuration error, exit 2 (systemd does not
// restart after it), naming the key.
func TestRunEmptyPasswordFile(t *testing.T) {
	dir := t.TempDir()
	testenv.CopyPKI(t, dir, "org-new.crt", "org-new.key", "ca-bundle.pem")
	conf := filepath.Join(dir, "smimed.toml")
	if err := os.WriteFile(conf, []byte(testenv.Config(filepath.Join(dir, "state"), "", []string{"org-new"}, testenv.Account("ceo", "127.0.0.1:1", ""))), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ceo.pass"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"check-config", "run"} {
		code, _, errOut := runCmd(nil, cmd, "--config", conf)
		if code != exitUsage || !strings.Contains(errOut, "accounts[0].password_file: password file") || !strings.Contains(errOut, "is empty") {
			t.Errorf("smimed %s with an empty password file: exit %d, %q; want exit 2 naming accounts[0].password_file", cmd, code, errOut)
		}
	}
}

// TestOAuth2Login (issue 14): smimed oauth2 login shows the provider's URL
// and code, waits for the approval, and keeps the refresh token 0600 where
// run reads it; an account without a device login is a usage error.
func TestOAuth2Login(t *testing.T) {
	ts := testenv.StartTokenServer(t, "smimed-public", "", time.Hour)
	dir := t.TempDir()
	testenv.CopyPKI(t, dir, "org-new.crt", "org-new.key", "ca-bundle.pem")
	acct := "[[accounts]]\nname = \"dana\"\nserver = \"127.0.0.1:1\"\ntls = \"none\"\nauth = \"oauthbearer\"\nusername = \"dana@example.org\"\nfolders = [\"INBOX\"]\n" +
		"[accounts.oauth2]\ntoken_url = \"" + ts.URL + "/token\"\ndevice_auth_url = \"" + ts.URL + "/device\"\nclient_id = \"smimed-public\"\nscope = \"imap offline_access\"\n"
	conf := filepath.Join(dir, "smimed.toml")
	if err := os.WriteFile(conf, []byte(testenv.Config(filepath.Join(dir, "state"), "", []string{"org-new"}, acct, testenv.Account("plainuser", "127.0.0.1:1", ""))), 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.WritePasswordFile(t, dir, "plainuser")
	if code, out, _ := runCmd(nil, "check-config", "--config", conf); code != exitOK || !strings.Contains(out, "warning: accounts[0].oauth2: no refresh token yet") {
		t.Errorf("check-config before the login: exit %d, %q; want ok with a warning", code, out)
	}
	ts.Approve() // the user agrees at once
	code, out, errOut := runCmd(nil, "oauth2", "login", "--config", conf, "--account", "dana")
	if code != exitOK || !strings.Contains(out, "Open "+ts.URL+"/activate and enter the code WDJB-MJHT") || !strings.Contains(out, "refresh token kept in") {
		t.Fatalf("oauth2 login: exit %d, %q, %q", code, out, errOut)
	}
	fi, err := os.Stat(filepath.Join(dir, "state", "oauth2", "dana.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the refresh token file: %v, %v; want mode 0600", fi, err)
	}
	if code, out, _ := runCmd(nil, "check-config", "--config", conf); code != exitOK || strings.Contains(out, "warning") {
		t.Errorf("check-config after the login: exit %d, %q; want ok without a warning", code, out)
	}
	if code, _, errOut := runCmd(nil, "oauth2", "login", "--config", conf, "--account", "plainuser"); code != exitUsage || !strings.Contains(errOut, "has no device login") {
		t.Errorf("oauth2 login for a password account: exit %d, %q", code, errOut)
	}
}
