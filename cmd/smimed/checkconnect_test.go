package main

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smimed/smimed/daemon/testenv"
)

// TestCheckConfigConnect (issue 14): check-config --connect tries every
// mailbox against a real Dovecot, one line a check: a good account passes
// every step (and its archive folder is there afterwards, as Dovecot
// says); a wrong password, a folder that does not exist, a port nobody
// listens on and a TLS server whose certificate is not trusted each fail
// with what to change; exit 1.
func TestCheckConfigConnect(t *testing.T) {
	d := testenv.StartDovecot(t)
	dir := t.TempDir()
	testenv.CopyPKI(t, dir, "org-new.crt", "org-new.key", "ca-bundle.pem")
	d.AddAccount(t, dir, "ceo")
	d.AddUser(t, "wrong", "the real password")
	testenv.WritePasswordFile(t, dir, "wrong") // holds another
	d.AddAccount(t, dir, "lost")
	tlsSrv := httptest.NewTLSServer(nil)
	defer tlsSrv.Close()
	write := func(accounts ...string) string {
		p := filepath.Join(dir, "smimed.toml")
		if err := os.WriteFile(p, []byte(testenv.Config(filepath.Join(dir, "state"), "", []string{"org-new"}, accounts...)), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	good := write(testenv.Account("ceo", d.Addr(), `archive_folder = "Decrypted"`))
	code, out, errOut := runCmd(nil, "check-config", "--config", good, "--connect")
	for _, want := range []string{"ok   account ceo: resolve 127.0.0.1", "ok   account ceo: connect " + d.Addr() + " (tls none)", "ok   account ceo: log in as ceo (plain)",
		"ok   account ceo: folder \"INBOX\": 0 messages", "ok   account ceo: archive_folder \"Decrypted\""} {
		if !strings.Contains(out, want) {
			t.Errorf("good account: no %q in\n%s%s", want, out, errOut)
		}
	}
	if code != exitOK {
		t.Errorf("good account: exit %d", code)
	}
	if list := d.Doveadm(t, "mailbox", "list", "-u", "ceo"); !strings.Contains(list, "Decrypted") {
		t.Errorf("Dovecot lists no Decrypted folder for ceo after the check:\n%s", list)
	}

	unused := testenv.FreeAddr(t)
	bad := write(
		testenv.Account("wrong", d.Addr(), ""),
		testenv.Account("lost", d.Addr(), "", "INBOX", "Nope"),
		strings.Replace(testenv.Account("ceo", unused, ""), `name = "ceo"`, `name = "down"`, 1),
		strings.Replace(strings.Replace(testenv.Account("ceo", strings.TrimPrefix(tlsSrv.URL, "https://"), ""), `tls = "none"`, `tls = "implicit"`, 1), `name = "ceo"`, `name = "selfsigned"`, 1),
	)
	code, out, _ = runCmd(nil, "check-config", "--config", bad, "--connect")
	if code != exitFailed {
		t.Errorf("bad accounts: exit %d, want 1", code)
	}
	for _, want := range []string{
		"FAIL account wrong: log in:", "check username and password_file",
		"ok   account lost: folder \"INBOX\"", "FAIL account lost: folder \"Nope\":",
		"FAIL account down: connect:",
		"FAIL account selfsigned: TLS:", "set tls_ca_file to the CA that issued it",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("bad accounts: no %q in\n%s", want, out)
		}
	}
}
