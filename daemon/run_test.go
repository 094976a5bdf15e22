package daemon

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/state"
)

// newService loads the configuration at cfgPath and makes the service
// from it, logging to log.
func newService(tb testing.TB, cfgPath string, log *slog.Logger) *Service {
	tb.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		tb.Fatal(err)
	}
	svc, err := NewService(cfg, log, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return svc
}

// runService starts the service and returns it with a stop function that
// waits for it to return (testenv.RunService), at most shutdownWait.
func runService(t *testing.T, cfgPath string, logs *testenv.LockedBuffer) (svc *Service, stop func()) {
	t.Helper()
	svc = newService(t, cfgPath, slog.New(slog.NewTextHandler(logs, nil)))
	return svc, testenv.RunService(t, svc, shutdownWait)
}

// runConfig writes config to dir/smimed.toml and runs the service on it
// (runService) with its log in the buffer returned.
func runConfig(t *testing.T, dir, config string) (*Service, *testenv.LockedBuffer) {
	t.Helper()
	cfgPath := filepath.Join(dir, "smimed.toml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &testenv.LockedBuffer{}
	svc, _ := runService(t, cfgPath, logs)
	return svc, logs
}

// svcEnv is a private Dovecot and a configuration directory with the
// organisation's keys and the partners' CA, for Service tests.
type svcEnv struct {
	d       *testenv.Dovecot
	dir     string
	cfgPath string
}

func newSvcEnv(t *testing.T, users ...string) *svcEnv {
	t.Helper()
	e := &svcEnv{d: testenv.StartDovecot(t), dir: t.TempDir()}
	e.cfgPath = filepath.Join(e.dir, "smimed.toml")
	testenv.CopyPKI(t, e.dir, "org-new.crt", "org-new.key", "org-old.crt", "org-old.key", "ca-bundle.pem")
	for _, u := range users {
		e.d.AddAccount(t, e.dir, u)
	}
	return e
}

// account is one [[accounts]] entry for user, watching folders.
func (e *svcEnv) account(user string, folders ...string) string {
	return testenv.Account(user, e.d.Addr(), "", folders...)
}

// writeConfig writes the configuration: the settings in head (top-level
// keys and tables), key files keys (e.g. "org-new"), then the accounts.
func (e *svcEnv) writeConfig(t *testing.T, head string, keys []string, accounts ...string) {
	t.Helper()
	if err := os.WriteFile(e.cfgPath, []byte(testenv.Config("state", head, keys, accounts...)), 0o600); err != nil {
		t.Fatal(err)
	}
}

const shutdownWait = 10 * time.Second

func waitFor(t *testing.T, logs *testenv.LockedBuffer, what string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(logs.String(), what) < n {
		if time.Now().After(deadline) {
			t.Fatalf("no %d× %q in the log within 30 s:\n%s", n, what, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestServiceEndToEnd runs `smimed run`'s service against a private
// Dovecot: mail already there and mail arriving later is processed once,
// the partner's certificate is harvested, the watched folder is untouched,
// and a restart processes nothing twice.
func TestServiceEndToEnd(t *testing.T) {
	e := newSvcEnv(t, "ceo")
	d := e.d
	d.Deliver(t, "ceo", "INBOX", testenv.Testdata(t, "msg", "signed-rsa-sha256.eml"))
	d.Deliver(t, "ceo", "INBOX", testenv.Testdata(t, "msg", "sign-then-encrypt.eml"))
	e.writeConfig(t, "[daemon]\nworkers = 2", []string{"org-new"}, e.account("ceo")+"archive_folder = \"Decrypted\"\n")
	cfgPath, dir := e.cfgPath, e.dir

	logs := &testenv.LockedBuffer{}
	_, stop := runService(t, cfgPath, logs)
	waitFor(t, logs, "message processed", 2)
	d.Deliver(t, "ceo", "INBOX", testenv.Testdata(t, "msg", "signed-ec256.eml"))
	waitFor(t, logs, "message processed", 3)
	stop()
	out := logs.String()
	for _, want := range []string{"decryption=ok", "verdicts=valid", `harvested="alice@partner.example=`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Amount: 100 EUR") || strings.Contains(out, "pw-ceo") {
		t.Errorf("the log holds message text or the password:\n%s", out)
	}

	// The watched folder is untouched: three messages, none seen.
	if st := d.Doveadm(t, "mailbox", "status", "-u", "ceo", "messages unseen", "INBOX"); !strings.Contains(st, "messages=3") || !strings.Contains(st, "unseen=3") {
		t.Errorf("INBOX status after processing = %q, want 3 messages, 3 unseen", st)
	}

	// A restart processes nothing twice; new mail still flows.
	d.Deliver(t, "ceo", "INBOX", testenv.Testdata(t, "msg", "plain.eml"))
	logs2 := &testenv.LockedBuffer{}
	_, stop = runService(t, cfgPath, logs2)
	waitFor(t, logs2, "message processed", 1)
	stop()
	if n := strings.Count(logs2.String(), "message processed"); n != 1 {
		t.Errorf("after restart %d messages processed, want only the new one:\n%s", n, logs2.String())
	}

	db, err := state.Open(filepath.Join(dir, "state", "smimed.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st := harvest.NewStore(db)
	for _, email := range []string{"alice@partner.example", "alice-ec256@partner.example"} {
		if es, err := st.ByEmail(email); err != nil || len(es) != 1 || es[0].Quarantined {
			t.Errorf("store for %s = %+v, %v; want one usable certificate", email, es, err)
		}
	}
	cps, err := NewCheckpoints(db)
	if err != nil {
		t.Fatal(err)
	}
	cp, ok, err := cps.Get("ceo", "INBOX")
	if err != nil || !ok || cp.UID != 4 {
		t.Errorf("checkpoint = %+v %v %v, want UID 4", cp, ok, err)
	}

	// The archive holds all four, each once, and verifies.
	arch, err := archive.Open(filepath.Join(dir, "state", "archive"), db)
	if err != nil {
		t.Fatal(err)
	}
	byUID := map[uint32]*archive.Record{}
	arch.List(archive.Query{}, func(r *archive.Record) error {
		if byUID[r.UID] != nil {
			t.Errorf("UID %d archived twice", r.UID)
		}
		byUID[r.UID] = r
		return nil
	})
	if len(byUID) != 4 || byUID[2] == nil || !byUID[2].Has(archive.StatusDecrypted) || !byUID[4].Has(archive.StatusPlain) {
		t.Errorf("archive holds %v", byUID)
	}
	for uid, name := range map[uint32]string{1: "signed-rsa-sha256.eml", 2: "sign-then-encrypt.eml", 4: "plain.eml"} {
		if r := byUID[uid]; r == nil || r.OriginalSHA256 != sha256Hex(testenv.Testdata(t, "msg", name)) {
			t.Errorf("UID %d: original is not %s as delivered", uid, name)
		}
	}
	if res, err := arch.Verify(nil); err != nil || !res.OK() {
		t.Errorf("archive verify = %+v, %v", res, err)
	}

	// The user's copy: only the encrypted message (archive_folder_messages
	// defaults to "encrypted"), unread, marked, with the archived plaintext.
	if uids := d.UIDs(t, "ceo", "Decrypted"); len(uids) != 1 {
		t.Fatalf("Decrypted holds UIDs %v, want one message", uids)
	}
	hdr := d.Doveadm(t, "fetch", "-u", "ceo", "hdr", "mailbox", "Decrypted", "all")
	marker := fmt.Sprintf("X-Smimed-Source: ceo/INBOX/%d/2", byUID[2].UIDValidity)
	for _, want := range []string{marker, "X-Smimed-Decryption: ok", "Authentication-Results: "} {
		if !strings.Contains(hdr, want) {
			t.Errorf("copy header lacks %q:\n%s", want, hdr)
		}
	}
	if st := d.Doveadm(t, "mailbox", "status", "-u", "ceo", "unseen", "Decrypted"); !strings.Contains(st, "unseen=1") {
		t.Errorf("Decrypted status %q, want the copy unread", st)
	}
	pt, err := arch.ReadPlaintext(byUID[2])
	if err != nil {
		t.Fatal(err)
	}
	_, ptBody, _ := bytes.Cut(bytes.ReplaceAll(pt, []byte("\r\n"), []byte("\n")), []byte("\n\n"))
	body := d.Doveadm(t, "fetch", "-u", "ceo", "body", "mailbox", "Decrypted", "all")
	if len(ptBody) < 20 || !strings.Contains(strings.ReplaceAll(body, "\r\n", "\n"), string(ptBody[:len(ptBody)-1])) {
		t.Errorf("the copy's body is not the archived plaintext's")
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
