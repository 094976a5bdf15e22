package main

import (
	"encoding/json"
	"log/slog"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest/state"
)

// doveadmCheckpoint asks Dovecot for the UIDVALIDITY of user's INBOX and
// its highest UID.
func doveadmCheckpoint(t *testing.T, d *testenv.Dovecot, user string) (uidValidity, uid uint32) {
	t.Helper()
	for _, u := range d.UIDs(t, user, "INBOX") {
		uid = max(uid, u)
	}
	return d.UIDValidity(t, user, "INBOX"), uid
}

// statusJSON runs `smimed status --json` and decodes its object.
func statusJSON(t *testing.T, cfg string) (int, map[string]any, string) {
	t.Helper()
	code, out, errOut := runCmd(nil, "status", "--json", "--config", cfg)
	var st map[string]any
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json = %d, %q (%v), stderr %q", code, out, err, errOut)
	}
	return code, st, errOut
}

// TestStatusThroughDaemon runs the service against a private Dovecot with
// one signed message: `smimed status --json` says the folder is connected,
// its checkpoint is Dovecot's UIDVALIDITY and highest UID, one message
// was processed; `smimed certs list` (the store is the daemon's, locked)
// lists the signer's certificate with openssl's fingerprint. Once the
// daemon has stopped, status says so, exits 1, and shows the checkpoint
// from the store.
func TestStatusThroughDaemon(t *testing.T) {
	d := testenv.StartDovecot(t)
	d.AddUser(t, "ceo", testenv.Password("ceo"))
	d.Deliver(t, "ceo", "INBOX", testenv.Testdata(t, "msg", "signed-rsa-sha256.eml"))
	cfgPath := writeAccountConfig(t, "", d.Addr(), "")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var logs testenv.LockedBuffer
	svc, err := daemon.NewService(cfg, slog.New(slog.NewTextHandler(&logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := testenv.RunService(t, svc, 0)

	wantValidity, wantUID := doveadmCheckpoint(t, d, "ceo")
	var st map[string]any
	var folder map[string]any
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var code int
		var errOut string
		code, st, errOut = statusJSON(t, cfgPath)
		if code != exitOK {
			if time.Now().After(deadline) {
				t.Fatalf("status --json = %d, %v, %q", code, st, errOut)
			}
			continue
		}
		folders, _ := st["folders"].([]any)
		if len(folders) == 1 {
			folder, _ = folders[0].(map[string]any)
			if folder["checkpoint_uid"] == float64(wantUID) && folder["processed"] == float64(1) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("status --json never showed the message done (checkpoint %d):\n%v\n%s", wantUID, st, logs.String())
		}
	}
	if st["running"] != true || st["state_dir"] != cfg.StateDir {
		t.Errorf("status: running %v, state_dir %v; want true, %s", st["running"], st["state_dir"], cfg.StateDir)
	}
	for k, want := range map[string]any{
		"account": "ceo", "folder": "INBOX", "state": "connected", "connected": true,
		"uidvalidity": float64(wantValidity), "checkpoint_uid": float64(wantUID), "processed": float64(1), "backlog": float64(0),
	} {
		if folder[k] != want {
			t.Errorf("status folder %s = %v, want %v", k, folder[k], want)
		}
	}
	if o, _ := folder["outcomes"].(map[string]any); len(o) != 1 || o["signed"] != float64(1) {
		t.Errorf("status folder outcomes = %v, want signed: 1", folder["outcomes"])
	}
	if lc, _ := folder["last_check"].(string); lc == "" {
		t.Errorf("status folder has no last_check: %v", folder)
	}

	code, out, errOut := runCmd(nil, "status", "--config", cfgPath)
	row := regexp.MustCompile(`(?m)^ceo +INBOX +connected +` + strconv.Itoa(int(wantValidity)) + ` +` + strconv.Itoa(int(wantUID)) + ` +0 +1 \(1 signed\) +\d{4}-`)
	if code != exitOK || !row.MatchString(out) || !strings.Contains(out, "state_dir "+cfg.StateDir) {
		t.Errorf("status = %d, %q:\n%s", code, errOut, out)
	}

	// The certificates: through the daemon, which holds the store.
	aliceFP := testenv.OpenSSLFingerprint(t, filepath.Join(fixtures, "pki", "alice.crt"))
	code, out, errOut = runCmd(nil, "certs", "list", "--json", "--config", cfgPath)
	if code != exitOK || !strings.Contains(out, `"email":"alice@partner.example","fingerprint":"`+aliceFP+`"`) {
		t.Errorf("certs list --json through the daemon = %d, %q:\n%s", code, errOut, out)
	}
	code, out, errOut = runCmd(nil, "certs", "list", "--config", cfgPath)
	if code != exitOK || !regexp.MustCompile(`alice@partner\.example +`+aliceFP[:16]+` +\d{4}-\d\d-\d\d +usable\+pref`).MatchString(out) {
		t.Errorf("certs list through the daemon = %d, %q:\n%s", code, errOut, out)
	}
	code, out, errOut = runCmd(nil, "certs", "show", aliceFP[:16], "--config", cfgPath)
	if code != exitOK || !strings.Contains(out, aliceFP) || !strings.Contains(out, "alice@partner.example") {
		t.Errorf("certs show through the daemon = %d, %q:\n%s", code, errOut, out)
	}
	code, out, errOut = runCmd(nil, "certs", "trust", strings.Repeat("0", 64), "--config", cfgPath)
	if code != exitFailed || !strings.Contains(errOut, "not found") {
		t.Errorf("certs trust of an unknown fingerprint through the daemon = %d, %q, %q", code, out, errOut)
	}
	if !strings.Contains(logs.String(), "op=certs_list") {
		t.Errorf("the daemon did not serve certs list:\n%s", logs.String())
	}

	// Stopped: no daemon answers; the store tells the checkpoint.
	stop()
	code, st, errOut = statusJSON(t, cfgPath)
	wantErr := "smimed is not running (no control socket answered at " + filepath.Join(cfg.StateDir, "control.sock")
	if code != exitFailed || !strings.Contains(errOut, wantErr) || st["running"] != false {
		t.Errorf("status --json without a daemon = %d, running %v, stderr %q; want 1 and %q", code, st["running"], errOut, wantErr)
	}
	folders, _ := st["folders"].([]any)
	if len(folders) != 1 {
		t.Fatalf("status --json without a daemon: folders %v, want ceo/INBOX", st["folders"])
	}
	folder, _ = folders[0].(map[string]any)
	if folder["account"] != "ceo" || folder["folder"] != "INBOX" || folder["uidvalidity"] != float64(wantValidity) || folder["checkpoint_uid"] != float64(wantUID) {
		t.Errorf("status --json without a daemon: folder %v, want ceo/INBOX at %d/%d", folder, wantValidity, wantUID)
	}
}

// TestStatusWithoutDaemon: with no daemon, status exits 1, names the
// sockets it tried, and prints the checkpoints of the store (opened
// read-only) as a table; with no store, it says so.
func TestStatusWithoutDaemon(t *testing.T) {
	cfgPath := writeConfig(t, "")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(nil, "status", "--config", cfgPath)
	if code != exitFailed || !strings.Contains(errOut, "smimed is not running") || !strings.Contains(errOut, "no state file at") || out != "" {
		t.Errorf("status without a store = %d, %q, %q", code, out, errOut)
	}

	st, err := state.Open(cfg.StorePath(), false)
	if err != nil {
		t.Fatal(err)
	}
	cps, err := daemon.NewCheckpoints(st)
	if err != nil {
		t.Fatal(err)
	}
	cps.Set("sales", "INBOX", daemon.Checkpoint{UIDValidity: 1700000000, UID: 12})
	cps.Set("ceo", "Partners/Inbound", daemon.Checkpoint{UIDValidity: 5, UID: 3141})
	st.Close()

	code, out, errOut = runCmd(nil, "status", "--config", cfgPath)
	want := "checkpoints in " + cfg.StorePath() + ":\n" +
		"ACCOUNT  FOLDER            UIDVALIDITY  CHECKPOINT\n" +
		"ceo      Partners/Inbound  5            3141\n" +
		"sales    INBOX             1700000000   12\n"
	wantErr := "smimed is not running (no control socket answered at " + strings.Join(cfg.ControlSocketPaths(), ", ") + ")\n"
	if code != exitFailed || out != want || errOut != wantErr {
		t.Errorf("status without a daemon = %d\n%s%s\nwant 1\n%s%s", code, out, errOut, want, wantErr)
	}

	if code, out, errOut := runCmd(nil, "status", "extra", "--config", cfgPath); code != exitUsage || out != "" || strings.Count(errOut, "\n") != 1 {
		t.Errorf("status extra = %d, %q, %q; want 2 and one line", code, out, errOut)
	}
	if code, out, _ := runCmd(nil, "status", "--help"); code != exitOK || !strings.Contains(out, "Usage: smimed status") {
		t.Errorf("status --help = %d, %q", code, out)
	}
}
