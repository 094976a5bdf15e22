package daemon

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/testenv"
)

// TestScenarioMasterUsers (issue 14): Dovecot with a master passdb
// (master = yes, auth_master_user_separator = *). One [[accounts]] block
// logs in as the master user for each user of its users_file (SASL PLAIN
// with the user as authorization identity), another with Dovecot's
// user*master login name through username = "{user}*master" and LOGIN.
// smimed knows none of the users' passwords. Each mailbox is archived
// under BLOCK/USER and gets its copy in its own archive folder; a user
// added to the users_file is watched after a reload, without touching the
// others' connections.
func TestScenarioMasterUsers(t *testing.T) {
	t.Parallel()
	e := newSvcEnv(t)
	e.masterUsers(t, "alice", "bob", "carol", "dave")
	// The old key is the board's alone: alice's mail to it stays sealed.
	for _, u := range []string{"alice", "carol"} {
		e.d.Deliver(t, u, "INBOX", testenv.Testdata(t, "msg", "enc-old-key.eml"))
	}
	oldKey := "[[keys]]\ncert_file = \"org-old.crt\"\nkey_file = \"org-old.key\"\naccounts = [\"board\"]\n"
	usersFile := filepath.Join(e.dir, "users.txt")
	if err := os.WriteFile(usersFile, []byte("# the staff\nalice\nbob   # on leave until May\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	staff := "[[accounts]]\nname = \"staff\"\nserver = \"" + e.d.Addr() + "\"\ntls = \"none\"\nusername = \"smimed\"\npassword_file = \"smimed.pass\"\n" +
		"users_file = \"users.txt\"\nfolders = [\"INBOX\"]\narchive_folder = \"Decrypted\"\n"
	board := "[[accounts]]\nname = \"board\"\nserver = \"" + e.d.Addr() + "\"\ntls = \"none\"\nusername = \"{user}*smimed\"\nauth = \"login\"\npassword_file = \"smimed.pass\"\n" +
		"users = [\"carol\"]\nfolders = [\"INBOX\"]\narchive_folder = \"Decrypted\"\n"
	e.writeConfig(t, "", []string{"org-new"}, oldKey, staff, board)

	logs := &testenv.LockedBuffer{}
	svc, stop := runService(t, e.cfgPath, logs)
	defer stop()
	waitArchived(t, svc, logs, 5)
	accounts := func(status string) []string {
		var out []string
		if err := svc.arch.List(archive.Query{}, func(r *archive.Record) error {
			if slices.Contains(r.Status, status) {
				out = append(out, r.Account)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		slices.Sort(out)
		return out
	}
	if got, want := accounts("decrypted"), []string{"board/carol", "board/carol", "staff/alice", "staff/bob"}; !slices.Equal(got, want) {
		t.Fatalf("decrypted records by account: %v, want %v\n%s", got, want, logs.String())
	}
	if got, want := accounts("undecryptable"), []string{"staff/alice"}; !slices.Equal(got, want) {
		t.Errorf("records that failed to decrypt: %v, want %v (org-old is the board's alone)", got, want)
	}
	for _, u := range []string{"alice", "bob", "carol"} {
		n := 1
		if u == "carol" {
			n = 2
		}
		waitUntil(t, u+"'s copy", func() bool { return len(copies(t, e.d, u, "Decrypted")) == n }, func() string { return logs.String() })
	}
	// Dovecot's own record: each user logged in (smimed holds only the
	// master user's password).
	for _, u := range []string{"alice", "bob", "carol"} {
		if logins(e, u) == 0 {
			t.Errorf("Dovecot logged no login of %s:\n%s", u, e.d.Log())
		}
	}
	aliceLogins := logins(e, "alice")

	// dave joins the staff.
	if err := os.WriteFile(usersFile, []byte("# the staff\nalice\nbob   # on leave until May\ndave\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := svc.Reload(); err != nil {
		t.Fatalf("Reload() = %v", err)
	}
	if n := countLines(logs.String(), "configuration reloaded", "added=staff/dave", "removed=\"\"", "restarted=\"\"", "unchanged=board/carol,staff/alice,staff/bob"); n != 1 {
		t.Errorf("want one reload summary adding staff/dave alone:\n%s", logs.String())
	}
	waitArchived(t, svc, logs, 6)
	if got := accounts("decrypted"); !slices.Contains(got, "staff/dave") {
		t.Errorf("after the reload: %v, want staff/dave's message too", got)
	}
	if n := logins(e, "alice"); n != aliceLogins {
		t.Errorf("alice logged in %d times after the reload, %d before: her watcher was touched", n, aliceLogins)
	}
	if strings.Contains(logs.String(), testenv.Password("smimed")) {
		t.Error("the master password is in the log")
	}
}

// masterUsers adds Dovecot users whose passwords smimed does not know,
// each with one message encrypted to org-new in its INBOX, and the master
// user smimed with its password file smimed.pass.
func (e *svcEnv) masterUsers(t *testing.T, users ...string) {
	t.Helper()
	for _, u := range users {
		e.d.AddUser(t, u, "a password smimed does not know")
		e.d.Deliver(t, u, "INBOX", testenv.Testdata(t, "msg", "enc-aes256.eml"))
	}
	e.d.AddMaster(t, "smimed", testenv.Password("smimed"))
	testenv.WritePasswordFile(t, e.dir, "smimed")
}
