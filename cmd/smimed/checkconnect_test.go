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

// TestKeysList (issue 14): smimed keys list shows each configured key's
// issuer, serial, subject key identifier and fingerprint as openssl prints
// them for the same certificate, and the accounts it decrypts for.
func TestKeysList(t *testing.T) {
	dir := t.TempDir()
	testenv.CopyPKI(t, dir, "org-new.crt", "org-new.key", "org-old.crt", "org-old.key", "ca-bundle.pem")
	cfgText := testenv.Config(filepath.Join(dir, "state"), "", []string{"org-new"}) +
		"[[keys]]\ncert_file = \"org-old.crt\"\nkey_file = \"org-old.key\"\naccounts = [\"ceo\"]\n" + testenv.Account("ceo", "127.0.0.1:1", "")
	conf := filepath.Join(dir, "smimed.toml")
	if err := os.WriteFile(conf, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(nil, "keys", "list", "--config", conf)
	if code != exitOK {
		t.Fatalf("keys list: exit %d, %s", code, errOut)
	}
	for _, cert := range []string{"org-new.crt", "org-old.crt"} {
		p := filepath.Join(dir, cert)
		for _, line := range strings.Split(strings.TrimSpace(string(testenv.OpenSSL(t, "", "x509", "-in", p, "-noout", "-subject", "-issuer", "-serial"))), "\n") {
			if !strings.Contains(out, "  "+line+"\n") {
				t.Errorf("keys list lacks openssl's %q for %s:\n%s", line, cert, out)
			}
		}
		ski := strings.Split(strings.TrimSpace(string(testenv.OpenSSL(t, "", "x509", "-in", p, "-noout", "-ext", "subjectKeyIdentifier"))), "\n")
		if want := "  ski=" + strings.TrimSpace(ski[len(ski)-1]) + "\n"; !strings.Contains(out, want) {
			t.Errorf("keys list lacks %q for %s", want, cert)
		}
		fp := strings.ReplaceAll(strings.TrimPrefix(strings.TrimSpace(string(testenv.OpenSSL(t, "", "x509", "-in", p, "-noout", "-fingerprint", "-sha256"))), "sha256 Fingerprint="), ":", "")
		if !strings.Contains(out, "  sha256="+fp+"\n") {
			t.Errorf("keys list lacks the fingerprint %s of %s", fp, cert)
		}
	}
	if !strings.Contains(out, "keys[1]  "+filepath.Join(dir, "org-old.crt")) || !strings.Contains(out, "decrypts for: ceo\n") || !strings.Contains(out, "decrypts for: every mailbox\n") {
		t.Errorf("entries or accounts missing:\n%s", out)
	}
}
