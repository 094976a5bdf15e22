package daemon

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/daemon/oauth"
	"github.com/smimed/smimed/daemon/testenv"
)

// TestScenarioOAuth2 (issue 14): Dovecot with an oauth2 passdb whose
// introspection URL is a token server started by the test (client
// credentials, as Microsoft 365's IMAP.AccessAsApp). A users block logs
// in to each mailbox with SASL XOAUTH2 and one token for all, a block of
// one mailbox with OAUTHBEARER; no user password is known. When the
// server stops taking the token in hand (revoked, or expired, and the
// session kicked with doveadm kick), smimed gets a fresh one and logs in
// again. A revoked client secret is a login refusal naming the account in
// status, without a storm of token requests, and the secret never
// appears in the log.
func TestScenarioOAuth2(t *testing.T) {
	t.Parallel()
	const secret = "app-secret-do-not-log"
	ts := testenv.StartTokenServer(t, "smimed-app", secret, time.Hour)
	e := &svcEnv{d: testenv.StartDovecotWith(t, testenv.DovecotOptions{OAuth2Introspect: ts.URL + "/introspect"}), dir: t.TempDir()}
	e.cfgPath = filepath.Join(e.dir, "smimed.toml")
	testenv.CopyPKI(t, e.dir, "org-new.crt", "org-new.key", "org-old.crt", "org-old.key", "ca-bundle.pem")
	for _, u := range []string{"alice", "bob", "carol"} {
		e.d.AddUser(t, u, "a password smimed does not know")
		e.d.Deliver(t, u, "INBOX", testenv.Testdata(t, "msg", "enc-aes256.eml"))
	}
	if err := os.WriteFile(filepath.Join(e.dir, "app.secret"), []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	oauth2 := "[accounts.oauth2]\ntoken_url = \"" + ts.URL + "/token\"\nclient_id = \"smimed-app\"\nclient_secret_file = \"app.secret\"\nscope = \"imap\"\n"
	staff := "[[accounts]]\nname = \"m365\"\nserver = \"" + e.d.Addr() + "\"\ntls = \"none\"\nauth = \"xoauth2\"\nusers = [\"alice\", \"bob\"]\nfolders = [\"INBOX\"]\narchive_folder = \"Decrypted\"\n" + oauth2
	carol := "[[accounts]]\nname = \"carol\"\nserver = \"" + e.d.Addr() + "\"\ntls = \"none\"\nauth = \"oauthbearer\"\nusername = \"carol\"\nfolders = [\"INBOX\"]\n" + oauth2
	e.writeConfig(t, "", []string{"org-new"}, staff, carol)

	logs := &testenv.LockedBuffer{}
	svc, stop := runService(t, e.cfgPath, logs)
	defer stop()
	waitArchived(t, svc, logs, 3)
	accounts := func() []string {
		var out []string
		svc.arch.List(archive.Query{}, func(r *archive.Record) error {
			if slices.Contains(r.Status, "decrypted") {
				out = append(out, r.Account)
			}
			return nil
		})
		slices.Sort(out)
		return out
	}
	if got, want := accounts(), []string{"carol", "m365/alice", "m365/bob"}; !slices.Equal(got, want) {
		t.Fatalf("decrypted records: %v, want %v\n%s", got, want, logs.String())
	}
	waitUntil(t, "alice's copy", func() bool { return len(copies(t, e.d, "alice", "Decrypted")) == 1 }, func() string { return logs.String() })
	// One token for the users block, one for carol's block.
	if n := ts.Issued(); n != 2 {
		t.Errorf("%d tokens issued, want 2 (one a block)", n)
	}

	// The server no longer takes the tokens issued; alice's session is
	// kicked; her next message comes in after a login with a fresh token.
	ts.RevokeAll()
	e.d.Doveadm(t, "kick", "alice")
	e.d.Deliver(t, "alice", "INBOX", testenv.Testdata(t, "msg", "enc-aes256.eml"))
	waitArchived(t, svc, logs, 4)
	if !strings.Contains(logs.String(), "the server refused the OAuth2 token; trying a fresh one") {
		t.Errorf("no fresh token after the refusal:\n%s", logs.String())
	}
	if n := ts.Issued(); n < 3 || n > 4 {
		t.Errorf("%d tokens issued after the kick, want 3 or 4 (a fresh one for the block, maybe one for the copies' connection)", n)
	}

	// The client secret is revoked: alice's login is refused, and status
	// names her account and the token endpoint's answer.
	ts.SetSecret("a new secret")
	ts.RevokeAll()
	asked := ts.Asked()
	e.d.Doveadm(t, "kick", "alice")
	waitLoginRefused(t, svc, logs, "m365/alice", "invalid_client")
	time.Sleep(2 * time.Second)
	if n := ts.Asked() - asked; n > 3 {
		t.Errorf("%d token requests after the secret was revoked: a storm", n)
	}
	if strings.Contains(logs.String(), secret) || strings.Contains(e.d.Log(), secret) {
		t.Error("the client secret is in a log")
	}
}

// TestScenarioOAuth2Device (issue 14): an account with a device login
// (oauth2.device_auth_url) logs in with the refresh token `smimed oauth2
// login` kept (oauth.DeviceLogin, the test approving as the user would),
// which the token server rotates at each use; once the provider revokes
// it, the login is refused with invalid_grant in status.
func TestScenarioOAuth2Device(t *testing.T) {
	t.Parallel()
	ts := testenv.StartTokenServer(t, "smimed-public", "", time.Hour)
	e := &svcEnv{d: testenv.StartDovecotWith(t, testenv.DovecotOptions{OAuth2Introspect: ts.URL + "/introspect"}), dir: t.TempDir()}
	e.cfgPath = filepath.Join(e.dir, "smimed.toml")
	testenv.CopyPKI(t, e.dir, "org-new.crt", "org-new.key", "ca-bundle.pem")
	e.d.AddUser(t, "dana", "a password smimed does not know")
	e.d.Deliver(t, "dana", "INBOX", testenv.Testdata(t, "msg", "enc-aes256.eml"))
	acct := "[[accounts]]\nname = \"dana\"\nserver = \"" + e.d.Addr() + "\"\ntls = \"none\"\nauth = \"oauthbearer\"\nusername = \"dana\"\nfolders = [\"INBOX\"]\n" +
		"[accounts.oauth2]\ntoken_url = \"" + ts.URL + "/token\"\ndevice_auth_url = \"" + ts.URL + "/device\"\nclient_id = \"smimed-public\"\nscope = \"imap offline_access\"\n"
	e.writeConfig(t, "", []string{"org-new"}, acct)
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if missing := cfg.MissingRefreshTokens(); len(missing) != 1 || !strings.Contains(missing[0], "smimed oauth2 login --account dana") {
		t.Errorf("before the login: %v, want the account named with the command", missing)
	}
	shown := make(chan string, 1)
	go func() {
		<-shown
		ts.Approve()
	}()
	if err := oauth.DeviceLogin(context.Background(), *cfg.Accounts[0].OAuth2, cfg.TokenFile(cfg.Accounts[0]), func(url, code string, _ time.Time) { shown <- url + " " + code }); err != nil {
		t.Fatalf("DeviceLogin: %v", err)
	}
	if fi, err := os.Stat(cfg.TokenFile(cfg.Accounts[0])); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("refresh token file: %v, %v; want mode 0600", fi, err)
	}

	logs := &testenv.LockedBuffer{}
	svc, stop := runService(t, e.cfgPath, logs)
	defer stop()
	waitArchived(t, svc, logs, 1)

	ts.RevokeRefreshTokens()
	ts.RevokeAll()
	e.d.Doveadm(t, "kick", "dana")
	waitLoginRefused(t, svc, logs, "dana", "invalid_grant")
}

// waitLoginRefused waits until status shows the account's folders as
// login_refused with an error containing text.
func waitLoginRefused(t *testing.T, svc *Service, logs *testenv.LockedBuffer, account, text string) {
	t.Helper()
	waitUntil(t, account+"'s login refused in status", func() bool {
		st, err := svc.Status()
		if err != nil {
			return false
		}
		for _, f := range st.Folders {
			if f.Account == account && f.State == "login_refused" && strings.Contains(f.LastError, text) {
				return true
			}
		}
		return false
	}, func() string { return logs.String() })
}
