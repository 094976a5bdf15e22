package config

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestUsersBlocks (issue 14): a block with users or users_file becomes one
// mailbox a user, named BLOCK/USER, logging in as the block's (master)
// username with the user as authorization identity, or with the user put
// into username's {user}. A user with a block of its own on the same
// server is watched by that block only.
func TestUsersBlocks(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "m.pass", "secret\n")
	writeFile(t, dir, "alice.pass", "secret\n")
	writeFile(t, dir, "users.txt", "# staff\nalice@org.example\n  bob@org.example   # on leave\n\ncarol@org.example\n")
	p := writeFile(t, dir, "smimed.toml", `
[[accounts]]
name = "staff"
server = "imap.org.example:993"
username = "smimed-admin"
password_file = "m.pass"
users_file = "users.txt"
folders = ["INBOX", "Sent"]
archive_folder = "Decrypted"

[[accounts]]
name = "board"
server = "imap.org.example:993"
username = "{user}*master"
auth = "login"
password_file = "m.pass"
users = ["ceo@org.example"]
folders = ["INBOX"]

[[accounts]]
name = "alice"
server = "imap.org.example:993"
username = "alice@org.example"
password_file = "alice.pass"
folders = ["INBOX"]
`)
	cfg, err := Load(p)
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	type mb struct{ name, block, username, authzid string }
	var got []mb
	for _, a := range cfg.Accounts {
		got = append(got, mb{a.Name, a.Block, a.Username, a.Authzid})
		if a.Block == "staff" && (!slices.Equal(a.Folders, []string{"INBOX", "Sent"}) || a.ArchiveFolder != "Decrypted" || a.PasswordFile != filepath.Join(dir, "m.pass")) {
			t.Errorf("%s does not have its block's settings: %+v", a.Name, a)
		}
	}
	want := []mb{
		{"alice", "", "alice@org.example", ""},
		{"staff/bob@org.example", "staff", "smimed-admin", "bob@org.example"},
		{"staff/carol@org.example", "staff", "smimed-admin", "carol@org.example"},
		{"board/ceo@org.example", "board", "ceo@org.example*master", ""},
	}
	if !slices.Equal(got, want) {
		t.Errorf("mailboxes:\n got %+v\nwant %+v", got, want)
	}
	if err := cfg.CheckAccounts(); err != nil {
		t.Errorf("CheckAccounts() = %v", err)
	}

	for _, tc := range []struct {
		name, block, file, want string
	}{
		{"both", `users = ["a"]` + "\nusers_file = \"users.txt\"", "", "users_file: set users or users_file, not both"},
		{"empty file", `users_file = "none.txt"`, "# nobody yet\n", "lists no users"},
		{"missing file", `users_file = "absent.txt"`, "", "absent.txt"},
		{"twice", `users_file = "twice.txt"`, "a@x\nb@x\na@x\n", "twice.txt line 3: \"a@x\" is listed twice"},
		{"bad name", `users_file = "bad.txt"`, "a@x\nb c@x\n", "bad.txt line 2: \"b c@x\" is not a user name"},
		{"slash", `users = ["a/b"]`, "", "users[0]: \"a/b\" is not a user name"},
		{"login without template", `users = ["a"]` + "\nauth = \"login\"", "", "a block with users needs auth = \"plain\""},
		{"authzid in block", `users = ["a"]` + "\nauthzid = \"x\"", "", "leave authzid out"},
		{"template alone", `username = "{user}*m"`, "", "username: {user} is for a block with users"},
		{"authzid with login", `authzid = "x"` + "\nauth = \"login\"", "", "authzid: needs auth = \"plain\""},
	} {
		if tc.file != "" {
			name := strings.Fields(strings.SplitN(tc.block, `"`, 3)[1])[0]
			writeFile(t, dir, name, tc.file)
		}
		username := "username = \"admin\"\n"
		if strings.Contains(tc.block, "username") {
			username = ""
		}
		p := writeFile(t, dir, "bad.toml", "[[accounts]]\nname = \"b\"\nserver = \"imap.org.example:993\"\n"+username+"password_file = \"m.pass\"\nfolders = [\"INBOX\"]\n"+tc.block+"\n")
		_, err := Load(p)
		var ce *Error
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "accounts[0].") {
			t.Errorf("%s: Load() = %v; want a problem of accounts[0] saying %q", tc.name, err, tc.want)
		}
	}
}

// TestKeyAccounts (issue 14): a [[keys]] entry limited to accounts must
// name blocks or mailboxes that exist.
func TestKeyAccounts(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "m.pass", "secret\n")
	accounts := `
[[accounts]]
name = "staff"
server = "imap.org.example:993"
username = "admin"
password_file = "m.pass"
users = ["alice@org.example"]
folders = ["INBOX"]
`
	for _, tc := range []struct{ list, want string }{
		{`["staff", "staff/alice@org.example"]`, ""},
		{`["board"]`, `keys[0].accounts[0]: "board" names no [[accounts]] block or mailbox`},
		{`["staff/bob@org.example"]`, `keys[0].accounts[0]: "staff/bob@org.example" names no`},
		{`[]`, "keys[0].accounts: an empty list"},
	} {
		p := writeFile(t, dir, "k.toml", "[[keys]]\ncert_file = \"a.crt\"\nkey_file = \"a.key\"\naccounts = "+tc.list+"\n"+accounts)
		cfg, err := Load(p)
		switch {
		case tc.want == "" && (err != nil || !slices.Equal(cfg.Keys[0].Accounts, []string{"staff", "staff/alice@org.example"})):
			t.Errorf("accounts = %s: %v", tc.list, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("accounts = %s: Load() = %v, want %q", tc.list, err, tc.want)
		}
	}
}

// TestUnknownKeyHints (issue 14): an unknown key says which table it
// belongs in, or which key of its own table it is closest to; all of them
// and the other problems come in one pass.
func TestUnknownKeyHints(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "smimed.toml", `
workers = 3
[trust]
revokation = "soft"
[[accounts]]
name = "a"
server = "imap.example.org:993"
username = "u"
password_file = "absent.pass"
folders = ["INBOX"]
workers = 4
tls_servername = "imap.example.org"
state_dir = "/x"
frobnicate = 1
`)
	cfg, err := Load(p)
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Load() = %v", err)
	}
	problems := ce.Problems
	if cfg != nil {
		if err := cfg.CheckAccounts(); errors.As(err, &ce) {
			problems = append(problems, ce.Problems...)
		}
	}
	all := strings.Join(problems, "\n")
	for _, want := range []string{
		"workers: unknown key; workers belongs in [daemon]",
		"trust.revokation: unknown key; did you mean revocation?",
		"accounts.workers: unknown key; workers belongs in [daemon]",
		"accounts.tls_servername: unknown key; did you mean tls_server_name?",
		"accounts.state_dir: unknown key; state_dir belongs in the top level",
		"accounts.frobnicate: unknown key\n",
		"accounts[0].password_file: password file " + filepath.Join(dir, "absent.pass") + " does not exist",
	} {
		if !strings.Contains(all+"\n", want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}
}

// TestOAuth2Accounts (issue 14): [accounts.oauth2] is checked whole; a
// users block with OAuth2 logs each user in as itself.
func TestOAuth2Accounts(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "app.secret", "s\n")
	head := "[[accounts]]\nname = \"m\"\nserver = \"imap.example.org:993\"\nfolders = [\"INBOX\"]\n"
	good := head + "auth = \"xoauth2\"\nusers = [\"a@example.org\", \"b@example.org\"]\n[accounts.oauth2]\ntoken_url = \"https://login.example/token\"\nclient_id = \"id\"\nclient_secret_file = \"app.secret\"\nscope = \"imap\"\n"
	cfg, err := Load(writeFile(t, dir, "good.toml", good))
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	if len(cfg.Accounts) != 2 || cfg.Accounts[0].Username != "a@example.org" || cfg.Accounts[0].Authzid != "" || cfg.Accounts[0].OAuth2 == nil || cfg.Accounts[0].OAuth2.Scopes[0] != "imap" {
		t.Errorf("accounts: %+v", cfg.Accounts)
	}
	if err := cfg.CheckAccounts(); err != nil {
		t.Errorf("CheckAccounts() = %v", err)
	}
	for _, tc := range []struct{ name, body, want string }{
		{"no table", "auth = \"xoauth2\"\nusername = \"u\"\n", "needs an [accounts.oauth2] table"},
		{"table without auth", "username = \"u\"\npassword_file = \"app.secret\"\n[accounts.oauth2]\nscope = \"s\"\n", "table needs auth = \"xoauth2\" or \"oauthbearer\""},
		{"password too", "auth = \"xoauth2\"\nusername = \"u\"\npassword_file = \"app.secret\"\n[accounts.oauth2]\ntoken_url = \"https://x/t\"\nclient_id = \"i\"\nclient_secret_file = \"app.secret\"\nscope = \"s\"\n", "OAuth2 logins use no password"},
		{"http elsewhere", "auth = \"xoauth2\"\nusername = \"u\"\n[accounts.oauth2]\ntoken_url = \"http://login.example/t\"\nclient_id = \"i\"\nclient_secret_file = \"app.secret\"\nscope = \"s\"\n", "only allowed to a loopback address"},
		{"no scope", "auth = \"xoauth2\"\nusername = \"u\"\n[accounts.oauth2]\ntoken_url = \"https://x/t\"\nclient_id = \"i\"\nclient_secret_file = \"app.secret\"\n", "oauth2.scope: must be set"},
		{"half client credentials", "auth = \"xoauth2\"\nusername = \"u\"\n[accounts.oauth2]\ntoken_url = \"https://x/t\"\nscope = \"s\"\n", "client credentials need token_url, client_id and client_secret_file"},
		{"device login for many", "auth = \"oauthbearer\"\nusers = [\"a\"]\n[accounts.oauth2]\ntoken_url = \"https://x/t\"\ndevice_auth_url = \"https://x/d\"\nclient_id = \"i\"\nscope = \"s\"\n", "a refresh token is one mailbox's"},
		{"authzid", "auth = \"xoauth2\"\nusername = \"u\"\nauthzid = \"v\"\n[accounts.oauth2]\ntoken_url = \"https://x/t\"\nclient_id = \"i\"\nclient_secret_file = \"app.secret\"\nscope = \"s\"\n", "log in as the mailbox itself"},
	} {
		_, err := Load(writeFile(t, dir, "bad.toml", head+tc.body))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Load() = %v, want %q", tc.name, err, tc.want)
		}
	}
}
