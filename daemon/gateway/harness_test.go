package gateway

// Test support: a go-smtp relay that records what it is handed, a
// Composer built on the openssl command (an implementation of its own,
// so that the SMTP side is tested apart from harvest/compose), a lookup,
// an archive and a monitor of the test's own.

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/daemon/testenv"
)

// relayed is one message the test relay took.
type relayed struct {
	From  string
	To    []string
	Data  []byte
	Login string
	UTF8  bool
}

// testRelay is the next hop: a go-smtp server recording every message.
type testRelay struct {
	mu   sync.Mutex
	msgs []relayed
	addr string
	srv  *smtp.Server
	// Behaviour, set before use.
	refuseRcpt   func(to string) error // nil: every recipient taken
	dataErr      error                 // answered at the end of DATA
	users        map[string]string     // AUTH PLAIN users and passwords (nil: no AUTH)
	mailAllowed  func(login, from string) bool
	rcptAllowed  func(login, from string) bool // the sender checked at RCPT, as Postfix does
	sessions     int
	maxMessageSz int64
	discard      bool          // count the messages, keep no data (benchmarks)
	idleTimeout  time.Duration // ends a session idle this long, with a 421 (0: none)
}

func startRelay(t testing.TB, configure func(r *testRelay)) *testRelay {
	t.Helper()
	r := &testRelay{}
	if configure != nil {
		configure(r)
	}
	r.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		r.mu.Lock()
		r.sessions++
		r.mu.Unlock()
		return &relaySession{r: r}, nil
	}))
	r.srv.Domain = "relay.test"
	r.srv.AllowInsecureAuth = true
	r.srv.EnableSMTPUTF8 = true
	r.srv.MaxMessageBytes = r.maxMessageSz
	r.srv.MaxLineLength = 1 << 16
	r.srv.ReadTimeout = r.idleTimeout
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	go r.srv.Serve(ln)
	t.Cleanup(func() { r.srv.Close() })
	return r
}

func (r *testRelay) messages() []relayed {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]relayed(nil), r.msgs...)
}

type relaySession struct {
	r     *testRelay
	login string
	cur   relayed
}

func (s *relaySession) AuthMechanisms() []string {
	if s.r.users == nil {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *relaySession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if pw, ok := s.r.users[user]; !ok || pw != pass {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "upstream says: bad credentials"}
		}
		s.login = user
		return nil
	}), nil
}

func (s *relaySession) Mail(from string, opts *smtp.MailOptions) error {
	if s.r.users != nil && s.login == "" {
		return smtp.ErrAuthRequired
	}
	if s.r.mailAllowed != nil && !s.r.mailAllowed(s.login, from) {
		return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "upstream says: not your address"}
	}
	s.cur = relayed{From: from, Login: s.login, UTF8: opts != nil && opts.UTF8}
	return nil
}

func (s *relaySession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.r.rcptAllowed != nil && !s.r.rcptAllowed(s.login, s.cur.From) {
		return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "upstream says: sender address rejected: not owned by user"}
	}
	if s.r.refuseRcpt != nil {
		if err := s.r.refuseRcpt(to); err != nil {
			return err
		}
	}
	s.cur.To = append(s.cur.To, to)
	return nil
}

func (s *relaySession) Data(rd io.Reader) error {
	if s.r.discard {
		if _, err := io.Copy(io.Discard, rd); err != nil {
			return err
		}
		s.r.mu.Lock()
		s.r.msgs = append(s.r.msgs, relayed{From: s.cur.From})
		s.r.mu.Unlock()
		return nil
	}
	b, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	if s.r.dataErr != nil {
		return s.r.dataErr
	}
	s.cur.Data = b
	s.r.mu.Lock()
	s.r.msgs = append(s.r.msgs, s.cur)
	s.r.mu.Unlock()
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "queued as TEST123"}
}

func (s *relaySession) Reset()        { s.cur = relayed{} }
func (s *relaySession) Logout() error { return nil }

// pki is the test's CA with the identities and partners the tests use.
type pki struct {
	ca       *testenv.CA
	certs    map[string]string // name → certificate file
	keys     map[string]string // name → key file
	keyOf    map[*x509.Certificate]string
	certFile map[*x509.Certificate]string
}

var (
	pkiOnce sync.Once
	shared  *pki
)

// testPKI issues, once per test binary, certificates for the
// organisation's signer (ceo@org.example), the escrow key and partners.
func testPKI(t testing.TB) *pki {
	t.Helper()
	testenv.NeedOpenSSL(t)
	pkiOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gateway-pki-")
		if err != nil {
			t.Fatal(err)
		}
		p := &pki{certs: map[string]string{}, keys: map[string]string{}, keyOf: map[*x509.Certificate]string{}, certFile: map[*x509.Certificate]string{}}
		p.ca = testenv.NewCA(&onceTB{TB: t, dir: dir}, "Gateway Test CA", "")
		for name, email := range map[string]string{"ceo": "ceo@org.example", "escrow": "escrow@org.example", "alice": "alice@partner.example", "bob": "bob@partner.example"} {
			c, k := p.ca.Issue(t, name, email, time.Now().Add(-time.Hour))
			p.certs[name], p.keys[name] = c, k
		}
		shared = p
	})
	if shared == nil {
		t.Fatal("test PKI not made")
	}
	return shared
}

// onceTB keeps the CA directory past the first test.
type onceTB struct {
	testing.TB
	dir string
}

func (o *onceTB) TempDir() string { return o.dir }

func (p *pki) cert(t testing.TB, name string) *x509.Certificate {
	c := testenv.ReadCert(t, p.certs[name])
	p.keyOf[c] = p.keys[name]
	p.certFile[c] = p.certs[name]
	return c
}

// lookup is the test's certificate store and identities.
type lookup struct {
	certs   map[string]*Recipient
	signers map[string]*Signer
	err     error
}

func (l *lookup) RecipientCert(addr string) (*Recipient, error) {
	if l.err != nil {
		return nil, l.err
	}
	r := l.certs[strings.ToLower(addr)]
	if r == nil {
		return nil, nil
	}
	c := *r
	return &c, nil
}

func (l *lookup) Signer(addr string) *Signer { return l.signers[strings.ToLower(addr)] }

// opensslComposer signs and encrypts with the openssl command: the
// content fields (Content-*, MIME-Version) and body are the protected
// entity, the other fields stay outside.
type opensslComposer struct {
	t   testing.TB
	p   *pki
	dir string
}

func splitEntity(msg []byte) (outer, entity []byte) {
	br := newTestReader(msg)
	h, err := readHeader(br)
	if err != nil {
		return nil, msg
	}
	body := msg[len(h.raw):]
	for _, f := range h.fields {
		n := strings.ToLower(f.name)
		if strings.HasPrefix(n, "content-") {
			entity = append(entity, f.raw...)
		} else if n != "mime-version" {
			outer = append(outer, f.raw...)
		}
	}
	if len(entity) == 0 {
		entity = []byte("Content-Type: text/plain\r\n")
	}
	entity = append(append(entity, "\r\n"...), body...)
	return outer, entity
}

func (c *opensslComposer) run(stdin []byte, args ...string) ([]byte, error) {
	out, err := testenv.OpenSSLTry(c.t, c.dir, stdin, args...)
	if err != nil {
		return nil, fmt.Errorf("openssl %s: %v: %s", args[1], err, out)
	}
	return out, nil
}

func (c *opensslComposer) sign(entity []byte, s *Signer) ([]byte, error) {
	return c.run(entity, "cms", "-sign", "-signer", c.p.certFile[s.Cert], "-inkey", c.p.keyOf[s.Cert], "-md", "sha256", "-crlfeol")
}

func (c *opensslComposer) encrypt(entity []byte, recips []Recipient) ([]byte, error) {
	args := []string{"cms", "-encrypt", "-aes256"}
	for _, r := range recips {
		f := c.p.certFile[r.Cert]
		if f == "" {
			f = filepath.Join(c.dir, fmt.Sprintf("r%d.pem", len(args)))
			os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.Cert.Raw}), 0o600)
		}
		args = append(args, f)
	}
	return c.run(entity, args...)
}

// withOuter puts the outer fields above openssl's output (its own
// MIME-Version and Content-* fields).
func withOuter(outer, out []byte) []byte { return append(append([]byte(nil), outer...), out...) }

func (c *opensslComposer) Sign(dst io.Writer, src io.Reader, s *Signer, o ComposeOptions) error {
	msg, err := io.ReadAll(src)
	if err != nil {
		return err
	}
	outer, entity := splitEntity(msg)
	out, err := c.sign(entity, s)
	if err != nil {
		return err
	}
	_, err = dst.Write(withOuter(outer, out))
	return err
}

var opensslAlgs = Algorithms{Cipher: "aes-256-cbc"}

func (c *opensslComposer) Encrypt(dst io.Writer, src io.Reader, recips []Recipient, o ComposeOptions) (Algorithms, error) {
	msg, err := io.ReadAll(src)
	if err != nil {
		return Algorithms{}, err
	}
	outer, entity := splitEntity(msg)
	out, err := c.encrypt(entity, recips)
	if err != nil {
		return Algorithms{}, err
	}
	_, err = dst.Write(withOuter(outer, out))
	return opensslAlgs, err
}

func (c *opensslComposer) SignEncrypt(dst io.Writer, src io.Reader, s *Signer, recips []Recipient, o ComposeOptions) (Algorithms, error) {
	msg, err := io.ReadAll(src)
	if err != nil {
		return Algorithms{}, err
	}
	outer, entity := splitEntity(msg)
	signed, err := c.sign(entity, s)
	if err != nil {
		return Algorithms{}, err
	}
	out, err := c.encrypt(signed, recips)
	if err != nil {
		return Algorithms{}, err
	}
	_, err = dst.Write(withOuter(outer, out))
	return opensslAlgs, err
}

// failingComposer fails every build.
type failingComposer struct{}

func (failingComposer) Sign(io.Writer, io.Reader, *Signer, ComposeOptions) error {
	return errors.New("no")
}
func (failingComposer) Encrypt(dst io.Writer, _ io.Reader, _ []Recipient, _ ComposeOptions) (Algorithms, error) {
	dst.Write([]byte("half a message that must never leave"))
	return Algorithms{}, errors.New("no")
}
func (failingComposer) SignEncrypt(dst io.Writer, _ io.Reader, _ *Signer, _ []Recipient, _ ComposeOptions) (Algorithms, error) {
	dst.Write([]byte("half a message that must never leave"))
	return Algorithms{}, errors.New("no")
}

// archiveRec is one PutOutgoing call.
type archiveRec struct {
	O         archive.Outgoing
	Plaintext []byte
	Sent      []byte
}

type testArchive struct {
	mu     sync.Mutex
	recs   []archiveRec
	err    error
	noRead bool // keep the record only, not the files (benchmarks)
}

func (a *testArchive) PutOutgoing(o archive.Outgoing, plaintextPath, sentPath string) (*archive.Record, error) {
	if a.err != nil {
		return nil, a.err
	}
	if a.noRead {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.recs = append(a.recs, archiveRec{O: o})
		return &archive.Record{ID: uint64(len(a.recs))}, nil
	}
	p, err := os.ReadFile(plaintextPath)
	if err != nil {
		return nil, err
	}
	s, err := os.ReadFile(sentPath)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recs = append(a.recs, archiveRec{O: o, Plaintext: p, Sent: s})
	return &archive.Record{ID: uint64(len(a.recs))}, nil
}

func (a *testArchive) records() []archiveRec {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]archiveRec(nil), a.recs...)
}

type testMonitor struct {
	mu       sync.Mutex
	outcomes map[string]int
	relayErr int
	sessions int
}

func (m *testMonitor) SessionStarted() { m.mu.Lock(); m.sessions++; m.mu.Unlock() }
func (m *testMonitor) SessionEnded()   { m.mu.Lock(); m.sessions--; m.mu.Unlock() }
func (m *testMonitor) Message(o string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.outcomes == nil {
		m.outcomes = map[string]int{}
	}
	m.outcomes[o]++
}
func (m *testMonitor) RelayError() { m.mu.Lock(); m.relayErr++; m.mu.Unlock() }
func (m *testMonitor) count(o string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.outcomes[o]
}

// env is one gateway under test with its relay.
type env struct {
	t       testing.TB
	p       *pki
	relay   *testRelay
	gw      *Gateway
	addr    string
	tlsAddr string
	arch    *testArchive
	mon     *testMonitor
	look    *lookup
	logs    *testenv.LockedBuffer
}

// envOptions adjust an env before it starts.
type envOptions struct {
	mode     string
	policy   func(p *Policy)
	cfg      func(c *Config)
	relay    func(r *testRelay)
	noRelay  bool // the relay address has nobody listening
	composer Composer
}

func startEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	p := testPKI(t)
	e := &env{t: t, p: p, arch: &testArchive{}, mon: &testMonitor{}, logs: &testenv.LockedBuffer{}}
	relayAddr := testenv.FreeAddr(t)
	if !o.noRelay {
		e.relay = startRelay(t, o.relay)
		relayAddr = e.relay.addr
	}
	ceo := p.cert(t, "ceo")
	e.look = &lookup{
		certs: map[string]*Recipient{
			"alice@partner.example": {Cert: p.cert(t, "alice")},
			"bob@partner.example":   {Cert: p.cert(t, "bob")},
		},
		signers: map[string]*Signer{"ceo@org.example": {Cert: ceo, Key: nil}},
	}
	pol := &Policy{Internal: []string{"org.example"}, Sign: config.SignAlways, Encrypt: config.EncryptIfPossible, EncryptTrigger: "[secure]"}
	if o.policy != nil {
		o.policy(pol)
	}
	mode := o.mode
	if mode == "" {
		mode = config.ModeFilter
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	comp := o.composer
	if comp == nil {
		comp = &opensslComposer{t: t, p: p, dir: t.TempDir()}
	}
	cfg := Config{
		Mode: mode, Listen: ln,
		Relay:          RelayConfig{Addr: relayAddr, TLS: config.RelayTLSNone, CommandTimeout: 10 * time.Second, DataTimeout: 30 * time.Second},
		Domain:         "gateway.test",
		MaxMessageSize: 1 << 20, MaxRecipients: 1000, MaxSessions: 20,
		CommandTimeout: 10 * time.Second, DataTimeout: 10 * time.Second,
		TempDir:           t.TempDir(),
		AllowInsecureAuth: true,
		Composer:          comp, Archiver: e.arch, Monitor: e.mon,
		Log: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	if cfg.ListenTLS != nil {
		e.tlsAddr = cfg.ListenTLS.Addr().String()
	}
	gw, err := New(cfg, &Runtime{Policy: pol, Lookup: e.look, Escrow: []Recipient{{Cert: p.cert(t, "escrow"), Escrow: true}}})
	if err != nil {
		t.Fatal(err)
	}
	e.gw = gw
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve() = %v", err)
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", e.logs.String())
		}
	})
	return e
}

func (e *env) log() string { return e.logs.String() }

// dial is a client session with the gateway.
func (e *env) dial() *smtp.Client {
	e.t.Helper()
	c, err := smtp.Dial(e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// send submits msg from → to and returns the gateway's answer to the
// transaction (nil: 250).
func (e *env) send(from string, to []string, msg string) error {
	e.t.Helper()
	c := e.dial()
	defer c.Quit()
	return testenv.SendSMTP(c, from, to, msg)
}

// message is a small plain message.
func message(from, to, subject, body string) string {
	return "From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject + "\r\nMessage-ID: <m1@org.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body + "\r\n"
}

// smtpCode is the reply code of err, 0 when it is not an SMTP answer.
func smtpCode(err error) (int, smtp.EnhancedCode, string) {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code, se.EnhancedCode, se.Message
	}
	return 0, smtp.EnhancedCode{}, ""
}
