package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smimed/smimed/daemon"
	"github.com/smimed/smimed/daemon/admin"
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

// runAccountService runs the service with the account ceo at addr (see
// writeAccountConfig), logging into logs; stop stops it.
func runAccountService(t *testing.T, addr string) (cfgPath string, cfg *config.Config, svc *daemon.Service, logs *testenv.LockedBuffer, stop func()) {
	t.Helper()
	cfgPath = writeAccountConfig(t, "", addr, "")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	logs = &testenv.LockedBuffer{}
	svc, err = daemon.NewService(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})) /* control requests are logged at debug */, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfgPath, cfg, svc, logs, testenv.RunService(t, svc, 0)
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
	cfgPath, cfg, _, logs, stop := runAccountService(t, d.Addr())

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
	// inspect while the daemon holds the store (issue 14): the store's
	// certificates come through the control socket, at once, without a
	// warning; a message that carries no certificate verifies with the
	// one the daemon harvested.
	code, out, errOut = runCmd(nil, "inspect", "--config", cfgPath, "--json", msg("signed-nocerts.eml"))
	if code != exitOK || !strings.Contains(out, `"status":"valid"`) || errOut != "" {
		t.Errorf("inspect of signed-nocerts beside the daemon: exit %d, %s, stderr %q; want valid from the daemon's store, no warning", code, out, errOut)
	}
	if code, _, errOut := runCmd(nil, "inspect", "--config", cfgPath, "--harvest", msg("signed-nocerts.eml")); code != exitFailed || !strings.Contains(errOut, "stop smimed first") {
		t.Errorf("inspect --harvest beside the daemon: exit %d, %q; want 1 at once, saying the daemon holds the store", code, errOut)
	}
	if !strings.Contains(logs.String(), "op=certs_intermediates") {
		t.Errorf("inspect did not read the daemon's store through its socket:\n%s", logs.String())
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

// TestStatusPrintBacklog: a line per folder with a backlog, with a bar
// on a terminal and without one elsewhere; a folder without a backlog
// has none, and no backlog at all means no section.
func TestStatusPrintBacklog(t *testing.T) {
	folders := []admin.FolderStatus{
		{Account: "ceo", Folder: "INBOX", Backlog: 157800, BacklogTotal: 200000, RatePerSecond: 412.5, ETASeconds: 383},
		{Account: "hr", Folder: "INBOX"},
		{Account: "sales", Folder: "INBOX", Backlog: 10, BacklogTotal: 10},
	}
	for _, c := range []struct {
		bar  bool
		want string
	}{
		{true, "\nbacklog:\n" +
			"  ceo/INBOX    [######------------------------]   21%  157800 of 200000 left  412.5/s  ETA 6m23s\n" +
			"  sales/INBOX  [------------------------------]    0%  10 of 10 left          0.0/s    ETA unknown (nothing done in the last minute)\n"},
		{false, "\nbacklog:\n" +
			"  ceo/INBOX     21%  157800 of 200000 left  412.5/s  ETA 6m23s\n" +
			"  sales/INBOX    0%  10 of 10 left          0.0/s    ETA unknown (nothing done in the last minute)\n"},
	} {
		var b bytes.Buffer
		if err := statusPrintBacklogs(&b, folders, c.bar); err != nil || b.String() != c.want {
			t.Errorf("statusPrintBacklogs(bar %v) = %v\n%s\nwant\n%s", c.bar, err, b.String(), c.want)
		}
	}
	var b bytes.Buffer
	if err := statusPrintBacklogs(&b, folders[1:2], true); err != nil || b.Len() != 0 {
		t.Errorf("statusPrintBacklogs without a backlog = %v, %q; want nothing", err, b.String())
	}
	for d, want := range map[time.Duration]string{
		42 * time.Second: "42s", 245 * time.Second: "4m05s", 3*time.Hour + 7*time.Minute + 59*time.Second: "3h07m",
		53*time.Hour + 10*time.Minute: "2d05h",
	} {
		if got := statusETA(d); got != want {
			t.Errorf("statusETA(%v) = %q, want %q", d, got, want)
		}
	}
}

// openPTY opens a pseudo-terminal: what is written to tty can be read
// from master, as a screen would show it.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// readPTY closes tty and returns what was written to it, with the
// terminal's "\r\n" as "\n".
func readPTY(master, tty *os.File) string {
	tty.Close()
	var b []byte
	buf := make([]byte, 4096)
	for {
		n, err := master.Read(buf)
		b = append(b, buf[:n]...)
		if err != nil { // EIO once the closed terminal's output is read
			return strings.ReplaceAll(string(b), "\r\n", "\n")
		}
	}
}

// TestIsTerminal: a pseudo-terminal is one; a pipe, a file and /dev/null
// (a character device, but no terminal) are not.
func TestIsTerminal(t *testing.T) {
	_, tty := openPTY(t)
	if !isTerminal(tty) {
		t.Errorf("isTerminal(%s) = false, want true", tty.Name())
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	for _, w := range []io.Writer{w, f, null, &bytes.Buffer{}} {
		if isTerminal(w) {
			t.Errorf("isTerminal(%v) = true, want false", w)
		}
	}
}

// TestStatusBacklogThroughDaemon: 50 messages wait in a Dovecot INBOX; a
// proxy holds the service's first FETCH, so the backlog is listed and
// nothing is done yet. `smimed status --json` shows 50 of 50 left and no
// estimate; on a terminal the line has a bar, in a pipe it has none;
// STATUS= says 50 left. Once the FETCH goes through, status shows the 50
// processed and no backlog.
func TestStatusBacklogThroughDaemon(t *testing.T) {
	const n = 50
	d := testenv.StartDovecot(t)
	d.AddUser(t, "ceo", testenv.Password("ceo"))
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = fmt.Appendf(nil, "From: alice@partner.example\r\nTo: ceo@org.example\r\nSubject: backlog %d\r\nMessage-ID: <progress-%d@test.smimed.example>\r\n\r\nmessage %d of the backlog\r\n", i, i, i)
	}
	d.DeliverMaildir(t, "ceo", msgs)
	proxy := testenv.StartProxy(t, d.Addr())
	proxy.HoldAt("FETCH")
	cfgPath, _, svc, logs, _ := runAccountService(t, proxy.Addr())

	// folder polls status --json until done says the INBOX is as wanted.
	folder := func(what string, done func(map[string]any) bool) map[string]any {
		t.Helper()
		var st map[string]any
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			var code int
			code, st, _ = statusJSON(t, cfgPath)
			if folders, _ := st["folders"].([]any); code == exitOK && len(folders) == 1 {
				if f, _ := folders[0].(map[string]any); done(f) {
					return f
				}
			}
		}
		t.Fatalf("status --json never showed %s:\n%v\nlog:\n%s", what, st, logs.String())
		return nil
	}
	for deadline := time.Now().Add(60 * time.Second); proxy.Held() == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the service never sent a FETCH; log:\n%s", logs.String())
		}
	}
	// The FETCH waits: the backlog is listed, nothing is done.
	f := folder("the backlog listed", func(f map[string]any) bool { return f["backlog"] == float64(n) })
	for k, want := range map[string]any{"backlog_total": float64(n), "processed": float64(0), "rate_per_second": nil, "eta_seconds": nil} {
		if f[k] != want {
			t.Errorf("status while the FETCH is held: %s = %v, want %v", k, f[k], want)
		}
	}
	if s, _ := f["backlog_started"].(string); s == "" {
		t.Errorf("status while the FETCH is held: no backlog_started in %v", f)
	}
	line := `(?m)^  ceo/INBOX +%s0%% +50 of 50 left +0\.0/s +ETA unknown \(nothing done in the last minute\)$`
	code, out, errOut := runCmd(nil, "status", "--config", cfgPath)
	if want := regexp.MustCompile(fmt.Sprintf(line, "")); code != exitOK || !want.MatchString(out) || strings.Contains(out, "[") {
		t.Errorf("status in a pipe = %d, %q:\n%s\nwant a line matching %s and no bar", code, errOut, out, want)
	}
	master, tty := openPTY(t)
	var stderr bytes.Buffer
	code = statusMain([]string{"--config", cfgPath}, tty, &stderr)
	out = readPTY(master, tty)
	if want := regexp.MustCompile(fmt.Sprintf(line, `\[-{30}\] +`)); code != exitOK || !want.MatchString(out) {
		t.Errorf("status on a terminal = %d, %q:\n%s\nwant a line matching %s", code, stderr.String(), out, want)
	}
	if got := svc.Metrics().Status(); !strings.Contains(got, ", 50 left") {
		t.Errorf("STATUS= %q, want the 50 left", got)
	}

	// Let it through: all done, no backlog left.
	proxy.Release()
	f = folder("the backlog done", func(f map[string]any) bool { return f["processed"] == float64(n) && f["backlog"] == float64(0) })
	for _, k := range []string{"backlog_total", "backlog_started", "eta_seconds"} {
		if f[k] != nil {
			t.Errorf("status once the backlog is done: %s = %v, want none", k, f[k])
		}
	}
	code, out, _ = runCmd(nil, "status", "--config", cfgPath)
	if code != exitOK || strings.Contains(out, "backlog:") {
		t.Errorf("status once the backlog is done = %d:\n%s\nwant no backlog section", code, out)
	}
	if got := svc.Metrics().Status(); strings.Contains(got, "left") {
		t.Errorf("STATUS= %q once the backlog is done, want nothing left", got)
	}
}
