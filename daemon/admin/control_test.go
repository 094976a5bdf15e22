package admin

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/state"
)

// bodyMarker is in the body of the large fixture message; it must never
// reach the log.
const bodyMarker = "BODY-MARKER-never-logged"

// controlFixture is an archive with a few messages, served on a control
// socket.
type controlFixture struct {
	dir    string // state_dir
	state  *state.DB
	store  *harvest.Store
	arc    *archive.Archive
	eng    *harvest.Engine
	local  *Local // direct access, as a command without the daemon
	path   string // the socket
	srv    *controlServer
	raw    map[uint64][]byte // record id → the fixture bytes archived
	logBuf *testenv.LockedBuffer
}

func largeMessage() []byte {
	var b bytes.Buffer
	b.WriteString("From: bob@partner.example\r\nTo: ceo@org.example\r\nSubject: large\r\nMessage-ID: <large@test>\r\nDate: Mon, 2 Mar 2026 10:00:00 +0100\r\n\r\n")
	for i := 0; b.Len() < 200<<10; i++ {
		fmt.Fprintf(&b, "%s line %d\r\n", bodyMarker, i)
	}
	return b.Bytes()
}

// newControlFixture archives plain, signed, two undecryptable fixtures
// (the engine has no keys) and a 200 KiB message, then serves them with
// open (nil: a Local per caller).
func newControlFixture(t *testing.T, open func(f *controlFixture, c Caller) ArchiveAPI) *controlFixture {
	t.Helper()
	f := &controlFixture{dir: t.TempDir(), raw: map[uint64][]byte{}, logBuf: &testenv.LockedBuffer{}}
	db, err := state.Open(filepath.Join(f.dir, "smimed.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f.state = db
	st := harvest.NewStore(db)
	f.store = st
	if f.arc, err = archive.Open(filepath.Join(f.dir, "archive"), db); err != nil {
		t.Fatal(err)
	}
	f.eng = harvest.New(harvest.Options{})
	msgs := [][]byte{largeMessage()}
	for _, name := range []string{"plain.eml", "signed-rsa-sha256.eml", "enc-nokey.eml", "sign-then-encrypt.eml"} {
		msgs = append(msgs, testenv.Testdata(t, "msg", name))
	}
	for i, raw := range msgs {
		src := archive.Source{Account: "ceo", Folder: "INBOX", UIDValidity: 1, UID: uint32(i + 1), InternalDate: time.Date(2026, 3, 1, 12, i, 0, 0, time.UTC)}
		res, err := f.eng.Process(raw, src.InternalDate)
		if err != nil {
			t.Fatal(err)
		}
		rec, _, err := f.arc.Put(src, raw, res)
		if err != nil {
			t.Fatal(err)
		}
		f.raw[rec.ID] = raw
	}
	f.local = &Local{Archive: f.arc, Store: st, State: db, Engine: f.eng, Caller: Caller{UID: os.Getuid(), GID: os.Getgid(), PID: os.Getpid(), Via: "direct"}}
	if open == nil {
		open = func(f *controlFixture, c Caller) ArchiveAPI {
			return &Local{Archive: f.arc, Store: f.store, State: f.state, Engine: f.eng, Caller: c}
		}
	}
	f.path = filepath.Join(testenv.SocketDir(t), "control.sock")
	f.srv, err = startControl(context.Background(), ControlOptions{
		Path: f.path, GID: -1, StateDir: f.dir,
		Open: func(c Caller) ArchiveAPI { return open(f, c) },
		Log:  slog.New(slog.NewTextHandler(f.logBuf, nil)),
	})
	if err != nil {
		t.Fatalf("startControl = %v", err)
	}
	t.Cleanup(func() {
		f.srv.stop()
		if strings.Contains(f.logBuf.String(), bodyMarker) {
			t.Errorf("the log holds a message body:\n%s", f.logBuf.String())
		}
	})
	return f
}

func (f *controlFixture) dial(t *testing.T) ArchiveAPI {
	t.Helper()
	api, err := DialControl(f.path)
	if err != nil {
		t.Fatalf("DialControl(%s) = %v", f.path, err)
	}
	return api
}

// waitIdle waits until the server serves no connection.
func (f *controlFixture) waitIdle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for f.srv.active.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still served 5 s after their clients went away", f.srv.active.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type idHash struct {
	ID   uint64
	Hash string
}

func listIDs(t *testing.T, api ArchiveAPI, q archive.Query) []idHash {
	t.Helper()
	var out []idHash
	if err := api.List(context.Background(), q, func(r *archive.Record) error {
		out = append(out, idHash{r.ID, r.Hash})
		return nil
	}); err != nil {
		t.Fatalf("List(%+v) = %v", q, err)
	}
	return out
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha(b)
}

func TestControlServesLikeLocal(t *testing.T) {
	f := newControlFixture(t, nil)
	ctx := context.Background()
	start := time.Now().Add(-time.Second)
	api := f.dial(t)

	for _, q := range []archive.Query{{}, {Status: archive.StatusUndecryptable}, {From: "@partner.example", Limit: 2}} {
		got, want := listIDs(t, api, q), listIDs(t, f.local, q)
		if len(want) == 0 || !slices.Equal(got, want) {
			t.Errorf("List(%+v) over the socket = %v, Local.List = %v", q, got, want)
		}
	}
	all := listIDs(t, f.local, archive.Query{})
	if len(all) != len(f.raw) {
		t.Fatalf("Local.List gave %d records, %d archived", len(all), len(f.raw))
	}

	for _, ih := range all {
		rec, err := api.Get(ctx, ih.ID)
		if err != nil || rec.ID != ih.ID || rec.Hash != ih.Hash {
			t.Errorf("Get(%d) = %+v, %v; want hash %s", ih.ID, rec, err, ih.Hash)
			continue
		}
		// The plaintext is the file in the Maildir, the original the
		// fixture's bytes.
		var plain, orig bytes.Buffer
		if err := api.Message(ctx, ih.ID, false, &plain); err != nil {
			t.Fatalf("Message(%d, plaintext) = %v", ih.ID, err)
		}
		p, err := f.arc.PlaintextPath(rec)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := sha(plain.Bytes()), fileSHA(t, p); got != want {
			t.Errorf("Message(%d, plaintext): SHA-256 %s, the file %s has %s", ih.ID, got, p, want)
		}
		if err := api.Message(ctx, ih.ID, true, &orig); err != nil {
			t.Fatalf("Message(%d, original) = %v", ih.ID, err)
		}
		if !bytes.Equal(orig.Bytes(), f.raw[ih.ID]) {
			t.Errorf("Message(%d, original): %d bytes, SHA-256 %s; the fixture has %d, %s", ih.ID, orig.Len(), sha(orig.Bytes()), len(f.raw[ih.ID]), sha(f.raw[ih.ID]))
		}
	}

	var progress [][2]int
	res, err := api.Verify(ctx, func(done, total int) { progress = append(progress, [2]int{done, total}) })
	if err != nil || !res.OK() || res.Records != len(f.raw) {
		t.Errorf("Verify = %+v, %v; want OK with %d records", res, err, len(f.raw))
	}
	if len(progress) == 0 || progress[len(progress)-1] != [2]int{len(f.raw), len(f.raw)} {
		t.Errorf("Verify progress = %v, want it to end at [%d %d]", progress, len(f.raw), len(f.raw))
	}

	undecryptable := listIDs(t, f.local, archive.Query{Status: archive.StatusUndecryptable})
	var retried []RetryResult
	err = api.Retry(ctx, nil, func(r RetryResult) error { retried = append(retried, r); return nil })
	if err != nil || len(retried) != len(undecryptable) {
		t.Errorf("Retry(all undecryptable) = %v, %d results; want %d", err, len(retried), len(undecryptable))
	}
	for _, r := range retried {
		if r.Error != "" || r.Changed {
			t.Errorf("Retry of %d with the same keys: %+v, want unchanged", r.ID, r)
		}
	}

	backupPath := filepath.Join(t.TempDir(), "backup.db")
	bf, err := os.Create(backupPath)
	if err != nil {
		t.Fatal(err)
	}
	n, err := api.Backup(ctx, bf)
	bf.Close()
	if fi, _ := os.Stat(backupPath); err != nil || fi.Size() != n || n == 0 {
		t.Fatalf("Backup = %d, %v; file has %d bytes", n, err, fi.Size())
	}
	checkBackup(t, backupPath, all)

	if _, err := api.Get(ctx, 9999); !errors.Is(err, archive.ErrNotFound) || !strings.Contains(err.Error(), "9999") {
		t.Errorf("Get(9999) = %v, want the daemon's ErrNotFound naming 9999", err)
	}
	if err := api.List(ctx, archive.Query{Status: "bogus"}, func(*archive.Record) error { return nil }); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("List(status bogus) = %v, want the daemon's refusal", err)
	}
	// export and failed are told apart in the log.
	if err := api.Message(WithAuditCommand(ctx, CommandExport), all[0].ID, false, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := api.List(WithAuditCommand(ctx, CommandFailed), archive.Query{Status: archive.StatusUndecryptable}, func(*archive.Record) error { return nil }); err != nil {
		t.Fatal(err)
	}

	// The audit log: every call above as this process, via the socket.
	var entries []archive.AuditEntry
	if err := api.Audit(ctx, start, func(e archive.AuditEntry) error { entries = append(entries, e); return nil }); err != nil {
		t.Fatalf("Audit = %v", err)
	}
	actions := map[string]int{}
	for _, e := range entries {
		if e.Via == "direct" {
			continue // f.local's lists
		}
		if e.Via != "socket" || e.UID != os.Getuid() || e.PID != os.Getpid() {
			t.Errorf("audit entry %+v; want via socket, uid %d, pid %d", e, os.Getuid(), os.Getpid())
		}
		actions[e.Action]++
	}
	wantActions := map[string]int{
		"list":          3 + len(all) + 1, // three lists, a Get per record, Get(9999); the bogus query is refused unaudited
		"show":          len(all),
		"show-original": len(all),
		"verify":        1,
		"retry":         1,
		"backup":        1,
		"export":        1,
		"failed":        1,
		"audit":         1,
	}
	for a, n := range wantActions {
		if actions[a] != n {
			t.Errorf("audit log: %d %q entries, want %d (all: %v)", actions[a], a, n, actions)
		}
	}
	if res, err := f.arc.VerifyAudit(); err != nil || !res.OK() {
		t.Errorf("VerifyAudit = %+v, %v", res, err)
	}
	f.waitIdle(t)
}

// checkBackup opens a backup with bbolt and compares its records with
// want (ids and hashes).
func checkBackup(t *testing.T, path string, want []idHash) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatalf("backup: bbolt.Open = %v", err)
	}
	defer db.Close()
	var got []idHash
	db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("archive_records"))
		if b == nil {
			t.Fatal("backup has no archive_records bucket")
		}
		return b.ForEach(func(k, v []byte) error {
			got = append(got, idHash{binary.BigEndian.Uint64(k), hex.EncodeToString(v[:32])})
			return nil
		})
	})
	slices.Reverse(got) // List is newest first; these are in id order
	if !slices.Equal(got, want) {
		t.Errorf("backup records %v, want %v", got, want)
	}
}

func TestControlAuditFailureRefusesRead(t *testing.T) {
	f := newControlFixture(t, nil)
	dir := f.dir
	f.srv.stop()
	f.state.Close()
	// The same archive, read-only: no audit entry can be written.
	rodb, err := state.Open(filepath.Join(dir, "smimed.db"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer rodb.Close()
	ro := harvest.NewStore(rodb)
	arc, err := archive.Open(filepath.Join(dir, "archive"), rodb)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(testenv.SocketDir(t), "control.sock")
	srv, err := startControl(context.Background(), ControlOptions{Path: path, GID: -1, Open: func(c Caller) ArchiveAPI {
		return &Local{Archive: arc, Store: ro, State: rodb, Caller: c}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.stop()
	api, err := DialControl(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, read := range map[string]func() error{
		"list": func() error {
			return api.List(ctx, archive.Query{}, func(*archive.Record) error { return errors.New("a record was handed out") })
		},
		"message": func() error { return api.Message(ctx, 1, false, io.Discard) },
		"get":     func() error { _, err := api.Get(ctx, 1); return err },
		"backup":  func() error { _, err := api.Backup(ctx, io.Discard); return err },
		"verify":  func() error { _, err := api.Verify(ctx, nil); return err },
		"audit":   func() error { return api.Audit(ctx, time.Time{}, func(archive.AuditEntry) error { return nil }) },
	} {
		if err := read(); !errors.Is(err, ErrNotAudited) {
			t.Errorf("%s without a writable audit log = %v, want ErrNotAudited", name, err)
		}
	}
	// Directly too, and a Local without a caller reads nothing either.
	direct := &Local{Archive: arc, Store: ro, Caller: Caller{UID: os.Getuid(), Via: "direct"}}
	if _, err := direct.Get(ctx, 1); !errors.Is(err, ErrNotAudited) {
		t.Errorf("Local.Get read-only = %v, want ErrNotAudited", err)
	}
	if _, err := (&Local{Archive: f.arc, Store: f.store}).Get(ctx, 1); !errors.Is(err, ErrNotAudited) {
		t.Errorf("Local.Get without a Caller = %v, want ErrNotAudited", err)
	}
}

func TestLocalVerifyCancelled(t *testing.T) {
	f := newControlFixture(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := f.local.Verify(ctx, nil)
	if !errors.Is(err, context.Canceled) || res != nil {
		t.Errorf("Verify with a cancelled context = %+v, %v; want context.Canceled", res, err)
	}
	// The archive is usable afterwards (no transaction left open).
	if res, err := f.local.Verify(context.Background(), nil); err != nil || !res.OK() {
		t.Errorf("Verify afterwards = %+v, %v", res, err)
	}
}

func TestPeerPolicy(t *testing.T) {
	const service, group = 990, 991
	p := peerPolicy{uid: service, gid: group, group: "smimed", groupsOf: func(uid int) ([]int, error) {
		switch uid {
		case 1001:
			return []int{100, group}, nil // an admin with smimed as a supplementary group
		case 1002:
			return []int{100, 27}, nil
		}
		return nil, errors.New("unknown user")
	}}
	for _, tc := range []struct {
		name     string
		uid, gid uint32
		allowed  bool
	}{
		{"root", 0, 0, true},
		{"the service user", service, 12345, true},
		{"primary group", 1003, group, true},
		{"supplementary group", 1001, 100, true},
		{"other user, other groups", 1002, 100, false},
		{"unknown user, other group", 1234, 1234, false},
	} {
		err := p.allow(unix.Ucred{Pid: 42, Uid: tc.uid, Gid: tc.gid})
		if (err == nil) != tc.allowed {
			t.Errorf("%s (uid %d gid %d): allow = %v, want allowed %v", tc.name, tc.uid, tc.gid, err, tc.allowed)
		}
		if err != nil {
			want := fmt.Sprintf("permission denied: uid %d is not root, the service user, or in group smimed", tc.uid)
			if err.Error() != want || !errors.Is(err, ErrPeerRefused) {
				t.Errorf("%s: refusal %q, want %q", tc.name, err, want)
			}
		}
	}
}

// childSocketEnv makes the test binary a client that dials the socket it
// names and prints the outcome (TestControlHelperProcess).
const childSocketEnv = "SMIMED_CONTROL_TEST_SOCKET"

func TestControlHelperProcess(t *testing.T) {
	path := os.Getenv(childSocketEnv)
	if path == "" {
		t.Skip("only run as the child of TestControlRefusesOtherUser")
	}
	api, err := DialControl(path)
	fmt.Printf("uid %d: %v\n", os.Getuid(), err)
	if ops := os.Getenv(childOpsEnv); ops != "" && err == nil {
		ctx := context.Background()
		certs := &certsClient{c: &controlClient{path: path}}
		for _, op := range strings.Split(ops, ",") {
			switch op {
			case "list":
				n := 0
				err = api.List(ctx, archive.Query{}, func(*archive.Record) error { n++; return nil })
				fmt.Printf("list: %d records, %v\n", n, err)
			case "retry":
				err = api.Retry(ctx, nil, func(RetryResult) error { return nil })
				fmt.Printf("retry: %v\n", err)
			case "backup":
				_, err = api.Backup(ctx, io.Discard)
				fmt.Printf("backup: %v\n", err)
			case "certs_list":
				es, err := certs.List(ctx)
				fmt.Printf("certs_list: %d entries, %v\n", len(es), err)
			case "certs_trust":
				_, err = certs.Trust(ctx, os.Getenv(childFPEnv), false)
				fmt.Printf("certs_trust: %v\n", err)
			case "certs_untrust":
				_, err = certs.Untrust(ctx, os.Getenv(childFPEnv))
				fmt.Printf("certs_untrust: %v\n", err)
			default:
				retentionChildOp(ctx, api, op)
			}
		}
	}
	os.Exit(0)
}

// childOpsEnv lists the ops the child runs after connecting; childFPEnv
// is the fingerprint its certs_trust names.
const (
	childOpsEnv = "SMIMED_CONTROL_TEST_OPS"
	childFPEnv  = "SMIMED_CONTROL_TEST_FP"
)

func TestControlRefusesOtherUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("a real refused connection needs a second user: run the tests as root (TestPeerPolicy covers the decision)")
	}
	f := newControlFixture(t, nil)
	out := runChild(t, f, 65534, 65534)
	want := "uid 65534: permission denied: uid 65534 is not root, the service user, or in group "
	if !strings.HasPrefix(string(out), want) {
		t.Errorf("child said %q, want %q…", out, want)
	}
	var refused []archive.AuditEntry
	f.arc.AuditLog(time.Time{}, func(e archive.AuditEntry) error {
		if e.Action == archive.AuditRefused {
			refused = append(refused, e)
		}
		return nil
	})
	if len(refused) != 1 || refused[0].UID != 65534 || refused[0].GID != 65534 || refused[0].Via != "socket" {
		t.Errorf("audit log of refusals: %+v, want one for uid 65534 via socket", refused)
	}
}

// runChild runs the test binary as uid:gid (no supplementary groups)
// against f's socket, as TestControlHelperProcess, with env added, and
// returns what it printed. Only root can do that.
func runChild(t *testing.T, f *controlFixture, uid, gid uint32, env ...string) string {
	t.Helper()
	// Let everybody through the file mode, so the peer check decides.
	for _, p := range []string{filepath.Dir(f.path), f.path} {
		if err := os.Chmod(p, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	// The test binary, where the child can run it.
	binDir := testenv.SocketDir(t)
	os.Chmod(binDir, 0o755)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(binDir, "control.test")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestControlHelperProcess$")
	cmd.Env = append([]string{childSocketEnv + "=" + f.path}, env...)
	cmd.Dir = binDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child as uid %d: %v\n%s", uid, err, out)
	}
	return string(out)
}

// endless is an ArchiveAPI whose List never ends by itself: it sends
// records as fast as they are taken, or (block) one record and then
// waits for the context.
type endless struct {
	*Local
	block bool
}

func (e *endless) List(ctx context.Context, q archive.Query, fn func(*archive.Record) error) error {
	r := &archive.Record{ID: 1, Subject: strings.Repeat("x", 1000)}
	for {
		if err := fn(r); err != nil {
			return err
		}
		if e.block {
			<-ctx.Done()
			return ctx.Err()
		}
	}
}

// rawRequest connects and sends one request line.
func rawRequest(t *testing.T, path, line string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, line); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}

func TestControlClientGoneMidList(t *testing.T) {
	for _, block := range []bool{false, true} {
		t.Run(fmt.Sprintf("block=%v", block), func(t *testing.T) {
			f := newControlFixture(t, func(f *controlFixture, c Caller) ArchiveAPI {
				return &endless{Local: &Local{Archive: f.arc, Store: f.store, Caller: c}, block: block}
			})
			c, br := rawRequest(t, f.path, `{"op":"list"}`+"\n")
			line, err := br.ReadString('\n')
			if err != nil || !strings.Contains(line, `"record"`) {
				t.Fatalf("first reply line %q, %v", line, err)
			}
			if n := f.srv.active.Load(); n != 1 {
				t.Fatalf("%d connections served mid-list, want 1", n)
			}
			c.Close()
			f.waitIdle(t)

			// The client's side: fn's error ends List and closes.
			api := f.dial(t)
			stop := errors.New("enough")
			if err := api.List(context.Background(), archive.Query{}, func(*archive.Record) error { return stop }); err != stop {
				t.Errorf("List with a failing fn = %v, want %v", err, stop)
			}
			f.waitIdle(t)
			// And a cancelled context.
			ctx, cancel := context.WithCancel(context.Background())
			err = api.List(ctx, archive.Query{}, func(*archive.Record) error { cancel(); return nil })
			if !errors.Is(err, context.Canceled) {
				t.Errorf("List with a cancelled context = %v", err)
			}
			f.waitIdle(t)
		})
	}
}

func TestControlStopEndsRequests(t *testing.T) {
	f := newControlFixture(t, func(f *controlFixture, c Caller) ArchiveAPI {
		return &endless{Local: &Local{Archive: f.arc, Store: f.store, Caller: c}, block: true}
	})
	api := f.dial(t)
	errc := make(chan error, 1)
	go func() {
		errc <- api.List(context.Background(), archive.Query{}, func(*archive.Record) error { return nil })
	}()
	for f.srv.active.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	done := make(chan struct{})
	go func() { f.srv.stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("stop did not return within 5 s with a request running")
	}
	if err := <-errc; err == nil {
		t.Error("List during stop: no error")
	}
	if _, err := os.Lstat(f.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after stop: %v, want it removed", err)
	}
	if _, err := DialControl(f.path); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("DialControl after stop = %v, want ErrNoDaemon", err)
	}
}

func readErrorFrame(t *testing.T, br *bufio.Reader) controlFrame {
	t.Helper()
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("reply: %q, %v", line, err)
	}
	var fr controlFrame
	if err := json.Unmarshal([]byte(line), &fr); err != nil || fr.Error == "" {
		t.Fatalf("reply %q: want an error frame (%v)", line, err)
	}
	return fr
}

func TestControlBadRequests(t *testing.T) {
	// The server takes the request timeout when it starts; put it back
	// after the server has stopped (cleanups run last first).
	defer func(d time.Duration) { requestTimeout = d }(requestTimeout)
	requestTimeout = 300 * time.Millisecond
	f := newControlFixture(t, nil)
	defer f.srv.stop()

	// Oversized: the daemon answers before the client has finished.
	c, err := net.Dial("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		big := `{"op":"list","query":{"Subject":"` + strings.Repeat("a", 100<<10) + `"}}` + "\n"
		io.WriteString(c, big) // fails once the daemon closes
	}()
	fr := readErrorFrame(t, bufio.NewReader(c))
	if !strings.Contains(fr.Error, "64 KiB") {
		t.Errorf("oversized request: error %q, want it to name the 64 KiB limit", fr.Error)
	}
	c.Close()

	for _, tc := range []struct{ line, want string }{
		{"not json\n", "not a JSON request"},
		{`{"op":"drop"}` + "\n", `unknown op "drop"`},
		{`{"op":"list","evil":1}` + "\n", "unknown field"},
		{`{"op":"message"}` + "\n", "needs a record id"},
		{`{"op":"certs_trust"}` + "\n", "needs an address or fingerprint"},
		{`{"op":"list"} {"op":"backup"}` + "\n", "more than one"},
		{`{"op":"list"}`, "unexpected EOF"}, // no newline, then half-closed below
	} {
		c, br := rawRequest(t, f.path, tc.line)
		if !strings.HasSuffix(tc.line, "\n") {
			c.(*net.UnixConn).CloseWrite()
		}
		if fr := readErrorFrame(t, br); !strings.Contains(fr.Error, tc.want) {
			t.Errorf("request %q: error %q, want %q", tc.line, fr.Error, tc.want)
		}
		c.Close()
	}

	// Silence: the request deadline.
	c, br := rawRequest(t, f.path, "")
	if fr := readErrorFrame(t, br); !strings.Contains(fr.Error, "no request within") {
		t.Errorf("silent client: error %q", fr.Error)
	}
	c.Close()

	// Nothing of this reached the archive, and the daemon still serves.
	f.waitIdle(t)
	api := f.dial(t)
	if n := len(listIDs(t, api, archive.Query{})); n != len(f.raw) {
		t.Errorf("List after bad requests: %d records, want %d", n, len(f.raw))
	}
}

func TestControlSocketFile(t *testing.T) {
	dir := testenv.SocketDir(t)
	open := func(c Caller) ArchiveAPI { return &Local{Caller: c} }

	// Missing socket, and a stale one nobody listens on: no daemon.
	path := filepath.Join(dir, "control.sock")
	if _, err := DialControl(path); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("DialControl(missing) = %v, want ErrNoDaemon", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := DialControl(path); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("DialControl(stale socket) = %v, want ErrNoDaemon", err)
	}
	// The stale socket is replaced; the new one is 0660 in the group.
	srv, err := startControl(context.Background(), ControlOptions{Path: path, GID: os.Getgid(), Open: open})
	if err != nil {
		t.Fatalf("startControl over a stale socket = %v", err)
	}
	defer srv.stop()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 || fi.Sys().(*syscall.Stat_t).Gid != uint32(os.Getgid()) {
		t.Errorf("socket mode %v gid %d, want 0660 and gid %d", fi.Mode(), fi.Sys().(*syscall.Stat_t).Gid, os.Getgid())
	}
	// A live socket is not taken over, nor is a file that is no socket.
	if _, err := startControl(context.Background(), ControlOptions{Path: path, GID: -1, Open: open}); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Errorf("startControl over a live socket = %v", err)
	}
	regular := filepath.Join(dir, "file")
	os.WriteFile(regular, []byte("keep me"), 0o600)
	if _, err := startControl(context.Background(), ControlOptions{Path: regular, GID: -1, Open: open}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("startControl over a regular file = %v", err)
	}
	if b, _ := os.ReadFile(regular); string(b) != "keep me" {
		t.Error("the regular file was touched")
	}
	long := filepath.Join(dir, strings.Repeat("x", 120))
	if _, err := startControl(context.Background(), ControlOptions{Path: long, GID: -1, Open: open}); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("startControl with a %d-byte path = %v", len(long), err)
	}
}

func TestControlSocketPaths(t *testing.T) {
	cfg := config.Defaults()
	cfg.StateDir = "/var/lib/smimed"
	t.Setenv("RUNTIME_DIRECTORY", "")
	if got := cfg.ControlSocketPath(); got != "/var/lib/smimed/control.sock" {
		t.Errorf("ControlSocketPath without RUNTIME_DIRECTORY = %s", got)
	}
	if got, want := cfg.ControlSocketPaths(), []string{"/var/lib/smimed/control.sock", "/run/smimed/control.sock"}; !slices.Equal(got, []string{want[1], want[0]}) && !slices.Equal(got, want) {
		t.Errorf("ControlSocketPaths = %v, want %v in some order", got, want)
	}
	t.Setenv("RUNTIME_DIRECTORY", "/run/smimed:/run/other")
	if got := cfg.ControlSocketPath(); got != "/run/smimed/control.sock" {
		t.Errorf("ControlSocketPath under systemd = %s", got)
	}
	if got := cfg.ControlSocketPaths(); !slices.Equal(got, []string{"/run/smimed/control.sock", "/var/lib/smimed/control.sock"}) {
		t.Errorf("ControlSocketPaths under systemd = %v", got)
	}

	// The key: relative to the config file, and then the only place.
	dir := t.TempDir()
	cf := filepath.Join(dir, "smimed.toml")
	os.WriteFile(cf, []byte("state_dir = \"state\"\n[daemon]\ncontrol_socket = \"run/ctl.sock\"\n"), 0o600)
	c, err := config.Load(cf)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "run/ctl.sock"); c.ControlSocketPath() != want || !slices.Equal(c.ControlSocketPaths(), []string{want}) {
		t.Errorf("control_socket = %s, paths %v; want %s", c.ControlSocketPath(), c.ControlSocketPaths(), want)
	}
	os.WriteFile(cf, []byte("[daemon]\ncontrol_socket = \"/"+strings.Repeat("x", 120)+"\"\n"), 0o600)
	if _, err := config.Load(cf); err == nil || !strings.Contains(err.Error(), "daemon.control_socket") {
		t.Errorf("config.Load with a 121-byte control_socket = %v", err)
	}
}

func TestDialConfig(t *testing.T) {
	f := newControlFixture(t, nil)
	cfg := config.Defaults()
	cfg.StateDir = f.dir
	cfg.Daemon.ControlSocket = f.path
	api, err := DialConfig(cfg)
	if err != nil {
		t.Fatalf("DialConfig = %v", err)
	}
	if n := len(listIDs(t, api, archive.Query{})); n != len(f.raw) {
		t.Errorf("List via DialConfig: %d records, want %d", n, len(f.raw))
	}
	// A daemon of another state_dir is not ours.
	cfg.StateDir = t.TempDir()
	if _, err := DialConfig(cfg); !errors.Is(err, ErrNoDaemon) || !strings.Contains(err.Error(), f.dir) {
		t.Errorf("DialConfig for another state_dir = %v, want ErrNoDaemon naming %s", err, f.dir)
	}
}

func FuzzControlRequest(f *testing.F) {
	for _, s := range []string{
		`{"op":"ping"}`,
		`{"op":"list","query":{"From":"@partner.example","Status":"undecryptable","Limit":5,"Since":"2026-01-01T00:00:00Z"},"command":"failed"}`,
		`{"op":"get","id":3}`,
		`{"op":"message","id":3,"original":true,"command":"export"}`,
		`{"op":"verify"}`,
		`{"op":"retry","ids":[1,2,3]}`,
		`{"op":"backup"}`,
		`{"op":"audit","since":"2026-04-01T00:00:00Z"}`,
		`{"op":"certs_list"}`,
		`{"op":"certs_email","match":"alice@partner.example"}`,
		`{"op":"certs_trust","match":"1F:66:F0:B4:92:0C:7F:2F"}`,
		`{"op":"certs_untrust","match":"1F:66:F0:B4:92:0C:7F:2F"}`,
		`{"op":"status"}`,
		`{"op":"list","query":{"Limit":-1}}`,
		`{"op":"list"}{}`,
		`[]`,
		`null`,
	} {
		f.Add([]byte(s + "\n"))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		req, err := decodeRequest(line)
		if err != nil {
			return
		}
		if !slices.Contains(controlOps, req.Op) {
			t.Fatalf("decodeRequest(%q) accepted op %q", line, req.Op)
		}
		// What was accepted survives the client's encoding unchanged.
		b, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeRequest(b)
		if err != nil {
			t.Fatalf("decodeRequest(%q) accepted, its re-encoding %q refused: %v", line, b, err)
		}
		b2, _ := json.Marshal(again)
		if !bytes.Equal(b, b2) {
			t.Fatalf("decodeRequest(%q) = %s, after re-encoding %s", line, b, b2)
		}
	})
}

// opensslCert reads a fixture certificate and asks openssl for its SHA-256
// fingerprint (lower-case hex), independently of the store.
func opensslCert(t *testing.T, name string) (*x509.Certificate, string) {
	t.Helper()
	fp := testenv.OpenSSLFingerprint(t, testenv.TestdataPath(t, "pki", name))
	block, _ := pem.Decode(testenv.Testdata(t, "pki", name))
	if block == nil {
		t.Fatalf("%s: no PEM", name)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c, fp
}

// TestControlCerts: the certs_* ops give what the store gives, the
// certificates byte for byte (fingerprints as openssl computes them), the
// store's errors keep their sentinels, and a trust is logged with the
// peer's uid.
func TestControlCerts(t *testing.T) {
	f := newControlFixture(t, nil)
	alice, aliceFP := opensslCert(t, "alice.crt")
	bob, bobFP := opensslCert(t, "bob.crt")
	inter, interFP := opensslCert(t, "intermediate.pem")
	seen := harvest.Sighting{MessageID: "<m1@partner.example>", Seen: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	if err := f.store.Harvest("alice@partner.example", alice, nil, nil, []string{"aes256-CBC"}, seen); err != nil {
		t.Fatal(err)
	}
	if err := f.store.Quarantine("bob@elsewhere.example", bob, nil, "unknown authority", seen); err != nil {
		t.Fatal(err)
	}
	if err := f.store.AddIntermediates([]*x509.Certificate{inter}); err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.StateDir, cfg.Daemon.ControlSocket = f.dir, f.path
	remote, err := DialConfigCerts(cfg)
	if err != nil {
		t.Fatalf("DialConfigCerts = %v", err)
	}
	local := &LocalCerts{Store: f.store}
	ctx := context.Background()

	type view struct {
		Email, Fingerprint, DER string
		Quarantined, Preferred  bool
		Reason, MessageID       string
		Caps                    string
		FirstSeen, LastSeen     time.Time
	}
	views := func(es []harvest.Entry) []view {
		var out []view
		for _, e := range es {
			out = append(out, view{e.Email, e.Fingerprint, hex.EncodeToString(e.Cert.Raw), e.Quarantined, e.EncryptionPreferred,
				e.QuarantineReason, e.MessageID, strings.Join(e.Capabilities, ","), e.FirstSeen.UTC(), e.LastSeen.UTC()})
		}
		return out
	}
	both := func(name string, call func(CertsAPI) ([]harvest.Entry, error)) []view {
		t.Helper()
		want, werr := call(local)
		got, gerr := call(remote)
		if (werr == nil) != (gerr == nil) || !slices.Equal(views(got), views(want)) {
			t.Errorf("%s through the socket = %+v, %v; the store says %+v, %v", name, views(got), gerr, views(want), werr)
		}
		return views(got)
	}

	list := both("List", func(c CertsAPI) ([]harvest.Entry, error) { return c.List(ctx) })
	if len(list) != 2 || list[0].Fingerprint != aliceFP || list[1].Fingerprint != bobFP || !list[1].Quarantined {
		t.Errorf("List = %+v, want alice (%s) then quarantined bob (%s)", list, aliceFP, bobFP)
	}
	if list[0].DER != hex.EncodeToString(alice.Raw) {
		t.Errorf("List: alice's certificate is not the fixture's DER")
	}
	both("ByEmail", func(c CertsAPI) ([]harvest.Entry, error) { return c.ByEmail(ctx, "Alice@Partner.example") })
	both("ByFingerprint", func(c CertsAPI) ([]harvest.Entry, error) { return c.ByFingerprint(ctx, strings.ToUpper(bobFP[:16])) })
	both("ByEmail unknown", func(c CertsAPI) ([]harvest.Entry, error) { return c.ByEmail(ctx, "nobody@partner.example") })

	c, err := remote.Certificate(ctx, interFP)
	if err != nil || c == nil || !bytes.Equal(c.Raw, inter.Raw) {
		t.Errorf("Certificate(intermediate) = %v, %v; want the fixture", c, err)
	}
	if c, err := remote.Certificate(ctx, strings.Repeat("0", 64)); c != nil || err != nil {
		t.Errorf("Certificate(absent) = %v, %v; want nil, nil", c, err)
	}

	for _, tc := range []struct {
		fp   string
		want error
	}{
		{"xyz", harvest.ErrBadFingerprint},
		{strings.Repeat("0", 64), harvest.ErrNotFound},
	} {
		if _, err := remote.Trust(ctx, tc.fp, false); !errors.Is(err, tc.want) {
			t.Errorf("Trust(%s) = %v, want %v", tc.fp, err, tc.want)
		}
	}
	if _, err := remote.ByEmail(ctx, "not-an-address"); !errors.Is(err, harvest.ErrBadAddress) {
		t.Errorf("ByEmail(not-an-address) = %v, want ErrBadAddress", err)
	}

	e, err := remote.Trust(ctx, bobFP, false)
	if err != nil || e.Fingerprint != bobFP || e.Quarantined {
		t.Fatalf("Trust(bob) = %+v, %v", e, err)
	}
	if es, _ := local.ByEmail(ctx, "bob@elsewhere.example"); len(es) != 1 || es[0].Quarantined {
		t.Errorf("after Trust through the socket the store says %+v", views(es))
	}
	f.waitIdle(t)
	var line string
	for _, l := range strings.Split(f.logBuf.String(), "\n") {
		if strings.Contains(l, `msg="certificate trusted"`) {
			line = l
		}
	}
	if !strings.Contains(line, "fingerprint="+bobFP) || !strings.Contains(line, fmt.Sprintf(" uid=%d ", os.Getuid())) {
		t.Errorf("log line of the trust = %q, want fingerprint=%s and uid=%d", line, bobFP, os.Getuid())
	}
	// The store records who trusted when: the peer the kernel named.
	if !strings.Contains(e.TrustedBy, fmt.Sprintf("uid %d", os.Getuid())) || time.Since(e.TrustedAt) > time.Minute {
		t.Errorf("Trust through the socket recorded by %q at %v, want uid %d now", e.TrustedBy, e.TrustedAt, os.Getuid())
	}
	// Untrust through the socket: quarantined again, audited.
	if e, err := remote.Untrust(ctx, bobFP[:16]); err != nil || e.Fingerprint != bobFP || !e.Quarantined || !e.TrustedAt.IsZero() {
		t.Fatalf("Untrust(bob) = %+v, %v", e, err)
	}
	if es, _ := local.ByEmail(ctx, "bob@elsewhere.example"); len(es) != 1 || !es[0].Quarantined {
		t.Errorf("after Untrust through the socket the store says %+v", views(es))
	}
	if _, err := remote.Untrust(ctx, bobFP); !errors.Is(err, harvest.ErrNotTrusted) {
		t.Errorf("Untrust(untrusted) = %v, want ErrNotTrusted", err)
	}
	// Reading certificates reads no mail: not audited; the trust, a
	// change of later verdicts, is (and so is the listing of the log).
	var audited []string
	if err := f.local.Audit(ctx, time.Time{}, func(e archive.AuditEntry) error {
		audited = append(audited, e.Action)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	changes := func(a string) bool { return a == archive.AuditTrust || a == archive.AuditUntrust }
	if !slices.Contains(audited, archive.AuditTrust) || !slices.Contains(audited, archive.AuditUntrust) || audited[len(audited)-1] != archive.AuditAudit ||
		slices.ContainsFunc(audited, func(a string) bool { return !changes(a) && a != archive.AuditAudit }) {
		t.Errorf("audit log after the certificate ops = %v, want the trust(s), the untrust(s) and this listing", audited)
	}
}

// TestControlGroupMemberReadsOnly: a real process of another user whose
// primary group is the service's (so the socket lets it in) may read —
// list, certs list — but not write: archive retry, backup and certs trust
// are refused with one line and audited (issue 9, item 8); the
// quarantined certificate stays quarantined.
func TestControlGroupMemberReadsOnly(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("a real group member needs a second user: run the tests as root (TestPeerPolicyMayWrite covers the decision)")
	}
	f := newControlFixture(t, nil)
	bob, bobFP := opensslCert(t, "bob.crt")
	seen := harvest.Sighting{MessageID: "<m1@partner.example>", Seen: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	if err := f.store.Quarantine("bob@elsewhere.example", bob, nil, "unknown authority", seen); err != nil {
		t.Fatal(err)
	}
	const member = 65534
	gid := uint32(os.Getgid()) // the service's group (GID -1: the daemon's own)
	out := runChild(t, f, member, gid, childOpsEnv+"=list,retry,backup,certs_list,certs_trust,certs_untrust", childFPEnv+"="+bobFP)
	refusal := func(what string) string {
		return fmt.Sprintf("permission denied: %s needs root or the service user; uid %d, a member of group %s, may only read", what, member, groupName(int(gid)))
	}
	want := fmt.Sprintf("uid %d: <nil>\nlist: %d records, <nil>\nretry: %s\nbackup: %s\ncerts_list: 1 entries, <nil>\ncerts_trust: %s\ncerts_untrust: %s\n",
		member, len(f.raw), refusal("archive retry"), refusal("backup"), refusal("certs trust"), refusal("certs untrust"))
	if out != want {
		t.Errorf("the group member's session:\n%s\nwant\n%s", out, want)
	}
	if es, err := f.store.ByFingerprint(bobFP); err != nil || len(es) != 1 || !es[0].Quarantined {
		t.Errorf("after the refused trust the store holds %+v, %v; want bob still quarantined", es, err)
	}
	var refused []string
	f.arc.AuditLog(time.Time{}, func(e archive.AuditEntry) error {
		switch {
		case e.UID == member && e.Action == archive.AuditRefused:
			refused = append(refused, e.Detail)
		case e.UID == member && e.Action != archive.AuditList:
			t.Errorf("audit: the member did %s %q", e.Action, e.Detail)
		}
		return nil
	})
	if want := []string{"archive retry", "backup", "certs trust certificate=" + bobFP, "certs untrust certificate=" + bobFP}; !slices.Equal(refused, want) {
		t.Errorf("audited refusals %q, want %q", refused, want)
	}
}

// TestPeerPolicyMayWrite: root and the service user may write; a member
// of the group reads only.
func TestPeerPolicyMayWrite(t *testing.T) {
	const service = 990
	p := peerPolicy{uid: service, gid: 991, group: "smimed"}
	for _, op := range controlOps {
		_, write := writeOps[op]
		for _, tc := range []struct {
			uid     int
			allowed bool
		}{{0, true}, {service, true}, {1001, !write}} {
			err := p.mayWrite(Caller{UID: tc.uid, GID: 991}, op)
			if (err == nil) != tc.allowed || (err != nil && !errors.Is(err, ErrPeerRefused)) {
				t.Errorf("mayWrite(uid %d, %s) = %v, want allowed %v", tc.uid, op, err, tc.allowed)
			}
		}
	}
	for _, op := range []string{"retry", "backup", "certs_trust", "certs_untrust"} {
		if _, ok := writeOps[op]; !ok {
			t.Errorf("%s is not a write op", op)
		}
	}
}

// TestBackupOneAtATime: while one backup runs, another is refused with a
// clear message instead of a second copy of the store on disk.
func TestBackupOneAtATime(t *testing.T) {
	f := newControlFixture(t, nil)
	backupMu.Lock() // a backup in progress
	var buf bytes.Buffer
	_, err := f.local.Backup(context.Background(), &buf)
	backupMu.Unlock()
	if err == nil || !strings.Contains(err.Error(), "another backup is running") {
		t.Fatalf("Backup during another = %v", err)
	}
	if n, err := f.local.Backup(context.Background(), &buf); err != nil || n == 0 {
		t.Fatalf("Backup afterwards = %d, %v", n, err)
	}
}

// TestControlRequestsQuiet (issue 14): a request that succeeds logs
// nothing at INFO (`smimed status` every few seconds must not fill the
// journal); it is still audited in the archive.
func TestControlRequestsQuiet(t *testing.T) {
	f := newControlFixture(t, nil)
	before := countAudit(t, f)
	api := f.dial(t)
	listIDs(t, api, archive.Query{})
	api.Close()
	f.waitIdle(t)
	if strings.Contains(f.logBuf.String(), "control request") {
		t.Errorf("a successful request was logged at INFO:\n%s", f.logBuf.String())
	}
	if after := countAudit(t, f); after <= before {
		t.Errorf("audit entries %d before, %d after a list: the read was not audited", before, after)
	}
}

func countAudit(t *testing.T, f *controlFixture) int {
	t.Helper()
	n := 0
	if err := f.arc.AuditLog(time.Time{}, func(archive.AuditEntry) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}
