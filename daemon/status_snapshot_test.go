package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/admin"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/state"
)

// TestStatusSnapshot: the status op reports every watched folder with
// what the watchers and the sink reported, the checkpoints from the store
// (also of folders no longer watched), through the socket.
func TestStatusSnapshot(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	m := NewMetrics()
	m.now = func() time.Time { return now }
	signed := &harvest.Report{Signatures: []harvest.Signature{{Status: harvest.StatusValid}}}
	m.FolderUp("ceo", "INBOX")
	m.Backlog("ceo", "INBOX", 7)
	m.Processed(Message{Account: "ceo", Folder: "INBOX"}, signed)
	m.Processed(Message{Account: "ceo", Folder: "INBOX"}, signed)
	m.Processed(Message{Account: "ceo", Folder: "INBOX", TooLarge: true}, nil)
	m.Backlog("ceo", "INBOX", 4)
	m.Checked("ceo", "INBOX")
	m.FolderConnecting("sales", "INBOX")
	m.FolderError("sales", "INBOX", errors.New("dial tcp 192.0.2.1:993: connection refused"))
	m.FolderDown("sales", "INBOX", stateReconnecting, 8*time.Second)
	m.FolderDown("hr", "INBOX", stateLoginRefused, 15*time.Minute)

	dir := t.TempDir()
	db, err := state.Open(filepath.Join(dir, "smimed.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	store := harvest.NewStore(db)
	cps, err := NewCheckpoints(db)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		account, folder string
		cp              Checkpoint
	}{
		{"ceo", "INBOX", Checkpoint{UIDValidity: 1712000001, UID: 42}},
		{"old", "Sent", Checkpoint{UIDValidity: 7, UID: 3}},
	} {
		if err := cps.Set(c.account, c.folder, c.cp); err != nil {
			t.Fatal(err)
		}
	}
	// What Service.Status does, without the IMAP side.
	svc := &Service{cfg: &config.Config{StateDir: dir}, stateDir: dir, metrics: m, state: db, store: store}
	path := filepath.Join(testenv.SocketDir(t), "control.sock")
	stopControl, err := admin.ServeControl(context.Background(), admin.ControlOptions{
		Path: path, GID: -1, StateDir: dir,
		Open:   func(c admin.Caller) admin.ArchiveAPI { return &admin.Local{Store: store, Caller: c} },
		Status: svc.Status,
		Log:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stopControl()
	cfg := config.Defaults()
	cfg.StateDir, cfg.Daemon.ControlSocket = dir, path
	st, err := admin.QueryStatus(context.Background(), cfg)
	if err != nil {
		t.Fatalf("admin.QueryStatus = %v", err)
	}
	if !st.Running || st.StateDir != dir || st.Socket != path || st.Started.IsZero() {
		t.Errorf("admin.QueryStatus = running %v, state_dir %q, socket %q, started %v", st.Running, st.StateDir, st.Socket, st.Started)
	}
	want := []admin.FolderStatus{
		{Account: "ceo", Folder: "INBOX", State: admin.FolderConnected, Connected: true, UIDValidity: 1712000001, CheckpointUID: 42,
			// 3 done within the clock's one instant: 3 a second (the
			// shortest span is a second), 4 left take 2 s.
			Backlog: 4, BacklogStarted: now, BacklogTotal: 7, RatePerSecond: 3, ETASeconds: 2, Processed: 3, Outcomes: map[string]uint64{OutcomeSigned: 2, OutcomeTooLarge: 1}, LastCheck: now},
		{Account: "hr", Folder: "INBOX", State: admin.FolderLoginRefused, RetryAt: now.Add(15 * time.Minute)},
		{Account: "sales", Folder: "INBOX", State: admin.FolderReconnecting, RetryAt: now.Add(8 * time.Second),
			LastError: "dial tcp 192.0.2.1:993: connection refused", LastErrorAt: now},
		{Account: "old", Folder: "Sent", State: admin.FolderNotWatched, UIDValidity: 7, CheckpointUID: 3},
	}
	got, _ := json.Marshal(st.Folders)
	wantJSON, _ := json.Marshal(want)
	if !bytes.Equal(got, wantJSON) {
		t.Errorf("admin.QueryStatus folders =\n%s\nwant\n%s", got, wantJSON)
	}
	for i, w := range []string{"connected", "login refused, retry in 15m", "reconnecting in 8s", "not watched"} {
		if d := st.Folders[i].Describe(now); d != w {
			t.Errorf("%s/%s: Describe() = %q, want %q", st.Folders[i].Account, st.Folders[i].Folder, d, w)
		}
	}

	// Without a daemon the store, opened read-only, still tells the
	// checkpoints.
	stopControl()
	if _, err := admin.QueryStatus(context.Background(), cfg); !errors.Is(err, admin.ErrNoDaemon) {
		t.Errorf("admin.QueryStatus without a daemon = %v, want admin.ErrNoDaemon", err)
	}
	db.Close()
	ro, err := state.Open(filepath.Join(dir, "smimed.db"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	list, err := StoreCheckpoints(ro)
	if err != nil {
		t.Fatalf("StoreCheckpoints = %v", err)
	}
	got, _ = json.Marshal(list)
	wantJSON, _ = json.Marshal([]admin.FolderStatus{
		{Account: "ceo", Folder: "INBOX", UIDValidity: 1712000001, CheckpointUID: 42},
		{Account: "old", Folder: "Sent", UIDValidity: 7, CheckpointUID: 3},
	})
	if !bytes.Equal(got, wantJSON) {
		t.Errorf("StoreCheckpoints = %s, want %s", got, wantJSON)
	}
}
