package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smimed/smimed/daemon/config"
)

// Config is what a Gateway is started with.
type Config struct {
	Mode           string // config.ModeFilter or ModeSubmission
	Listen         net.Listener
	ListenTLS      net.Listener // submission: implicit TLS; nil for none
	TLS            *tls.Config  // our certificate (STARTTLS on Listen, ListenTLS); nil: no TLS
	Relay          RelayConfig
	Domain         string // our name in the greeting
	MaxMessageSize int64
	MaxRecipients  int
	MaxSessions    int
	CommandTimeout time.Duration
	DataTimeout    time.Duration
	TempDir        string // spooled messages (state_dir/tmp)
	// AllowInsecureAuth lets clients log in without TLS (tests, loopback).
	AllowInsecureAuth bool

	Composer Composer
	Archiver Archiver
	Monitor  Monitor // nil: none
	Log      *slog.Logger
	Now      func() time.Time // nil: time.Now
}

// Runtime is what a reload may change while sessions go on: each
// message takes the one in force when its DATA ends.
type Runtime struct {
	Policy *Policy
	Lookup Lookup
	Escrow []Recipient // every encrypted message is also encrypted to these
}

// maxLine bounds a line of a command or of the data. RFC 5321 4.5.3.1.6
// allows 1000 octets; mail programs write longer ones, which the
// composer re-encodes before signing.
const maxLine = 64 << 10

// Gateway is the running SMTP side.
type Gateway struct {
	cfg     Config
	rt      atomic.Pointer[Runtime]
	servers []*smtp.Server
	lns     []net.Listener
	active  atomic.Int64 // sessions open (after EHLO)
	conns   atomic.Int64 // connections open, what max_sessions bounds
	log     *slog.Logger
	mon     Monitor
	wg      sync.WaitGroup
	base    atomic.Pointer[context.Context] // Serve's, for dials
}

// New makes a gateway; Serve runs it.
func New(cfg Config, rt *Runtime) (*Gateway, error) {
	if cfg.Composer == nil || cfg.Archiver == nil || rt == nil || rt.Policy == nil || rt.Lookup == nil {
		return nil, errors.New("gateway: Composer, Archiver, Policy and Lookup are needed")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{cfg: cfg, log: cfg.Log, mon: cfg.Monitor}
	if g.mon == nil {
		g.mon = nopMonitor{}
	}
	g.rt.Store(rt)
	return g, nil
}

// SetRuntime puts a reloaded policy, lookup and escrow in force.
func (g *Gateway) SetRuntime(rt *Runtime) { g.rt.Store(rt) }

// Sessions is the number of SMTP sessions open now.
func (g *Gateway) Sessions() int64 { return g.active.Load() }

// Serve answers SMTP on the listeners until ctx ends, then closes them
// and waits up to grace for the sessions in a transaction.
func (g *Gateway) Serve(ctx context.Context) error {
	newServer := func() *smtp.Server {
		s := smtp.NewServer(smtp.BackendFunc(g.newSession))
		s.Domain = g.cfg.Domain
		if s.Domain == "" {
			s.Domain, _ = os.Hostname()
		}
		s.MaxMessageBytes = g.cfg.MaxMessageSize
		s.MaxRecipients = g.cfg.MaxRecipients
		s.MaxLineLength = maxLine
		s.ReadTimeout = g.cfg.CommandTimeout
		s.WriteTimeout = g.cfg.CommandTimeout
		s.EnableSMTPUTF8 = true
		// DSN requests (RFC 3461) pass through to the next hop, which
		// then reports on delivery as the sender asked.
		s.EnableDSN = true
		s.AllowInsecureAuth = g.cfg.AllowInsecureAuth
		s.TLSConfig = g.cfg.TLS
		s.ErrorLog = logAdapter{g.log}
		return s
	}
	g.base.Store(&ctx)
	errs := make(chan error, 2)
	serve := func(ln net.Listener, implicitTLS bool) {
		s := newServer()
		// Counted below TLS, so that go-smtp still sees a *tls.Conn.
		ln = &limitListener{Listener: ln, g: g, greet: !implicitTLS}
		if implicitTLS {
			ln = tls.NewListener(ln, g.cfg.TLS)
		}
		g.servers = append(g.servers, s)
		g.wg.Go(func() { errs <- s.Serve(ln) })
	}
	serve(g.cfg.Listen, false)
	if g.cfg.ListenTLS != nil {
		serve(g.cfg.ListenTLS, true)
	}
	g.log.Info("gateway listening", "mode", g.cfg.Mode, "listen", g.cfg.Listen.Addr().String(), "relay", g.cfg.Relay.Addr)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
		if errors.Is(err, smtp.ErrServerClosed) {
			err = nil
		}
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for _, s := range g.servers {
		s.Shutdown(sctx) // waits for sessions to end, then closes them
	}
	g.wg.Wait()
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	return nil
}

// limitListener answers a connection over max_sessions with 421 (on a
// plain listener; an implicit-TLS one is closed) and closes it. It
// counts connections, not sessions: go-smtp opens a session at EHLO
// only, and a client that never says EHLO holds a connection too.
type limitListener struct {
	net.Listener
	g     *Gateway
	greet bool
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if n := l.g.conns.Add(1); l.g.cfg.MaxSessions > 0 && n > int64(l.g.cfg.MaxSessions) {
			l.g.conns.Add(-1)
			l.g.log.Warn("gateway: session refused, max_sessions reached", "remote", c.RemoteAddr().String(), "max_sessions", l.g.cfg.MaxSessions)
			go func() {
				if l.greet {
					c.SetDeadline(time.Now().Add(5 * time.Second))
					fmt.Fprintf(c, "421 4.3.2 Too many sessions, try again later\r\n")
				}
				c.Close()
			}()
			continue
		}
		return &countedConn{Conn: c, n: &l.g.conns}, nil
	}
}

// countedConn gives its place back when closed.
type countedConn struct {
	net.Conn
	once sync.Once
	n    *atomic.Int64
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.n.Add(-1) })
	return c.Conn.Close()
}

type logAdapter struct{ log *slog.Logger }

func (l logAdapter) Printf(format string, v ...any) {
	l.log.Warn("gateway: smtp server: " + fmt.Sprintf(format, v...))
}
func (l logAdapter) Println(v ...any) { l.log.Warn("gateway: smtp server: " + fmt.Sprint(v...)) }

// RelayConfigOf is the relay settings of [gateway].
func RelayConfigOf(g *config.Gateway, localName string) (RelayConfig, error) {
	pool, err := RelayTLSConfig(g.RelayTLSCAFile)
	if err != nil {
		return RelayConfig{}, err
	}
	return RelayConfig{Addr: g.Relay, TLS: g.RelayTLS, RootCAs: pool, LocalName: localName,
		CommandTimeout: g.CommandTimeout, DataTimeout: g.DataTimeout}, nil
}

// ctx is Serve's context (dials end with it).
func (g *Gateway) ctx() context.Context {
	if c := g.base.Load(); c != nil {
		return *c
	}
	return context.Background()
}
