package archive

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message/textproto"
	"github.com/smimed/smimed/daemon/testenv"
)

// The Copier against a mailbox in memory; daemon/sink_test.go runs the
// same life against Dovecot.

// fakeServer is an IMAP server's folders as a Copier sees them.
type fakeServer struct {
	mu      sync.Mutex
	folders map[string][]fakeMessage
	next    uint32
	dials   int
	appends int
	calls   int    // any command
	finds   int    // FindCopies (a SEARCH)
	refuse  string // non-empty: APPEND is refused (NO) with this text
	broken  int    // this many more APPENDs fail midway (the connection dies)
	conns   []*fakeMailbox

	multi     bool   // the server has MULTIAPPEND
	batches   []int  // the size of each MULTIAPPEND, in order
	refuseRaw string // a message containing this is refused (NO), alone or in a MULTIAPPEND
}

type fakeMessage struct {
	uid  uint32
	raw  []byte
	date time.Time
}

// refusal is the server's NO; isRefusal tells it from a broken connection.
type refusal struct{ text string }

func (r refusal) Error() string { return "NO " + r.text }

func isRefusal(err error) bool { return errors.As(err, new(refusal)) }

var errDead = errors.New("connection reset by peer")

func (s *fakeServer) dial(context.Context) (Mailbox, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dials++
	mb := &fakeMailbox{s: s}
	s.conns = append(s.conns, mb)
	return mb, nil
}

// restart kills every connection, as a server restart does.
func (s *fakeServer) restart() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.dead = true
	}
}

// put stores raw in folder as if a client had appended it.
func (s *fakeServer) put(folder string, raw []byte) uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	if s.folders == nil {
		s.folders = map[string][]fakeMessage{}
	}
	s.folders[folder] = append(s.folders[folder], fakeMessage{uid: s.next, raw: raw})
	return s.next
}

func (s *fakeServer) messages(folder string) []fakeMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.folders[folder])
}

type fakeMailbox struct {
	s            *fakeServer
	dead, closed bool
}

// command is the start of every command: a closed or dead connection fails.
func (m *fakeMailbox) command() error {
	m.s.calls++
	if m.closed {
		return errors.New("use of closed connection")
	}
	if m.dead {
		return errDead
	}
	return nil
}

// fields reads header fields the way a server's HEADER search and a
// FETCH of them would show them to a client comparing values.
func fields(raw []byte) textproto.Header {
	h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	return h
}

func matches(raw []byte, want map[string]string) bool {
	h := fields(raw)
	for k, v := range want {
		if got := h.Values(k); len(got) != 1 || strings.TrimSpace(got[0]) != v {
			return false
		}
	}
	return true
}

func (m *fakeMailbox) Noop(context.Context, time.Duration) error {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	return m.command()
}

func (m *fakeMailbox) FindCopies(_ context.Context, folder string, want map[string]string) ([]uint32, error) {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	if err := m.command(); err != nil {
		return nil, err
	}
	m.s.finds++
	var uids []uint32
	for _, msg := range m.s.folders[folder] {
		if matches(msg.raw, want) {
			uids = append(uids, msg.uid)
		}
	}
	return uids, nil
}

func (m *fakeMailbox) Append(_ context.Context, folder, path string, date time.Time) (uint32, error) {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	if err := m.command(); err != nil {
		return 0, err
	}
	m.s.appends++
	if m.s.refuse != "" {
		return 0, refusal{m.s.refuse}
	}
	if m.s.broken > 0 {
		m.s.broken--
		m.dead = true
		return 0, errDead
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	if m.s.refuseRaw != "" && bytes.Contains(raw, []byte(m.s.refuseRaw)) {
		return 0, refusal{"this one is refused"}
	}
	if m.s.folders == nil {
		m.s.folders = map[string][]fakeMessage{}
	}
	m.s.next++
	m.s.folders[folder] = append(m.s.folders[folder], fakeMessage{uid: m.s.next, raw: raw, date: date})
	return m.s.next, nil
}

// AppendMany is MULTIAPPEND: all or none; after a refusal the connection
// is not used again (imapconn closes it).
func (m *fakeMailbox) AppendMany(_ context.Context, folder string, msgs [][]byte, dates []time.Time) ([]uint32, error) {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	if !m.s.multi {
		return nil, fmt.Errorf("no MULTIAPPEND: %w", errors.ErrUnsupported)
	}
	if err := m.command(); err != nil {
		return nil, err
	}
	m.s.batches = append(m.s.batches, len(msgs))
	if m.s.broken > 0 {
		m.s.broken--
		m.dead = true
		return nil, errDead
	}
	for _, raw := range msgs {
		if m.s.refuse != "" || m.s.refuseRaw != "" && bytes.Contains(raw, []byte(m.s.refuseRaw)) {
			m.closed = true
			return nil, refusal{"this one is refused"}
		}
	}
	if m.s.folders == nil {
		m.s.folders = map[string][]fakeMessage{}
	}
	var uids []uint32
	for i, raw := range msgs {
		m.s.next++
		m.s.folders[folder] = append(m.s.folders[folder], fakeMessage{uid: m.s.next, raw: slices.Clone(raw), date: dates[i]})
		uids = append(uids, m.s.next)
	}
	return uids, nil
}

func (m *fakeMailbox) Remove(_ context.Context, folder string, uid uint32, want map[string]string) (bool, error) {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	if err := m.command(); err != nil {
		return false, err
	}
	msgs := m.s.folders[folder]
	i := slices.IndexFunc(msgs, func(msg fakeMessage) bool { return msg.uid == uid })
	if i < 0 || !matches(msgs[i].raw, want) {
		return false, nil
	}
	m.s.folders[folder] = slices.Delete(msgs, i, i+1)
	return true, nil
}

func (m *fakeMailbox) Close() error {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	m.closed = true
	return nil
}

// fakeMonitor is the daemon's status as far as copies go.
type fakeMonitor struct {
	mu      sync.Mutex
	reason  string // the refusal shown, "" when copies go through
	refused int    // calls
	stored  int
}

func (f *fakeMonitor) CopyRefused(account, folder, reason string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refused++
	news := f.reason != reason
	f.reason = reason
	return news
}

func (f *fakeMonitor) CopyStored(account string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stored++
	was := f.reason != ""
	f.reason = ""
	return was
}

type copierEnv struct {
	a    *Archive
	srv  *fakeServer
	mon  *fakeMonitor
	logs *bytes.Buffer
	cp   *Copier
}

func newCopierEnv(t *testing.T, mode string) *copierEnv {
	t.Helper()
	a, _ := openTest(t)
	e := &copierEnv{a: a, srv: &fakeServer{}, mon: &fakeMonitor{}, logs: &bytes.Buffer{}}
	e.cp = e.copier(t, mode)
	return e
}

// copier is a Copier of account "ceo" to "Decrypted", closed at the end of
// the test.
func (e *copierEnv) copier(t *testing.T, mode string) *Copier {
	cp := NewCopier(e.a, CopierConfig{
		Account: "ceo", Folder: "Decrypted", Mode: mode, AuthservID: "mx.test", TempDir: t.TempDir(),
		Dial: e.srv.dial, Refused: isRefusal, Monitor: e.mon,
		Log: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	t.Cleanup(cp.Close)
	return cp
}

// checkCopy checks that msg is the copy of record id from ceo's INBOX
// (UIDVALIDITY 7, UID uid) that smimed writes.
func checkCopy(t *testing.T, msg fakeMessage, id uint64, uid uint32) {
	t.Helper()
	h := fields(msg.raw)
	if got, want := h.Get("X-Smimed-Record"), fmt.Sprint(id); got != want {
		t.Errorf("copy UID %d: X-Smimed-Record %q, want %q", msg.uid, got, want)
	}
	if got, want := h.Get("X-Smimed-Source"), fmt.Sprintf("ceo/INBOX/7/%d", uid); got != want {
		t.Errorf("copy UID %d: X-Smimed-Source %q, want %q", msg.uid, got, want)
	}
}

// TestCopierStoresOnce: a copy is appended once, with the message's
// INTERNALDATE, and recorded; asked again, the copier answers from the
// record without a word to the server. A copy appended just before a
// crash (the archive does not know) is found, not made twice.
func TestCopierStoresOnce(t *testing.T) {
	e := newCopierEnv(t, UserCopyEncrypted)
	ctx := context.Background()
	rec, _ := put(t, e.a, engine(t, "org-new"), src(1), testenv.Testdata(t, "msg", "enc-aes256.eml"))
	st, err := e.cp.Copy(ctx, rec, nil)
	want := CopyState{Kind: CopyStored, Folder: "Decrypted", UID: 1}
	if err != nil || st.Kind != want.Kind || st.Folder != want.Folder || st.UID != want.UID {
		t.Fatalf("Copy() = %+v, %v; want %+v", st, err, want)
	}
	if got, _ := e.a.GetCopy(rec.ID); got == nil || *got != st {
		t.Errorf("GetCopy() = %+v, want %+v", got, st)
	}
	msgs := e.srv.messages("Decrypted")
	if len(msgs) != 1 {
		t.Fatalf("Decrypted holds %d messages, want 1", len(msgs))
	}
	checkCopy(t, msgs[0], rec.ID, 1)
	if !msgs[0].date.Equal(src(1).InternalDate) {
		t.Errorf("copy appended with date %v, want the INTERNALDATE %v", msgs[0].date, src(1).InternalDate)
	}
	if !bytes.Contains(msgs[0].raw, []byte("X-Smimed-Decryption: ok")) {
		t.Errorf("the copy is not the decrypted message:\n%s", msgs[0].raw)
	}

	calls := e.srv.calls
	if again, err := e.cp.Copy(ctx, rec, nil); err != nil || again != st {
		t.Errorf("Copy() again = %+v, %v; want %+v", again, err, st)
	}
	if e.srv.calls != calls {
		t.Errorf("Copy() of a stored copy sent %d commands, want none", e.srv.calls-calls)
	}

	// The crash window: the copy of UID 2 is in the folder, not recorded.
	rec2, _ := put(t, e.a, engine(t, "org-new"), src(2), testenv.Testdata(t, "msg", "enc-aes256.eml"))
	pt, err := e.a.ReadPlaintext(rec2)
	if err != nil {
		t.Fatal(err)
	}
	uid := e.srv.put("Decrypted", UserCopyRecord(pt, rec2.Report(), rec2.Source(), "mx.test", rec2.ID))
	st, err = e.cp.Copy(ctx, rec2, nil)
	if err != nil || st.Kind != CopyStored || st.UID != uid {
		t.Errorf("Copy() after the crash = %+v, %v; want stored under UID %d", st, err, uid)
	}
	if n := len(e.srv.messages("Decrypted")); n != 2 || e.srv.appends != 1 {
		t.Errorf("after the crash: %d copies, %d APPENDs; want 2 and 1", n, e.srv.appends)
	}
	if !strings.Contains(e.logs.String(), "user copy already in the archive folder") || !strings.Contains(e.logs.String(), "archive_folder=Decrypted") {
		t.Errorf("the copy found is not logged with the folder:\n%s", e.logs)
	}
}

// TestCopierNewRecord: the copy of a record just created is appended
// without a search of the archive folder (issue 12: a SEARCH over the
// growing folder before every copy); a connection idle for a while is
// checked first, so a server restart meanwhile costs a new connection,
// not a failed copy.
func TestCopierNewRecord(t *testing.T) {
	e := newCopierEnv(t, UserCopyAll)
	ctx := context.Background()
	copyNew := func(uid uint32) (CopyState, error) {
		rec, _ := put(t, e.a, engine(t), src(uid), testenv.Testdata(t, "msg", "plain.eml"))
		return e.cp.CopyNew(ctx, rec, nil)
	}
	for uid := uint32(1); uid <= 3; uid++ {
		if st, err := copyNew(uid); err != nil || st.Kind != CopyStored {
			t.Fatalf("CopyNew(UID %d) = %+v, %v; want stored", uid, st, err)
		}
	}
	if e.srv.finds != 0 || e.srv.appends != 3 || len(e.srv.messages("Decrypted")) != 3 {
		t.Errorf("three new records: %d searches, %d APPENDs, %d copies; want 0, 3, 3", e.srv.finds, e.srv.appends, len(e.srv.messages("Decrypted")))
	}

	old := copyCheckAfter
	copyCheckAfter = 0
	t.Cleanup(func() { copyCheckAfter = old })
	e.srv.restart()
	if st, err := copyNew(4); err != nil || st.Kind != CopyStored || e.srv.dials != 2 {
		t.Errorf("CopyNew() after a restart = %+v, %v after %d dials; want stored on a second connection", st, err, e.srv.dials)
	}
	if e.srv.finds != 0 || e.srv.appends != 4 {
		t.Errorf("after the restart: %d searches, %d APPENDs; want 0 and 4", e.srv.finds, e.srv.appends)
	}
}

// TestCopierAppendInFlight: an APPEND that began and was not recorded (a
// crash) may still be saved by the server after its client went away
// (seen with Courier under load): the copy is looked for only once that
// has had time to end, so it is found, not made twice. A record without
// such a mark is copied at once.
func TestCopierAppendInFlight(t *testing.T) {
	e := newCopierEnv(t, UserCopyEncrypted)
	old := copySettle
	copySettle = 300 * time.Millisecond
	t.Cleanup(func() { copySettle = old })
	rec, _ := put(t, e.a, engine(t, "org-new"), src(1), testenv.Testdata(t, "msg", "enc-aes256.eml"))
	pt, err := e.a.ReadPlaintext(rec)
	if err != nil {
		t.Fatal(err)
	}
	// The crashed run: its APPEND began, and the server stores the copy
	// 100 ms later.
	if err := e.a.AppendBegins(rec.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	late := make(chan uint32, 1)
	time.AfterFunc(100*time.Millisecond, func() {
		late <- e.srv.put("Decrypted", UserCopyRecord(pt, rec.Report(), rec.Source(), "mx.test", rec.ID))
	})
	st, err := e.cp.Copy(context.Background(), rec, nil)
	uid := <-late
	if err != nil || st.Kind != CopyStored || st.UID != uid {
		t.Errorf("Copy() after an APPEND in flight = %+v, %v; want the late copy, UID %d", st, err, uid)
	}
	if n := len(e.srv.messages("Decrypted")); n != 1 || e.srv.appends != 0 {
		t.Errorf("%d copies after %d APPENDs; want 1 and 0", n, e.srv.appends)
	}
	if _, inFlight, _ := e.a.AppendBegan(rec.ID); inFlight {
		t.Error("the APPEND is still marked in flight after the copy was recorded")
	}
}

// TestCopierNotWanted: what archive_folder_messages leaves out is neither
// copied nor recorded.
func TestCopierNotWanted(t *testing.T) {
	for _, tt := range []struct {
		mode, fixture string
		keys          []string
	}{
		{UserCopyEncrypted, "plain.eml", nil},
		{UserCopyEncrypted, "signed-rsa-sha256.eml", nil},
		{UserCopyEncrypted, "enc-nokey.eml", []string{"org-new"}},
		{UserCopySMIME, "plain.eml", nil},
	} {
		e := newCopierEnv(t, tt.mode)
		rec, _ := put(t, e.a, engine(t, tt.keys...), src(1), testenv.Testdata(t, "msg", tt.fixture))
		st, err := e.cp.Copy(context.Background(), rec, nil)
		if err != nil || st.Kind != CopyNotWanted || st.String() != "" {
			t.Errorf("%s under %q: Copy() = %+v, %v; want not wanted", tt.fixture, tt.mode, st, err)
		}
		if got, _ := e.a.GetCopy(rec.ID); got != nil || e.srv.dials != 0 {
			t.Errorf("%s under %q: recorded %+v after %d dials; want nothing", tt.fixture, tt.mode, got, e.srv.dials)
		}
	}
}

// TestCopierSetsAsideRefusals: a refused copy is pending at once (the
// message is done), said once however often the same reason comes, not
// tried again by Copy, and made by UpdateCopies once the server takes it.
func TestCopierSetsAsideRefusals(t *testing.T) {
	e := newCopierEnv(t, UserCopyAll)
	ctx := context.Background()
	e.srv.refuse = "[OVERQUOTA] Quota exceeded"
	var recs []*Record
	for uid := range uint32(2) {
		rec, _ := put(t, e.a, engine(t), src(uid+1), testenv.Testdata(t, "msg", "plain.eml"))
		recs = append(recs, rec)
		st, err := e.cp.Copy(ctx, rec, nil)
		if err != nil || st.Kind != CopyPending || st.Reason != "NO [OVERQUOTA] Quota exceeded" || st.String() != "pending: NO [OVERQUOTA] Quota exceeded" {
			t.Fatalf("Copy() refused = %+v, %v; want pending with the server's text", st, err)
		}
		if got, _ := e.a.GetCopy(rec.ID); got == nil || *got != st {
			t.Errorf("GetCopy() = %+v, want %+v", got, st)
		}
	}
	if p, _ := e.a.PendingCopies(); !slices.Equal(p, []uint64{recs[0].ID, recs[1].ID}) {
		t.Errorf("PendingCopies() = %v, want both records", p)
	}
	if n := strings.Count(e.logs.String(), "level=ERROR"); n != 1 || e.mon.refused != 2 {
		t.Errorf("%d ERROR lines for %d refusals, want 1 for 2:\n%s", n, e.mon.refused, e.logs)
	}
	appends := e.srv.appends
	if st, err := e.cp.Copy(ctx, recs[0], nil); err != nil || st.Kind != CopyPending || e.srv.appends != appends {
		t.Errorf("Copy() of a pending copy = %+v, %v after %d APPENDs; want pending, none", st, err, e.srv.appends-appends)
	}

	e.a.UpdateCopies(ctx, func(string) *Copier { return e.cp }, slog.New(slog.NewTextHandler(e.logs, nil)))
	if p, _ := e.a.PendingCopies(); len(p) != 2 {
		t.Errorf("refused again: PendingCopies() = %v, want both", p)
	}
	e.srv.refuse = ""
	e.a.UpdateCopies(ctx, func(string) *Copier { return e.cp }, slog.New(slog.NewTextHandler(e.logs, nil)))
	if p, _ := e.a.PendingCopies(); len(p) != 0 {
		t.Errorf("after the server took them: PendingCopies() = %v", p)
	}
	msgs := e.srv.messages("Decrypted")
	if len(msgs) != 2 {
		t.Fatalf("Decrypted holds %d messages, want 2", len(msgs))
	}
	for i, m := range msgs {
		checkCopy(t, m, recs[i].ID, uint32(i+1))
		if got, _ := e.a.GetCopy(recs[i].ID); got == nil || got.Kind != CopyStored || got.UID != m.uid {
			t.Errorf("GetCopy(%d) = %+v, want stored under UID %d", recs[i].ID, got, m.uid)
		}
	}
	if n := strings.Count(e.logs.String(), "user copies go through again"); n != 1 || e.mon.reason != "" {
		t.Errorf("%d lines say copies go through again, want 1; status shows %q", n, e.mon.reason)
	}
}

// TestCopierSetsAsideAfterFiveFailures: a copy that fails for another
// reason is returned as an error (the message comes again) four times;
// the fifth failure sets it aside.
func TestCopierSetsAsideAfterFiveFailures(t *testing.T) {
	e := newCopierEnv(t, UserCopyAll)
	e.srv.broken = 100
	rec, _ := put(t, e.a, engine(t), src(1), testenv.Testdata(t, "msg", "plain.eml"))
	for i := 1; i < 5; i++ {
		if st, err := e.cp.Copy(context.Background(), rec, nil); !errors.Is(err, errDead) {
			t.Fatalf("Copy() #%d = %+v, %v; want %v", i, st, err, errDead)
		}
	}
	if p, _ := e.a.PendingCopies(); len(p) != 0 {
		t.Errorf("after 4 failures PendingCopies() = %v, want none", p)
	}
	st, err := e.cp.Copy(context.Background(), rec, nil)
	if err != nil || st.Kind != CopyPending || st.Reason != errDead.Error() {
		t.Errorf("Copy() #5 = %+v, %v; want pending: %v", st, err, errDead)
	}
	if p, _ := e.a.PendingCopies(); !slices.Equal(p, []uint64{rec.ID}) || e.srv.appends != 5 {
		t.Errorf("after 5 failures PendingCopies() = %v after %d APPENDs; want [%d] after 5", p, e.srv.appends, rec.ID)
	}
}

// TestCopierConnection: the connection is kept between copies; when the
// server closed it meanwhile, the copy goes out on a new one at once; an
// APPEND that failed midway is not repeated (the next delivery searches
// first); after Close nothing is dialled.
func TestCopierConnection(t *testing.T) {
	e := newCopierEnv(t, UserCopyAll)
	ctx := context.Background()
	copyUID := func(uid uint32) (CopyState, error) {
		rec, _ := put(t, e.a, engine(t), src(uid), testenv.Testdata(t, "msg", "plain.eml"))
		return e.cp.Copy(ctx, rec, nil)
	}
	for uid := uint32(1); uid <= 2; uid++ {
		if _, err := copyUID(uid); err != nil {
			t.Fatal(err)
		}
	}
	if e.srv.dials != 1 {
		t.Errorf("two copies took %d connections, want 1", e.srv.dials)
	}
	e.srv.restart()
	if st, err := copyUID(3); err != nil || st.Kind != CopyStored {
		t.Errorf("Copy() after a restart = %+v, %v; want stored on a new connection", st, err)
	}
	if e.srv.dials != 2 {
		t.Errorf("after a restart: %d dials, want 2", e.srv.dials)
	}

	e.srv.broken = 1
	appends := e.srv.appends
	if _, err := copyUID(4); !errors.Is(err, errDead) || e.srv.appends != appends+1 {
		t.Errorf("APPEND broken midway: %v after %d APPENDs; want %v after 1", err, e.srv.appends-appends, errDead)
	}
	if st, err := copyUID(4); err != nil || st.Kind != CopyStored || e.srv.dials != 3 {
		t.Errorf("Copy() again = %+v, %v after %d dials; want stored on a third connection", st, err, e.srv.dials)
	}

	e.cp.Close()
	if _, err := copyUID(5); !errors.Is(err, ErrCopierClosed) || e.srv.dials != 3 {
		t.Errorf("Copy() after Close = %v after %d dials; want %v, no dial", err, e.srv.dials, ErrCopierClosed)
	}
}

// TestUpdateCopiesReplacesTheOldCopy: archive retry decrypts a message
// whose copy showed it undecryptable; UpdateCopies appends the new
// version's copy and removes the old one; with the account gone, a new
// version is dropped from the queue.
func TestUpdateCopiesReplacesTheOldCopy(t *testing.T) {
	e := newCopierEnv(t, UserCopyAll)
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(e.logs, nil))
	v1, _ := put(t, e.a, engine(t, "org-new"), src(1), testenv.Testdata(t, "msg", "enc-old-key.eml"))
	if _, err := e.cp.Copy(ctx, v1, nil); err != nil {
		t.Fatal(err)
	}
	v2, changed, err := e.a.Reprocess(v1.ID, engine(t, "org-new", "org-old"))
	if err != nil || !changed {
		t.Fatalf("Reprocess() = %v, %v", changed, err)
	}
	e.a.UpdateCopies(ctx, func(account string) *Copier {
		if account == "ceo" {
			return e.cp
		}
		return nil
	}, log)
	msgs := e.srv.messages("Decrypted")
	if len(msgs) != 1 {
		t.Fatalf("Decrypted holds %d messages, want 1 (the new version's)", len(msgs))
	}
	checkCopy(t, msgs[0], v2.ID, 1)
	if !bytes.Contains(msgs[0].raw, []byte("X-Smimed-Decryption: ok")) {
		t.Errorf("the new copy is not decrypted:\n%s", msgs[0].raw)
	}
	if got, _ := e.a.GetCopy(v2.ID); got == nil || got.Kind != CopyStored || got.UID != msgs[0].uid {
		t.Errorf("GetCopy(v2) = %+v, want stored under UID %d", got, msgs[0].uid)
	}
	if p, _ := e.a.PendingCopies(); len(p) != 0 {
		t.Errorf("PendingCopies() = %v, want none", p)
	}
	if !strings.Contains(e.logs.String(), "user copy updated after re-processing") {
		t.Errorf("the update is not logged:\n%s", e.logs)
	}

	// A retry for an account no longer configured: nothing to copy to.
	v3, changed, err := e.a.Reprocess(v2.ID, engine(t, "org-new"))
	if err != nil || !changed {
		t.Fatalf("Reprocess() without org-old = %v, %v", changed, err)
	}
	e.a.UpdateCopies(ctx, func(string) *Copier { return nil }, log)
	if p, _ := e.a.PendingCopies(); len(p) != 0 {
		t.Errorf("without a copier PendingCopies() = %v, want none", p)
	}
	if got, _ := e.a.GetCopy(v3.ID); got != nil || len(e.srv.messages("Decrypted")) != 1 {
		t.Errorf("without a copier: copy %+v recorded, folder holds %d", got, len(e.srv.messages("Decrypted")))
	}
}

// The fake server saves an APPEND at once: no test but
// TestCopierAppendInFlight needs to wait for a late one.
func init() { copySettle = 20 * time.Millisecond }

// copyConcurrently makes n records (UIDs 1..n, plain, all copied) and
// copies them at once while the copier's connection is held, so that they
// all wait together; then the connection is let go. It returns each
// record with the state its copy got.
func copyConcurrently(t *testing.T, e *copierEnv, n int) ([]*Record, []CopyState) {
	t.Helper()
	ctx := context.Background()
	eng := engine(t)
	recs := make([]*Record, n)
	for i := range recs {
		recs[i], _ = put(t, e.a, eng, src(uint32(i+1)), testenv.Testdata(t, "msg", "plain.eml"))
	}
	if err := e.cp.lock(ctx); err != nil {
		t.Fatal(err)
	}
	states := make([]CopyState, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, rec := range recs {
		wg.Go(func() { states[i], errs[i] = e.cp.CopyNew(ctx, rec, nil) })
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		e.cp.qmu.Lock()
		waiting := len(e.cp.queue)
		e.cp.qmu.Unlock()
		if waiting == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d copies waiting for the connection", waiting, n)
		}
	}
	e.cp.unlock()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("CopyNew(UID %d) = %v", i+1, err)
		}
	}
	return recs, states
}

// checkOneCopyEach checks that the folder holds exactly one copy of each
// record whose state says stored, under the UID the state names, and none
// of the others.
func checkOneCopyEach(t *testing.T, e *copierEnv, recs []*Record, states []CopyState) {
	t.Helper()
	byRecord := map[string][]fakeMessage{}
	for _, m := range e.srv.messages("Decrypted") {
		h := fields(m.raw)
		id := h.Get("X-Smimed-Record")
		byRecord[id] = append(byRecord[id], m)
	}
	for i, rec := range recs {
		got := byRecord[fmt.Sprint(rec.ID)]
		if states[i].Kind != CopyStored {
			if len(got) != 0 {
				t.Errorf("record %d (%s) has %d copies", rec.ID, states[i], len(got))
			}
			continue
		}
		if len(got) != 1 {
			t.Errorf("record %d has %d copies, want 1", rec.ID, len(got))
			continue
		}
		checkCopy(t, got[0], rec.ID, uint32(i+1))
		if got[0].uid != states[i].UID {
			t.Errorf("record %d: copy recorded under UID %d, the server holds it under %d", rec.ID, states[i].UID, got[0].uid)
		}
		if saved, err := e.a.GetCopy(rec.ID); err != nil || saved == nil || *saved != states[i] {
			t.Errorf("record %d: copy state on disk %+v, %v; want %+v", rec.ID, saved, err, states[i])
		}
	}
}

// TestCopierBatches (issue 12): copies that wait for the connection
// together go in one MULTIAPPEND, each recorded under its own UID.
func TestCopierBatches(t *testing.T) {
	e := newCopierEnv(t, UserCopyAll)
	e.srv.multi = true
	recs, states := copyConcurrently(t, e, 20)
	if !slices.Equal(e.srv.batches, []int{20}) || e.srv.appends != 0 || e.srv.finds != 0 {
		t.Errorf("20 waiting copies: MULTIAPPENDs of %v, %d APPENDs, %d searches; want one of 20 and nothing else", e.srv.batches, e.srv.appends, e.srv.finds)
	}
	checkOneCopyEach(t, e, recs, states)
}

// TestCopierBatchRefused: the server stores a MULTIAPPEND all or none, so
// when it refuses one copy of a batch, the copies are appended one by one
// (on a new connection) and only the refused one is set aside.
func TestCopierBatchRefused(t *testing.T) {
	e := newCopierEnv(t, UserCopyAll)
	e.srv.multi = true
	e.srv.refuseRaw = "X-Smimed-Source: ceo/INBOX/7/5\r\n"
	recs, states := copyConcurrently(t, e, 8)
	if !slices.Equal(e.srv.batches, []int{8}) || e.srv.appends != 8 {
		t.Errorf("a refused batch of 8: MULTIAPPENDs of %v, then %d APPENDs; want one of 8, then 8", e.srv.batches, e.srv.appends)
	}
	for i, st := range states {
		want := CopyStored
		if i == 4 {
			want = CopyPending
		}
		if st.Kind != want {
			t.Errorf("copy of UID %d: %s, want %s", i+1, st, want)
		}
	}
	checkOneCopyEach(t, e, recs, states)
}

// TestCopierBatchBroken: a MULTIAPPEND that fails midway (the connection
// dies) may or may not have been stored: every copy of it fails, so that
// its message comes again and is looked for before a new APPEND.
func TestCopierBatchBroken(t *testing.T) {
	e := newCopierEnv(t, UserCopyAll)
	e.srv.multi = true
	e.srv.broken = 1
	ctx := context.Background()
	eng := engine(t)
	recs := make([]*Record, 3)
	for i := range recs {
		recs[i], _ = put(t, e.a, eng, src(uint32(i+1)), testenv.Testdata(t, "msg", "plain.eml"))
	}
	if err := e.cp.lock(ctx); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, len(recs))
	var wg sync.WaitGroup
	for i, rec := range recs {
		wg.Go(func() { _, errs[i] = e.cp.CopyNew(ctx, rec, nil) })
	}
	for {
		e.cp.qmu.Lock()
		n := len(e.cp.queue)
		e.cp.qmu.Unlock()
		if n == len(recs) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	e.cp.unlock()
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, errDead) {
			t.Errorf("copy of UID %d after a broken MULTIAPPEND = %v, want the connection's error", i+1, err)
		}
		if _, inFlight, err := e.a.AppendBegan(recs[i].ID); err != nil || !inFlight {
			t.Errorf("record %d: APPEND in flight = %v, %v; want true (its copy is looked for next time)", recs[i].ID, inFlight, err)
		}
	}
}

// TestCopierNoMultiAppend: a server without MULTIAPPEND gets the waiting
// copies one by one.
func TestCopierNoMultiAppend(t *testing.T) {
	e := newCopierEnv(t, UserCopyAll)
	recs, states := copyConcurrently(t, e, 5)
	if len(e.srv.batches) != 0 || e.srv.appends != 5 {
		t.Errorf("no MULTIAPPEND: batches %v, %d APPENDs; want none and 5", e.srv.batches, e.srv.appends)
	}
	checkOneCopyEach(t, e, recs, states)
}
