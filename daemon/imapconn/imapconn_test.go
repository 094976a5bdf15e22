package imapconn

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"github.com/smimed/smimed/daemon/testenv"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testMessage is a CRLF message of about size bytes with a unique header.
func testMessage(id string, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: alice@partner.example\r\nTo: bob@org.example\r\nSubject: test %s\r\nMessage-ID: <%s@test.smimed.example>\r\nX-Smimed-Test: %s\r\n\r\n", id, id, id)
	line := strings.Repeat("0123456789abcdef", 4) + "\r\n"
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "%06d %s", i, line)
	}
	return b.Bytes()
}

// memServer serves go-imap's in-memory server on 127.0.0.1 (with implicit
// TLS when implicit, else with STARTTLS offered when tc is set).
func memServer(t *testing.T, mem *imapmemserver.Server, tc *tls.Config, implicit bool) string {
	opts := &imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}},
		InsecureAuth: true,
		Logger:       slog.NewLogLogger(slog.DiscardHandler, slog.LevelError),
	}
	if !implicit {
		opts.TLSConfig = tc
	}
	srv := imapserver.New(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if implicit {
		ln = tls.NewListener(ln, tc)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestMemServer exercises the adapter against go-imap's in-memory server.
func TestMemServer(t *testing.T) {
	mem := imapmemserver.New()
	user := imapmemserver.NewUser("alice", "secret")
	mem.AddUser(user)
	if err := user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	var want []uint32
	for i := range 3 {
		msg := testMessage(strconv.Itoa(i), 200)
		data, err := user.Append("INBOX", bytes.NewReader(msg), &imap.AppendOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, uint32(data.UID))
	}
	status, err := user.Status("INBOX", &imap.StatusOptions{UIDValidity: true, UIDNext: true, NumMessages: true})
	if err != nil {
		t.Fatal(err)
	}
	addr := memServer(t, mem, nil, false)

	ctx := context.Background()
	c, err := Dial(ctx, Config{Addr: addr, TLS: "none", Username: "alice", Password: "secret", Auth: "login", Logger: testLogger(t), CommandTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("Dial() = %v", err)
	}
	defer c.Close()
	mb, err := c.Examine(ctx, "INBOX")
	if err != nil {
		t.Fatalf("Examine() = %v", err)
	}
	if mb.UIDValidity != status.UIDValidity || mb.UIDNext != uint32(status.UIDNext) || mb.Exists != *status.NumMessages {
		t.Fatalf("Examine() = %+v, want UIDVALIDITY %d UIDNEXT %d EXISTS %d", mb, status.UIDValidity, status.UIDNext, *status.NumMessages)
	}
	got, err := c.UIDsAfter(ctx, 0)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("UIDsAfter(0) = %v, %v, want %v", got, err, want)
	}
	got, err = c.UIDsAfter(ctx, want[0])
	if err != nil || !slices.Equal(got, want[1:]) {
		t.Fatalf("UIDsAfter(%d) = %v, %v, want %v", want[0], got, err, want[1:])
	}
	got, err = c.UIDsAfter(ctx, want[2])
	if err != nil || len(got) != 0 {
		t.Fatalf("UIDsAfter(last) = %v, %v, want none", got, err)
	}
	if err := c.Noop(ctx, 5*time.Second); err != nil {
		t.Fatalf("Noop() = %v", err)
	}
	if _, err := Dial(ctx, Config{Addr: addr, TLS: "none", Username: "alice", Password: "wrong", Auth: "login"}); !errors.Is(err, ErrAuth) {
		t.Fatalf("Dial(wrong password) = %v, want ErrAuth", err)
	}
}

// TestTLS logs in over implicit TLS and STARTTLS with a CA of the test's own,
// and refuses a certificate for another name.
func TestTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "imap.test"},
		DNSNames:              []string{"imap.test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}

	mem := imapmemserver.New()
	user := imapmemserver.NewUser("alice", "secret")
	mem.AddUser(user)
	if err := user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, mode := range []string{"implicit", "starttls"} {
		addr := memServer(t, mem, tc, mode == "implicit")
		cfg := Config{Addr: addr, TLS: mode, TLSCAFile: caFile, TLSServerName: "imap.test", Username: "alice", Password: "secret", Logger: testLogger(t)}
		c, err := Dial(ctx, cfg)
		if err != nil {
			t.Fatalf("Dial(%s) = %v", mode, err)
		}
		if _, err := c.Examine(ctx, "INBOX"); err != nil {
			t.Fatalf("Examine() over %s = %v", mode, err)
		}
		c.Close()

		cfg.TLSServerName = "other.test"
		if c, err := Dial(ctx, cfg); err == nil || errors.Is(err, ErrAuth) {
			if c != nil {
				c.Close()
			}
			t.Fatalf("Dial(%s, wrong server name) = %v, want a certificate error", mode, err)
		}
	}
}

func TestConfigRefused(t *testing.T) {
	// A cancelled context: should the check be missing, nothing is sent.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, cfg := range []Config{
		{Addr: "192.0.2.1:143", TLS: "none"},
		{Addr: "[2001:db8::1]:143", TLS: "none"},
		{Addr: "mail.example:143", TLS: "none"},
		{Addr: "127.0.0.1:143", TLS: "sometimes"},
		{Addr: "127.0.0.1:143", TLS: "none", Auth: "cram-md5"},
		{Addr: "127.0.0.1", TLS: "none"},
	} {
		_, err := Dial(ctx, cfg)
		if !errors.Is(err, ErrConfig) {
			t.Errorf("Dial(%+v) = %v, want ErrConfig", cfg, err)
		}
	}
	// A CA file missing at connect time is worth retrying: it may be being
	// replaced.
	_, err := Dial(ctx, Config{Addr: "127.0.0.1:993", TLS: "implicit", TLSCAFile: "/nonexistent/ca.pem"})
	if err == nil || errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "tls_ca_file") {
		t.Errorf("Dial(missing CA file) = %v, want a temporary error naming tls_ca_file", err)
	}
	_, err = Dial(ctx, Config{Addr: "192.0.2.1:143", TLS: "none"})
	if !strings.Contains(err.Error(), "loopback") {
		t.Errorf("Dial(tls none, remote) = %v, want an error naming loopback", err)
	}
}

// dovecot is one private Dovecot shared by the subtests of TestDovecot, each
// with a user of its own.
type dovecot struct {
	*testenv.Dovecot
	t *testing.T
}

func (d dovecot) user(t *testing.T) string {
	name := strings.ToLower(strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()))
	d.AddUser(t, name, "pw-"+name)
	return name
}

func (d dovecot) dial(t *testing.T, user string) *Conn {
	t.Helper()
	c, err := Dial(context.Background(), Config{Addr: d.Addr(), TLS: "none", Username: user, Password: "pw-" + user, Logger: testLogger(t), CommandTimeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("Dial() = %v\nDovecot log:\n%s", err, d.Log())
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// field is one field of doveadm fetch for one message, e.g. "flags".
func (d dovecot) field(t *testing.T, user, folder string, uid uint32, field string) string {
	t.Helper()
	out := d.Doveadm(t, "fetch", "-u", user, field, "mailbox", folder, "uid", strconv.FormatUint(uint64(uid), 10))
	v, ok := strings.CutPrefix(out, field+":")
	if !ok {
		t.Fatalf("doveadm fetch %s = %q", field, out)
	}
	return strings.TrimSpace(v)
}

func (d dovecot) status(t *testing.T, user, folder, fields string) string {
	t.Helper()
	out := strings.TrimSpace(d.Doveadm(t, "mailbox", "status", "-u", user, fields, folder))
	return strings.TrimPrefix(out, folder+" ")
}

func TestDovecot(t *testing.T) {
	d := dovecot{Dovecot: testenv.StartDovecot(t), t: t}
	t.Logf("Dovecot %s on %s", d.Version(), d.Addr())
	ctx := context.Background()

	t.Run("Examine", func(t *testing.T) {
		u := d.user(t)
		d.Deliver(t, u, "INBOX", testMessage("e1", 100))
		c := d.dial(t, u)
		mb, err := c.Examine(ctx, "INBOX")
		if err != nil {
			t.Fatalf("Examine() = %v", err)
		}
		want := d.status(t, u, "INBOX", "uidvalidity uidnext messages")
		got := fmt.Sprintf("messages=%d uidnext=%d uidvalidity=%d", mb.Exists, mb.UIDNext, mb.UIDValidity)
		if got != want {
			t.Fatalf("Examine() = %s, doveadm mailbox status = %s", got, want)
		}
	})

	t.Run("UIDsAfter", func(t *testing.T) {
		u := d.user(t)
		for i := range 3 {
			d.Deliver(t, u, "INBOX", testMessage(fmt.Sprint("u", i), 100))
		}
		want := d.UIDs(t, u, "INBOX")
		if len(want) != 3 {
			t.Fatalf("doveadm search = %v, want 3 UIDs", want)
		}
		c := d.dial(t, u)
		if _, err := c.Examine(ctx, "INBOX"); err != nil {
			t.Fatal(err)
		}
		got, err := c.UIDsAfter(ctx, 0)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("UIDsAfter(0) = %v, %v, want %v", got, err, want)
		}
		got, err = c.UIDsAfter(ctx, want[0])
		if err != nil || !slices.Equal(got, want[1:]) {
			t.Fatalf("UIDsAfter(%d) = %v, %v, want %v", want[0], got, err, want[1:])
		}
		// RFC 3501 6.4.8: "last+1:*" matches the last message too.
		got, err = c.UIDsAfter(ctx, want[2])
		if err != nil || len(got) != 0 {
			t.Fatalf("UIDsAfter(last) = %v, %v, want none", got, err)
		}
	})

	t.Run("FetchManyMemory", func(t *testing.T) {
		// Bodies up to MemoryBodyMax come in memory, larger ones in a
		// file; both byte for byte what was delivered.
		u := d.user(t)
		msgs := [][]byte{testMessage("s1", 2000), testMessage("l1", MemoryBodyMax+5000), testMessage("s2", MemoryBodyMax)}
		for _, m := range msgs {
			d.Deliver(t, u, "INBOX", m)
		}
		uids := d.UIDs(t, u, "INBOX")
		c := d.dial(t, u)
		if _, err := c.Examine(ctx, "INBOX"); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		got := map[uint32]*Fetched{}
		missed, err := c.FetchMany(ctx, uids, dir, 10<<20, nil, func(f *Fetched) { got[f.UID] = f })
		if err != nil || len(missed.Gone)+len(missed.NoBody)+len(missed.Later) > 0 {
			t.Fatalf("FetchMany() = %+v, %v", missed, err)
		}
		for i, uid := range uids {
			f := got[uid]
			if f == nil {
				t.Fatalf("UID %d not handed over", uid)
			}
			body := f.Data
			if inMem := len(msgs[i]) <= MemoryBodyMax; inMem != (f.Data != nil) || inMem == (f.Path != "") {
				t.Errorf("message %d (%d bytes): in memory %v, file %q; want in memory %v", i, len(msgs[i]), f.Data != nil, f.Path, inMem)
			}
			if f.Path != "" {
				if body, err = os.ReadFile(f.Path); err != nil {
					t.Fatal(err)
				}
			}
			if virtual := d.field(t, u, "INBOX", uid, "size.virtual"); !bytes.Equal(body, msgs[i]) || strconv.Itoa(len(body)) != virtual || f.Size != int64(len(body)) {
				t.Errorf("message %d: %d bytes (Size %d), Dovecot's size.virtual %s; same as delivered: %v", i, len(body), f.Size, virtual, bytes.Equal(body, msgs[i]))
			}
		}
	})

	t.Run("FetchToFile", func(t *testing.T) {
		u := d.user(t)
		msg := testMessage("f1", 3000)
		d.Deliver(t, u, "INBOX", msg)
		uid := d.UIDs(t, u, "INBOX")[0]
		statusBefore := d.status(t, u, "INBOX", "messages unseen recent highestmodseq")
		flagsBefore := d.field(t, u, "INBOX", uid, "flags")
		received := d.field(t, u, "INBOX", uid, "date.received")
		virtual := d.field(t, u, "INBOX", uid, "size.virtual")

		c := d.dial(t, u)
		if _, err := c.Examine(ctx, "INBOX"); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		f, err := c.FetchToFile(ctx, uid, dir, 1<<20)
		if err != nil {
			t.Fatalf("FetchToFile() = %v", err)
		}
		got, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		// Delivered with CRLF; Dovecot's IMAP output is CRLF.
		if !bytes.Equal(got, msg) {
			t.Fatalf("fetched %d bytes, delivered %d: contents differ", len(got), len(msg))
		}
		if f.UID != uid || f.TooLarge || strconv.FormatInt(f.Size, 10) != virtual {
			t.Fatalf("FetchToFile() = %+v, want UID %d, Size %s (doveadm size.virtual)", f, uid, virtual)
		}
		if gotDate := f.InternalDate.Local().Format("2006-01-02 15:04:05"); gotDate != received {
			t.Errorf("InternalDate = %s, doveadm date.received = %s", gotDate, received)
		}
		st, err := os.Stat(f.Path)
		if err != nil || st.Mode().Perm() != 0o600 || filepath.Dir(f.Path) != dir {
			t.Fatalf("file %s: mode %v, %v; want 0600 in %s", f.Path, st.Mode(), err, dir)
		}
		if err := c.Noop(ctx, 0); err != nil {
			t.Fatal(err)
		}
		flagsAfter := d.field(t, u, "INBOX", uid, "flags")
		if strings.Contains(flagsAfter, `\Seen`) || flagsAfter != flagsBefore {
			t.Fatalf("flags after fetch = %q, before %q: want unchanged, no \\Seen", flagsAfter, flagsBefore)
		}
		if after := d.status(t, u, "INBOX", "messages unseen recent highestmodseq"); after != statusBefore {
			t.Fatalf("mailbox status after fetch = %s, before %s", after, statusBefore)
		}

		_, err = c.FetchToFile(ctx, uid+100, dir, 1<<20)
		if !errors.Is(err, ErrGone) {
			t.Fatalf("FetchToFile(missing uid) = %v, want ErrGone", err)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 1 {
			t.Fatalf("%d files in %s after a failed fetch, want only the first", len(ents), dir)
		}
	})

	t.Run("FetchLargeStreams", func(t *testing.T) {
		u := d.user(t)
		msg := testMessage("big", 2<<20)
		d.Deliver(t, u, "INBOX", msg)
		uid := d.UIDs(t, u, "INBOX")[0]
		c := d.dial(t, u)
		if _, err := c.Examine(ctx, "INBOX"); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		f, err := c.FetchToFile(ctx, uid, dir, 10<<20)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatalf("FetchToFile() = %v", err)
		}
		// Everything allocated during the fetch bounds the peak heap growth.
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("FetchToFile allocated %d bytes for a %d-byte message", alloc, len(msg))
		if alloc > uint64(len(msg))/4 {
			t.Errorf("FetchToFile allocated %d bytes for a %d-byte message: not streaming", alloc, len(msg))
		}
		got, err := os.ReadFile(f.Path)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("fetched %d bytes (%v), delivered %d: contents differ", len(got), err, len(msg))
		}
	})

	t.Run("FetchTooLarge", func(t *testing.T) {
		u := d.user(t)
		msg := testMessage("large", 50_000)
		d.Deliver(t, u, "INBOX", msg)
		uid := d.UIDs(t, u, "INBOX")[0]
		c := d.dial(t, u)
		if _, err := c.Examine(ctx, "INBOX"); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		f, err := c.FetchToFile(ctx, uid, dir, 10_000)
		if err != nil {
			t.Fatalf("FetchToFile() = %v", err)
		}
		virtual := d.field(t, u, "INBOX", uid, "size.virtual")
		if !f.TooLarge || f.Path != "" || strconv.FormatInt(f.Size, 10) != virtual {
			t.Fatalf("FetchToFile(maxSize 10000) = %+v, want TooLarge, no path, size %s", f, virtual)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Fatalf("%d files written for a too-large message", len(ents))
		}
	})

	t.Run("Idle", func(t *testing.T) {
		u := d.user(t)
		d.Deliver(t, u, "INBOX", testMessage("i0", 100))
		c := d.dial(t, u)
		if _, err := c.Examine(ctx, "INBOX"); err != nil {
			t.Fatal(err)
		}
		if uids, err := c.UIDsAfter(ctx, 0); err != nil || len(uids) != 1 {
			t.Fatalf("UIDsAfter(0) = %v, %v", uids, err)
		}

		// Nothing arrives: back after maxWait.
		start := time.Now()
		woke, err := c.Idle(ctx, 300*time.Millisecond)
		if err != nil || woke {
			t.Fatalf("Idle(300ms) = %v, %v, want false, nil", woke, err)
		}
		if el := time.Since(start); el < 300*time.Millisecond || el > 10*time.Second {
			t.Fatalf("Idle(300ms) took %v", el)
		}

		// A delivery from outside wakes it.
		type result struct {
			woke bool
			err  error
			at   time.Time
		}
		done := make(chan result, 1)
		go func() {
			woke, err := c.Idle(ctx, time.Minute)
			done <- result{woke, err, time.Now()}
		}()
		d.Deliver(t, u, "INBOX", testMessage("i1", 100))
		delivered := time.Now()
		r := <-done
		if r.err != nil || !r.woke {
			t.Fatalf("Idle() after a delivery = %v, %v, want true", r.woke, r.err)
		}
		if lag := r.at.Sub(delivered); lag > 2*time.Second {
			t.Fatalf("Idle() woke %v after the delivery, want within 2s", lag)
		}
		uids, err := c.UIDsAfter(ctx, 0)
		if want := d.UIDs(t, u, "INBOX"); err != nil || !slices.Equal(uids, want) {
			t.Fatalf("UIDsAfter(0) after IDLE = %v, %v, want %v", uids, err, want)
		}

		// A cancelled context ends it promptly, and the Conn goes on.
		cctx, cancel := context.WithCancel(ctx)
		go func() {
			time.Sleep(200 * time.Millisecond)
			cancel()
		}()
		start = time.Now()
		woke, err = c.Idle(cctx, time.Minute)
		if !errors.Is(err, context.Canceled) || woke {
			t.Fatalf("Idle(cancelled) = %v, %v, want context.Canceled", woke, err)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Fatalf("Idle(cancelled) took %v", el)
		}
		if err := c.Noop(ctx, 5*time.Second); err != nil {
			t.Fatalf("Noop() after IDLE = %v", err)
		}
	})

	t.Run("WrongPassword", func(t *testing.T) {
		u := d.user(t)
		for _, auth := range []string{"plain", "login"} {
			_, err := Dial(ctx, Config{Addr: d.Addr(), TLS: "none", Username: u, Password: "not-" + u, Auth: auth, Logger: testLogger(t)})
			if !errors.Is(err, ErrAuth) {
				t.Fatalf("Dial(wrong password, %s) = %v, want ErrAuth", auth, err)
			}
			if strings.Contains(err.Error(), "not-"+u) {
				t.Fatalf("error shows the password: %v", err)
			}
		}
		c, err := Dial(ctx, Config{Addr: d.Addr(), TLS: "none", Username: u, Password: "pw-" + u, Auth: "login"})
		if err != nil {
			t.Fatalf("Dial(auth login) = %v", err)
		}
		c.Close()
	})

	t.Run("AppendSearchHeader", func(t *testing.T) {
		u := d.user(t)
		msg := testMessage("a1", 500)
		path := filepath.Join(t.TempDir(), "msg.eml")
		if err := os.WriteFile(path, msg, 0o600); err != nil {
			t.Fatal(err)
		}
		date := time.Date(2024, 3, 4, 5, 6, 7, 0, time.FixedZone("", 3600))
		c := d.dial(t, u)
		uid, err := c.Append(ctx, "Archive", path, date)
		if err != nil {
			t.Fatalf("Append() = %v", err)
		}
		if want := d.UIDs(t, u, "Archive"); !slices.Equal(want, []uint32{uid}) {
			t.Fatalf("Append() = UID %d, doveadm search Archive = %v", uid, want)
		}
		if flags := d.field(t, u, "Archive", uid, "flags"); strings.Contains(flags, `\Seen`) {
			t.Fatalf("appended message flags = %q, want unread", flags)
		}
		// doveadm prints date.received in local time.
		if got, want := d.field(t, u, "Archive", uid, "date.received"), date.Local().Format("2006-01-02 15:04:05"); got != want {
			t.Fatalf("date.received = %s, want %s", got, want)
		}
		// A second append into the now existing folder.
		uid2, err := c.Append(ctx, "Archive", path, date)
		if err != nil || uid2 <= uid {
			t.Fatalf("second Append() = %d, %v", uid2, err)
		}

		got, err := c.SearchHeader(ctx, "Archive", "X-Smimed-Test", "a1")
		if err != nil || !slices.Equal(got, []uint32{uid, uid2}) {
			t.Fatalf("SearchHeader(a1) = %v, %v, want %v", got, err, []uint32{uid, uid2})
		}
		got, err = c.SearchHeader(ctx, "Archive", "X-Smimed-Test", "nothing-like-it")
		if err != nil || len(got) != 0 {
			t.Fatalf("SearchHeader(absent) = %v, %v, want none", got, err)
		}
	})

	t.Run("FindCopies", func(t *testing.T) {
		u := d.user(t)
		c := d.dial(t, u)
		// A folder that does not exist yet: created, nothing found.
		got, err := c.FindCopies(ctx, "Decrypted", map[string]string{"X-Smimed-Source": "ceo/INBOX/7/1"})
		if err != nil || len(got) != 0 {
			t.Fatalf("FindCopies in a new folder = %v, %v", got, err)
		}
		if !strings.Contains(d.Doveadm(t, "mailbox", "list", "-u", u), "Decrypted") {
			t.Fatal("FindCopies did not create the folder")
		}
		dir := t.TempDir()
		appendMsg := func(src, dec string) uint32 {
			p := filepath.Join(dir, "m.eml")
			msg := fmt.Sprintf("X-Smimed-Source: %s\r\nX-Smimed-Decryption: %s\r\nSubject: s\r\n\r\nbody\r\n", src, dec)
			os.WriteFile(p, []byte(msg), 0o600)
			uid, err := c.Append(ctx, "Decrypted", p, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			return uid
		}
		u1 := appendMsg("ceo/INBOX/7/1", "ok; cipher=aes-256-cbc")
		appendMsg("ceo/INBOX/7/12", "ok; cipher=aes-256-cbc") // substring of the same search
		appendMsg("ceo/INBOX/7/1", "failed; error=no key")    // same source, other version
		appendMsg("xceo/INBOX/7/1", "ok; cipher=aes-256-cbc") // another account
		want := map[string]string{"X-Smimed-Source": "ceo/INBOX/7/1", "X-Smimed-Decryption": "ok; cipher=aes-256-cbc"}
		got, err = c.FindCopies(ctx, "Decrypted", want)
		if err != nil || !slices.Equal(got, []uint32{u1}) {
			t.Fatalf("FindCopies = %v, %v; want [%d]", got, err, u1)
		}
		// What doveadm sees: four messages, all of them unread.
		if n := len(d.UIDs(t, u, "Decrypted")); n != 4 {
			t.Fatalf("doveadm sees %d messages, want 4", n)
		}
		// Remove leaves a UID alone whose fields differ (another message
		// than the one noted), and takes exactly that one away when they
		// match (Dovecot has UIDPLUS).
		if gone, err := c.Remove(ctx, "Decrypted", u1, map[string]string{"X-Smimed-Source": "ceo/INBOX/7/12"}); err != nil || gone {
			t.Fatalf("Remove(%d) of another message = %v, %v; want false, nil", u1, gone, err)
		}
		if gone, err := c.Remove(ctx, "Decrypted", u1, want); err != nil || !gone {
			t.Fatalf("Remove(%d) = %v, %v", u1, gone, err)
		}
		left := d.UIDs(t, u, "Decrypted")
		if len(left) != 3 || slices.Contains(left, u1) {
			t.Fatalf("after Remove(%d) doveadm sees %v", u1, left)
		}
		// HasUID tells a gone message from one that is there.
		if there, err := c.HasUID(ctx, u1); err != nil || there {
			t.Errorf("HasUID(removed %d) = %v, %v", u1, there, err)
		}
		if there, err := c.HasUID(ctx, left[0]); err != nil || !there {
			t.Errorf("HasUID(%d) = %v, %v; doveadm lists it", left[0], there, err)
		}
	})
}

// silentServer greets, accepts LOGIN and then never answers again: a
// half-open connection as go-imap alone would never notice it.
func silentServer(t *testing.T) string {
	return scriptedServer(t, func(conn net.Conn) {
		fmt.Fprintf(conn, "* OK [CAPABILITY IMAP4rev1 IDLE] silent\r\n")
		buf := make([]byte, 4096)
		n, err := conn.Read(buf)
		if err != nil {
			return
		}
		tag, _, _ := strings.Cut(string(buf[:n]), " ")
		fmt.Fprintf(conn, "%s OK [CAPABILITY IMAP4rev1 IDLE] logged in\r\n", tag)
		for {
			if _, err := conn.Read(buf); err != nil {
				return
			}
		}
	})
}

// scriptedServer listens on loopback and runs serve for each connection
// (which it closes afterwards) until the test ends; it returns the address.
func scriptedServer(t *testing.T, serve func(conn net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				serve(conn)
			}()
		}
	}()
	return ln.Addr().String()
}

func TestCommandTimeout(t *testing.T) {
	addr := silentServer(t)
	ctx := context.Background()
	cfg := Config{Addr: addr, TLS: "none", Username: "u", Password: "p", Auth: "login", Logger: testLogger(t), CommandTimeout: 300 * time.Millisecond}

	c, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial() = %v", err)
	}
	start := time.Now()
	err = c.Noop(ctx, 200*time.Millisecond)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Noop() to a silent server = %v, want ErrTimeout", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("Noop(200ms) took %v", el)
	}
	if _, err := c.Examine(ctx, "INBOX"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Examine() after a timeout = %v, want ErrClosed", err)
	}
	c.Close()

	// The default command timeout bounds every command.
	c, err = Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial() = %v", err)
	}
	if _, err := c.Examine(ctx, "INBOX"); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Examine() to a silent server = %v, want ErrTimeout", err)
	}
	c.Close()

	// So does the caller's context.
	c, err = Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial() = %v", err)
	}
	c.cfg.CommandTimeout = time.Minute
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := c.UIDsAfter(cctx, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("UIDsAfter(ctx with deadline) = %v, want context.DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("UIDsAfter took %v after its context ended", el)
	}
	c.Close()
}

// dripServer serves one message whose body literal arrives in chunks of
// 100 bytes every pause; after stallAfter bytes (when > 0) it goes silent.
func dripServer(t *testing.T, size, stallAfter int, pause time.Duration) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		fmt.Fprintf(conn, "* OK [CAPABILITY IMAP4rev1] drip\r\n")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			tag, rest, _ := strings.Cut(line, " ")
			switch {
			case strings.HasPrefix(rest, "LOGIN"):
				fmt.Fprintf(conn, "%s OK [CAPABILITY IMAP4rev1] in\r\n", tag)
			case strings.Contains(rest, "BODY.PEEK[]"):
				fmt.Fprintf(conn, "* 1 FETCH (UID 1 BODY[] {%d}\r\n", size)
				chunk := bytes.Repeat([]byte("x"), 100)
				for sent := 0; sent < size; sent += 100 {
					if stallAfter > 0 && sent >= stallAfter {
						time.Sleep(time.Hour)
						return
					}
					conn.Write(chunk[:min(100, size-sent)])
					time.Sleep(pause)
				}
				fmt.Fprintf(conn, ")\r\n%s OK done\r\n", tag)
			case strings.Contains(rest, "FETCH"):
				fmt.Fprintf(conn, "* 1 FETCH (UID 1 RFC822.SIZE %d INTERNALDATE \"01-Jan-2026 00:00:00 +0000\")\r\n%s OK done\r\n", size, tag)
			case strings.HasPrefix(rest, "LOGOUT"):
				fmt.Fprintf(conn, "* BYE\r\n%s OK bye\r\n", tag)
				return
			default:
				fmt.Fprintf(conn, "%s BAD unexpected\r\n", tag)
			}
		}
	}()
	return ln.Addr().String()
}

// TestFetchTimeoutCountsFromProgress: a body that keeps flowing may take
// longer than the command timeout; one that stops is cut off.
func TestFetchTimeoutCountsFromProgress(t *testing.T) {
	ctx := context.Background()
	// The timeout is long enough that a loaded machine's pauses do not
	// reach it, the body's transfer twice as long.
	cfg := Config{TLS: "none", Username: "u", Password: "p", Auth: "login", Logger: testLogger(t), CommandTimeout: time.Second}

	cfg.Addr = dripServer(t, 5000, 0, 40*time.Millisecond) // 50 chunks, ~2 s in all
	c, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	f, err := c.FetchToFile(ctx, 1, t.TempDir(), 0)
	if err != nil {
		t.Fatalf("FetchToFile of a slow but moving body = %v", err)
	}
	if f.Size != 5000 || time.Since(start) < cfg.CommandTimeout {
		t.Errorf("fetched %d bytes in %s; want 5000 bytes taking longer than the %s timeout", f.Size, time.Since(start), cfg.CommandTimeout)
	}
	c.Close()

	cfg.Addr = dripServer(t, 2000, 500, 10*time.Millisecond)
	if c, err = Dial(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if _, err := c.FetchToFile(ctx, 1, t.TempDir(), 0); !errors.Is(err, ErrTimeout) {
		t.Errorf("FetchToFile of a stalled body = %v, want ErrTimeout", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("stalled fetch took %s to give up", el)
	}
	c.Close()
}

// TestLoginRefusalKinds: only a real refusal is ErrAuth (retried slowly);
// NO [UNAVAILABLE] means the server cannot check now (RFC 5530).
func TestLoginRefusalKinds(t *testing.T) {
	serve := func(answer string) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
			fmt.Fprintf(conn, "* OK [CAPABILITY IMAP4rev1] hi\r\n")
			line, _ := bufio.NewReader(conn).ReadString('\n')
			tag, _, _ := strings.Cut(line, " ")
			fmt.Fprintf(conn, "%s %s\r\n", tag, answer)
		}()
		return ln.Addr().String()
	}
	ctx := context.Background()
	for answer, wantAuth := range map[string]bool{
		"NO [AUTHENTICATIONFAILED] invalid credentials": true,
		"NO no such user":                     true,
		"NO [UNAVAILABLE] user database down": false,
	} {
		_, err := Dial(ctx, Config{Addr: serve(answer), TLS: "none", Username: "u", Password: "p", Auth: "login"})
		if err == nil || errors.Is(err, ErrAuth) != wantAuth {
			t.Errorf("login answered %q: Dial = %v, ErrAuth %v, want %v", answer, err, errors.Is(err, ErrAuth), wantAuth)
		}
	}
}
