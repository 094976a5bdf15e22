// Package imapconn is the one place in smimed that speaks IMAP (RFC 3501,
// RFC 9051). It wraps the beta API of github.com/emersion/go-imap/v2 behind a
// small adapter, so an upgrade of that library touches only this package.
//
// The watched folder is only ever opened read-only (EXAMINE, RFC 3501 6.3.2)
// and messages are fetched with BODY.PEEK[] (6.4.5), so watching never changes
// a flag. New messages are found by UID (UID SEARCH UID n:*), checked against
// UIDVALIDITY by the caller, and announced by IDLE (RFC 2177).
//
// go-imap has no read deadline between responses: every command here runs
// under a timer (Config.CommandTimeout or the caller's context, whichever
// ends first) and the connection is closed when it fires. A Conn is then
// unusable; callers reconnect and resync from their checkpoint. A Conn is not
// safe for concurrent use.
package imapconn

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/smimed/smimed/daemon/oauth"
	"github.com/smimed/smimed/harvest"
)

// DefaultCommandTimeout bounds every command when Config.CommandTimeout is 0.
const DefaultCommandTimeout = 60 * time.Second

var (
	// ErrAuth means the server answered NO to LOGIN or AUTHENTICATE: a
	// permanent failure for that account. Every other error is temporary.
	ErrAuth = errors.New("imapconn: authentication failed")
	// ErrGone means the server returned nothing for a UID (e.g. expunged).
	ErrGone = errors.New("imapconn: message not returned by the server")
	// ErrNoBody means the message exists but its body was not received;
	// it is a temporary failure, never a reason to skip the message.
	ErrNoBody = errors.New("imapconn: message body not received")
	// ErrNoIdle means the server lacks IDLE: callers poll instead.
	ErrNoIdle = errors.New("imapconn: server does not support IDLE")
	// ErrTimeout means a command got no answer in time; the connection has
	// been closed.
	ErrTimeout = errors.New("imapconn: command timed out")
	// ErrClosed means the connection was closed earlier (by Close, a
	// timeout or a cancelled context).
	ErrClosed = errors.New("imapconn: connection closed")
	// ErrConfig is wrapped by every configuration error Dial returns.
	ErrConfig = errors.New("imapconn: invalid configuration")
)

// Config says where and how to log in.
type Config struct {
	Addr          string // host:port
	TLS           string // "implicit", "starttls" or "none" (loopback addresses only)
	TLSCAFile     string // PEM roots instead of the system's
	TLSServerName string // defaults to the host of Addr
	Username      string
	Password      string
	// Authzid is the authorization identity of AUTHENTICATE PLAIN (RFC
	// 4616): the mailbox Username (a master or admin user) logs in for.
	Authzid string
	// Auth is "plain" (AUTHENTICATE PLAIN, the default), "login" (the
	// LOGIN command), or "xoauth2" / "oauthbearer" (RFC 7628) with an
	// access token from Token.
	Auth string
	// Token returns an OAuth2 access token for Username; fresh asks for
	// a new one (the server refused the last). A refused grant
	// (oauth.ErrGrant) is a refused login (ErrAuth).
	Token  func(ctx context.Context, fresh bool) (string, error)
	Logger *slog.Logger
	// CommandTimeout bounds every command (default DefaultCommandTimeout).
	CommandTimeout time.Duration
}

// Conn is one logged-in IMAP connection.
type Conn struct {
	client *imapclient.Client
	cfg    Config
	log    *slog.Logger
	caps   imap.CapSet
	exists chan struct{} // 1 slot: an EXISTS arrived since the last UIDsAfter
	broken error         // set once the connection was closed under us

	ns         namespace       // the personal namespace, read at Dial
	known      map[string]bool // folders found by LIST on this connection
	selected   string          // the folder selected now, "" when none
	selectedRW bool            // selected with SELECT, not EXAMINE
	byes       *byeConn        // the socket (above TLS) as go-imap reads it
	byeLogged  bool
	multiSeq   uint64 // the last MULTIAPPEND's tag number
}

// Mailbox is what EXAMINE reported.
type Mailbox struct {
	UIDValidity, UIDNext, Exists uint32
}

func (cfg *Config) check() (host string, err error) {
	host, _, err = net.SplitHostPort(cfg.Addr)
	if err != nil {
		return "", fmt.Errorf("%w: addr %q: %v", ErrConfig, cfg.Addr, err)
	}
	switch cfg.TLS {
	case "implicit", "starttls":
	case "none":
		if !isLoopback(host) {
			return "", fmt.Errorf("%w: tls = none is allowed only to a loopback address, not %q: the password would cross the network in clear text", ErrConfig, host)
		}
	default:
		return "", fmt.Errorf("%w: tls %q: want implicit, starttls or none", ErrConfig, cfg.TLS)
	}
	switch cfg.Auth {
	case "", "plain", "login":
	case "xoauth2", "oauthbearer":
		if cfg.Token == nil {
			return "", fmt.Errorf("%w: auth %q without a token source", ErrConfig, cfg.Auth)
		}
	default:
		return "", fmt.Errorf("%w: auth %q: want plain, login, xoauth2 or oauthbearer", ErrConfig, cfg.Auth)
	}
	if cfg.CommandTimeout < 0 {
		return "", fmt.Errorf("%w: negative command timeout", ErrConfig)
	}
	return host, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (cfg *Config) tlsConfig(host string) (*tls.Config, error) {
	tc := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if cfg.TLSServerName != "" {
		tc.ServerName = cfg.TLSServerName
	}
	if cfg.TLSCAFile != "" {
		// Read at every connect, so a renewed CA is picked up. A file
		// that is missing or broken now (being replaced, say) is a
		// temporary failure, retried with backoff: the configuration
		// check at startup already found it good once.
		pool, err := harvest.ReadCAPool(cfg.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("imapconn: tls_ca_file: %w", err)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// Dial connects, negotiates TLS and logs in. A NO to the login is ErrAuth;
// configuration errors wrap ErrConfig and are found before any dialing.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	host, err := cfg.check()
	if err != nil {
		return nil, err
	}
	var tc *tls.Config
	if cfg.TLS != "none" {
		if tc, err = cfg.tlsConfig(host); err != nil {
			return nil, err
		}
	}
	if cfg.CommandTimeout == 0 {
		cfg.CommandTimeout = DefaultCommandTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("pkg", "imapconn", "addr", cfg.Addr, "user", cfg.Username)

	ctx, cancel := context.WithTimeout(ctx, cfg.CommandTimeout)
	defer cancel()
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("imapconn: dial %s: %w", cfg.Addr, err)
	}
	// Until Dial returns, a timeout or cancellation closes the socket, which
	// unblocks whatever is waiting on it.
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	fail := func(err error) (*Conn, error) {
		raw.Close()
		if !stop() {
			return nil, fmt.Errorf("imapconn: connect to %s: %w (%v)", cfg.Addr, ctxErr(ctx), err)
		}
		return nil, err
	}

	c := &Conn{cfg: cfg, log: log, exists: make(chan struct{}, 1)}
	opts := &imapclient.Options{
		TLSConfig: tc,
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			// Runs in go-imap's reader goroutine: must never block.
			Mailbox: func(data *imapclient.UnilateralDataMailbox) {
				if data.NumMessages != nil {
					select {
					case c.exists <- struct{}{}:
					default:
					}
				}
			},
		},
	}
	switch cfg.TLS {
	case "implicit":
		tconn := tls.Client(raw, tc)
		if err := tconn.HandshakeContext(ctx); err != nil {
			return fail(fmt.Errorf("imapconn: TLS handshake with %s: %w", cfg.Addr, err))
		}
		c.byes = &byeConn{Conn: tconn}
		c.client = imapclient.New(c.byes, opts)
	case "starttls":
		tconn, err := startTLS(ctx, raw, tc)
		if err != nil {
			return fail(fmt.Errorf("imapconn: STARTTLS with %s: %w", cfg.Addr, err))
		}
		// go-imap reads a greeting first; the server's was read before
		// TLS, and its capabilities are asked for again over TLS.
		c.byes = &byeConn{Conn: tconn, pend: []byte("* OK TLS started\r\n")}
		c.client = imapclient.New(c.byes, opts)
	default:
		c.byes = &byeConn{Conn: raw}
		c.client = imapclient.New(c.byes, opts)
	}
	if err := c.client.WaitGreeting(); err != nil {
		return fail(fmt.Errorf("imapconn: greeting from %s: %w", cfg.Addr, err))
	}
	if err := c.login(ctx); err != nil {
		c.client.Close()
		return fail(err)
	}
	c.caps = c.client.Caps()
	if c.caps == nil {
		return fail(fmt.Errorf("imapconn: no CAPABILITY from %s", cfg.Addr))
	}
	if err := c.readNamespace(ctx); err != nil {
		c.client.Close()
		return fail(err)
	}
	if !stop() {
		c.client.Close()
		return nil, fmt.Errorf("imapconn: connect to %s: %w", cfg.Addr, ctxErr(ctx))
	}
	log.Info("imap connected", "tls", cfg.TLS)
	return c, nil
}

func (c *Conn) login(ctx context.Context) error {
	var err error
	switch c.cfg.Auth {
	case "login":
		err = c.client.Login(c.cfg.Username, c.cfg.Password).Wait()
	case "xoauth2", "oauthbearer":
		return c.loginBearer(ctx)
	default:
		err = c.client.Authenticate(sasl.NewPlainClient(c.cfg.Authzid, c.cfg.Username, c.cfg.Password))
	}
	return c.loginError(err)
}

// loginBearer logs in with an OAuth2 access token; when the server
// refuses it, once more with a fresh one (it may have expired or been
// revoked since it was fetched).
func (c *Conn) loginBearer(ctx context.Context) error {
	if c.cfg.Token == nil {
		return fmt.Errorf("imapconn: %s login without a token source", c.cfg.Auth)
	}
	var err error
	for attempt := range 2 {
		var tok string
		if tok, err = c.cfg.Token(ctx, attempt > 0); err != nil {
			// A refused grant is a refused login (an administrator must
			// act); else a passing failure (the endpoint is down).
			if errors.Is(err, oauth.ErrGrant) {
				return fmt.Errorf("%w: %s as %s: no OAuth2 token: %w", ErrAuth, c.cfg.Addr, c.cfg.Username, err)
			}
			return fmt.Errorf("imapconn: %s as %s: no OAuth2 token: %w", c.cfg.Addr, c.cfg.Username, err)
		}
		bc := &bearerClient{mech: strings.ToUpper(c.cfg.Auth), user: c.cfg.Username, token: tok}
		err = c.client.Authenticate(bc)
		if err == nil {
			return nil
		}
		var ie *imap.Error
		if !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo || ie.Code == imap.ResponseCodeUnavailable {
			break
		}
		if bc.status != "" {
			err = fmt.Errorf("%w (token status %s)", err, bc.status)
		}
		if attempt == 0 {
			c.log.Info("the server refused the OAuth2 token; trying a fresh one")
		}
	}
	return c.loginError(err)
}

// loginError describes a failed login.
func (c *Conn) loginError(err error) error {
	if err == nil {
		return nil
	}
	var ie *imap.Error
	if errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeNo && ie.Code == imap.ResponseCodeUnavailable {
		// RFC 5530: the server cannot check credentials right now (its
		// user database is down): an ordinary retry, not a refusal.
		return fmt.Errorf("imapconn: login to %s: server unavailable: %s", c.cfg.Addr, ie.Text)
	}
	if errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeNo {
		// The server's text may be shown; it never contains our password.
		return fmt.Errorf("%w: %s as %s: %s", ErrAuth, c.cfg.Addr, c.who(), ie.Text)
	}
	return fmt.Errorf("imapconn: login to %s: %w", c.cfg.Addr, err)
}

// who names the login: "admin for alice" with an authorization identity.
func (c *Conn) who() string {
	if c.cfg.Authzid != "" {
		return c.cfg.Username + " for " + c.cfg.Authzid
	}
	return c.cfg.Username
}

func ctxErr(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return ErrTimeout
	}
	return ctx.Err()
}

// run runs fn, one command exchange, under timeout (CommandTimeout when 0)
// and ctx. When either ends first the connection is closed, which makes fn
// return, and the Conn is marked broken.
func (c *Conn) run(ctx context.Context, timeout time.Duration, op string, fn func() error) error {
	if c.broken != nil {
		return c.broken
	}
	if timeout <= 0 {
		timeout = c.cfg.CommandTimeout
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stop := context.AfterFunc(tctx, func() { c.client.Close() })
	err := fn()
	return c.finish(ctx, op, timeout, !stop(), err)
}

// runMoving is run for a transfer of unknown length (a message body): the
// timeout counts from the last progress, not from the start, so a large
// message on a slow link may take as long as it needs while a stalled one
// is still cut off after CommandTimeout. fn calls moved whenever bytes
// flow.
func (c *Conn) runMoving(ctx context.Context, op string, fn func(moved func()) error) error {
	if c.broken != nil {
		return c.broken
	}
	timeout := c.cfg.CommandTimeout
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	moved := func() { last.Store(time.Now().UnixNano()) }
	done := make(chan struct{})
	var wg sync.WaitGroup
	var fired bool
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(max(timeout/8, 10*time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
			case <-tick.C:
				if time.Since(time.Unix(0, last.Load())) < timeout {
					continue
				}
			}
			fired = true
			c.client.Close()
			return
		}
	}()
	err := fn(moved)
	close(done)
	wg.Wait()
	return c.finish(ctx, op, timeout, fired, err)
}

// finish turns the outcome of a command into its error; interrupted says
// that ctx or the timeout closed the connection.
func (c *Conn) finish(ctx context.Context, op string, timeout time.Duration, interrupted bool, err error) error {
	if interrupted {
		c.broken = fmt.Errorf("%w: %s was interrupted", ErrClosed, op)
		cause := ctx.Err()
		if cause == nil {
			cause = ErrTimeout
		}
		c.log.Warn("imap command interrupted, connection closed", "op", op, "timeout", timeout, "err", cause)
		return fmt.Errorf("imapconn: %s: %w", op, cause)
	}
	if err != nil {
		return c.withBye(fmt.Errorf("imapconn: %s: %w", op, err))
	}
	return nil
}

// withBye adds the server's BYE text to err when the server sent one,
// and logs it the first time: why the server ended the connection.
func (c *Conn) withBye(err error) error {
	if c.byes == nil {
		return err
	}
	bye := c.byes.bye()
	if bye == "" {
		return err
	}
	if !c.byeLogged {
		c.byeLogged = true
		c.log.Warn("the server ended the connection", "bye", bye)
	}
	return fmt.Errorf("%w (the server said BYE: %s)", err, bye)
}

// movingReader calls moved after every read that returned bytes, and
// keeps the first error of the underlying reader.
type movingReader struct {
	r     io.Reader
	moved func()
	err   error
}

func (m *movingReader) Read(p []byte) (int, error) {
	if m.err != nil {
		return 0, m.err
	}
	n, err := m.r.Read(p)
	if n > 0 {
		m.moved()
	}
	m.err = err
	return n, err
}

// movingWriter calls moved after every write that took bytes.
type movingWriter struct {
	w     io.Writer
	moved func()
}

func (m movingWriter) Write(p []byte) (int, error) {
	n, err := m.w.Write(p)
	if n > 0 {
		m.moved()
	}
	return n, err
}

// Noop sends NOOP under its own timeout (CommandTimeout when 0): the way to
// notice a half-open connection. On timeout the connection is closed.
func (c *Conn) Noop(ctx context.Context, timeout time.Duration) error {
	return c.run(ctx, timeout, "NOOP", func() error { return c.client.Noop().Wait() })
}

// Close logs out (briefly bounded) and closes the connection.
func (c *Conn) Close() error {
	if c.broken == nil {
		// Short: at shutdown the messages in hand must finish within 10 s
		// in all, and a silent server must not take that time.
		timeout := min(c.cfg.CommandTimeout, 2*time.Second)
		c.run(context.Background(), timeout, "LOGOUT", func() error { return c.client.Logout().Wait() })
		c.broken = fmt.Errorf("%w: closed by Close", ErrClosed)
	}
	err := c.client.Close()
	if err != nil && errors.Is(err, net.ErrClosed) {
		err = nil
	}
	c.log.Info("imap disconnected")
	return err
}

// IsRefusal reports whether err is the server's NO to a command (a
// refusal it would repeat: over quota, too big, not allowed), or a folder
// copies never go into (ErrSpecialUse), as opposed to a failure of the
// connection.
func IsRefusal(err error) bool {
	var ie *imap.Error
	return errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeNo || errors.Is(err, ErrSpecialUse)
}

// maxPreTLSLine bounds a response line read before STARTTLS.
const maxPreTLSLine = 8 << 10

// startTLS reads the server's greeting on raw, sends STARTTLS (RFC 3501
// 6.2.1) and makes the TLS handshake. It is done here rather than by
// go-imap so that the connection go-imap reads is ours above TLS, as with
// implicit TLS (byeConn). A PREAUTH greeting is refused: it would skip
// TLS (RFC 3501 7.1.4).
func startTLS(ctx context.Context, raw net.Conn, tc *tls.Config) (net.Conn, error) {
	greeting, err := readLine(raw)
	if err != nil {
		return nil, fmt.Errorf("greeting: %w", err)
	}
	switch word := strings.ToUpper(firstWord(strings.TrimPrefix(greeting, "* "))); {
	case !strings.HasPrefix(greeting, "* "):
		return nil, fmt.Errorf("not an IMAP greeting: %q", printable(greeting))
	case word == "PREAUTH":
		return nil, errors.New("the server sent PREAUTH before TLS (refused: it would skip TLS)")
	case word != "OK":
		return nil, fmt.Errorf("the server greeted with %q", printable(greeting))
	}
	if _, err := io.WriteString(raw, "S STARTTLS\r\n"); err != nil {
		return nil, err
	}
	for {
		line, err := readLine(raw)
		if err != nil {
			return nil, err
		}
		rest, ok := strings.CutPrefix(line, "S ")
		if !ok {
			continue // untagged data before the answer
		}
		if !strings.EqualFold(firstWord(rest), "OK") {
			return nil, fmt.Errorf("refused: %q", printable(rest))
		}
		break
	}
	tconn := tls.Client(raw, tc)
	if err := tconn.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tconn, nil
}

// readLine reads one CRLF-ended line byte by byte (nothing after it may be
// read: the TLS handshake follows), without its CRLF.
func readLine(r io.Reader) (string, error) {
	var line []byte
	b := make([]byte, 1)
	for len(line) < maxPreTLSLine {
		if _, err := io.ReadFull(r, b); err != nil {
			return "", err
		}
		if b[0] == '\n' {
			return strings.TrimSuffix(string(line), "\r"), nil
		}
		line = append(line, b[0])
	}
	return "", fmt.Errorf("a response line longer than %d bytes", maxPreTLSLine)
}

func firstWord(s string) string {
	w, _, _ := strings.Cut(s, " ")
	return w
}

// bearerClient is the client side of SASL XOAUTH2 (Google's and
// Microsoft's) and OAUTHBEARER (RFC 7628). When the server answers the
// initial response with an error challenge (JSON with a status), the
// client sends %x01 (RFC 7628 3.2.3), and the server ends with NO.
type bearerClient struct {
	mech, user, token string
	status            string // from the server's error challenge
}

func (b *bearerClient) Start() (string, []byte, error) {
	if b.mech == "OAUTHBEARER" {
		return b.mech, []byte("n,a=" + saslName(b.user) + ",\x01auth=Bearer " + b.token + "\x01\x01"), nil
	}
	return b.mech, []byte("user=" + b.user + "\x01auth=Bearer " + b.token + "\x01\x01"), nil
}

func (b *bearerClient) Next(challenge []byte) ([]byte, error) {
	var e struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(challenge, &e) == nil && len(e.Status) <= 64 {
		b.status = e.Status
	}
	// OAUTHBEARER wants %x01; XOAUTH2's servers take any response (an
	// empty one is sent as "=" by go-imap, which Dovecot refuses as bad
	// base64), so %x01 too.
	return []byte{0x01}, nil
}

// saslName escapes a GS2 authzid (RFC 5801): "," as =2C, "=" as =3D.
func saslName(s string) string {
	return strings.NewReplacer("=", "=3D", ",", "=2C").Replace(s)
}
