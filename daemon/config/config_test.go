package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfigDefaultsAndPaths(t *testing.T) {
	dir := t.TempDir()
	creds := t.TempDir()
	writeFile(t, creds, "ceo.pass", "secret\n")
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	p := writeFile(t, dir, "smimed.toml", `
state_dir = "state"
max_message_size = "10MiB"
[[keys]]
pkcs12_file = "ceo.p12"
password_file = "ceo.pass"
[[keys]]
pkcs12_file = "/abs/old.p12"
password_file = "old.pass"
`)
	cfg, err := Load(p)
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	if cfg.StateDir != filepath.Join(dir, "state") {
		t.Errorf("StateDir = %s, want it next to the config", cfg.StateDir)
	}
	if cfg.MaxMessageSize != 10*1024*1024 {
		t.Errorf("MaxMessageSize = %d, want 10 MiB", cfg.MaxMessageSize)
	}
	if !cfg.Trust.SystemRoots {
		t.Errorf("system_roots default = false, want true")
	}
	if got := cfg.Keys[0].PasswordFile; got != filepath.Join(creds, "ceo.pass") {
		t.Errorf("password_file = %s, want it from $CREDENTIALS_DIRECTORY", got)
	}
	// Not in the credentials directory: next to the config.
	if got := cfg.Keys[1].PasswordFile; got != filepath.Join(dir, "old.pass") {
		t.Errorf("password_file = %s, want it next to the config", got)
	}
	if cfg.Keys[1].PKCS12File != "/abs/old.p12" {
		t.Errorf("absolute pkcs12_file changed to %s", cfg.Keys[1].PKCS12File)
	}
}

func TestLoadConfigProblems(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "smimed.toml", `
state_dir = ""
max_message_size = 12
typo_key = 1
[trust]
ca_files = ["missing.pem"]
[[keys]]
cert_file = "a.pem"
[[keys]]
pkcs12_file = "a.p12"
cert_file = "b.pem"
[[keys]]
`)
	_, err := Load(p)
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Load() = %v, want *Error", err)
	}
	want := []string{"state_dir:", "max_message_size:", "typo_key: unknown key", "keys[0]:", "keys[1]:", "keys[2]:"}
	if len(ce.Problems) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(ce.Problems), len(want), strings.Join(ce.Problems, "\n"))
	}
	all := strings.Join(ce.Problems, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("problems lack %q:\n%s", w, all)
		}
	}
	if _, err := Load(filepath.Join(dir, "nope.toml")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing file: %v", err)
	}
	bad := writeFile(t, dir, "bad.toml", "state_dir = \n")
	if _, err := Load(bad); err == nil || strings.Count(err.Error(), "\n") > 0 {
		t.Errorf("syntax error: %v, want one line", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[any]int64{int64(4096): 4096, "50MiB": 50 << 20, "2 KiB": 2048, "1GB": 1e9, "2048": 2048} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%v) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []any{"-5MiB", "x", 3.5, int64(10)} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%v) accepted", in)
		}
	}
}

func TestTrustPoolProblems(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "junk.pem", "not a certificate\n")
	p := writeFile(t, dir, "smimed.toml", `
[trust]
system_roots = false
ca_files = ["missing.pem", "junk.pem"]
`)
	cfg, err := Load(p)
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	_, err = cfg.TrustPool()
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Problems) != 2 ||
		!strings.Contains(ce.Problems[0], "trust.ca_files[0]") || !strings.Contains(ce.Problems[1], "trust.ca_files[1]") {
		t.Errorf("TrustPool() = %v, want one problem per bad CA file", err)
	}
	if _, err := parseSize("9000000000GiB"); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Errorf("parseSize(huge) = %v, want too large", err)
	}
}

func TestAccountsAndDaemon(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "ceo.imap.pass", "pw\n")
	p := writeFile(t, dir, "smimed.toml", `
[daemon]
workers = 3
idle_restart = "20m"
log_format = "json"
authserv_id = "mx.example.org"

[[accounts]]
name = "ceo"
server = "imap.example.org:993"
username = "ceo@example.org"
password_file = "ceo.imap.pass"
folders = ["INBOX", "Partners"]
archive_folder = "Decrypted"
archive_folder_messages = "smime"
backfill = "since:2026-01-01"

[[accounts]]
name = "local"
server = "127.0.0.1:143"
tls = "none"
auth = "login"
username = "u"
password_file = "ceo.imap.pass"
folders = ["INBOX"]
`)
	cfg, err := Load(p)
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	if len(cfg.Accounts) != 2 {
		t.Fatalf("Accounts = %+v", cfg.Accounts)
	}
	a := cfg.Accounts[0]
	if a.TLS != "implicit" || a.Auth != "plain" || a.PasswordFile != filepath.Join(dir, "ceo.imap.pass") || a.ArchiveFolder != "Decrypted" || a.Backfill != "since:2026-01-01" || a.ArchiveFolderMessages != "smime" {
		t.Errorf("account defaults/paths wrong: %+v", a)
	}
	if d := cfg.Daemon; d.Workers != 3 || d.IdleRestart.Minutes() != 20 || d.LivenessInterval.Minutes() != 5 || d.PollInterval.Seconds() != 60 || d.LogFormat != "json" || d.MetricsListen != "" || d.AuthservID != "mx.example.org" {
		t.Errorf("daemon = %+v", d)
	}
	if err := cfg.CheckAccounts(); err != nil {
		t.Errorf("CheckAccounts() = %v", err)
	}
	if m := cfg.Accounts[1].ArchiveFolderMessages; m != "encrypted" {
		t.Errorf("archive_folder_messages default = %q, want encrypted", m)
	}
	os.Chmod(filepath.Join(dir, "ceo.imap.pass"), 0o644)
	if err := cfg.CheckAccounts(); err == nil || !strings.Contains(err.Error(), "accounts[0].password_file") {
		t.Errorf("CheckAccounts() with a group-readable password file = %v", err)
	}

	bad := writeFile(t, dir, "bad.toml", `
[daemon]
workers = 0
idle_restart = "45m"
poll_interval = "soon"
log_format = "xml"
metrics_listen = "9187"
authserv_id = "bad id; x"

[[accounts]]
name = "a"
server = "imap.example.org"
tls = "none"
username = ""
folders = ["INBOX", "INBOX"]
archive_folder = "INBOX"
archive_folder_messages = "signed"
backfill = "since:yesterday"
auth = "gssapi"

[[accounts]]
name = "a"
server = "mail.example.org:993"
username = "x"
password_file = "p"
folders = []
`)
	_, err = Load(bad)
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Load(bad) = %v", err)
	}
	all := strings.Join(ce.Problems, "\n")
	for _, want := range []string{
		"daemon.workers:", "daemon.idle_restart:", "daemon.poll_interval:", "daemon.log_format:", "daemon.metrics_listen:", "daemon.authserv_id:", "accounts[0].archive_folder_messages:",
		"accounts[0].server:", "accounts[0].tls:", "accounts[0].username:", "accounts[0].password_file:", "accounts[0].auth:",
		"accounts[0].folders[1]:", "accounts[0].archive_folder:", "accounts[0].backfill:",
		"accounts[1].name:", "accounts[1].folders:",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}
}
