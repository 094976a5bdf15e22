package gateway

// This file is the gateway's client side: the session to the next hop.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smimed/smimed/daemon/config"
)

// RelayConfig is how the next hop is reached.
type RelayConfig struct {
	Addr           string
	TLS            string // config.RelayTLSNone, RelayTLSStartTLS or RelayTLSImplicit
	RootCAs        *x509.CertPool
	LocalName      string // our name in EHLO
	CommandTimeout time.Duration
	DataTimeout    time.Duration // for the data and the answer after it
}

// RelayTLSConfig is the TLS configuration toward the relay from
// relay_tls_ca_file ("" : the system's roots).
func RelayTLSConfig(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("gateway.relay_tls_ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("gateway.relay_tls_ca_file: %s holds no PEM certificate", caFile)
	}
	return pool, nil
}

// relayConn is one session with the next hop.
type relayConn struct {
	c    *smtp.Client
	conn net.Conn
	cfg  RelayConfig
}

// dialRelay connects to the next hop, with TLS as configured, and says
// EHLO.
func dialRelay(ctx context.Context, cfg RelayConfig) (*relayConn, error) {
	d := net.Dialer{Timeout: cfg.CommandTimeout}
	conn, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", cfg.Addr, err)
	}
	host, _, _ := net.SplitHostPort(cfg.Addr)
	tc := &tls.Config{ServerName: host, RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
	var c *smtp.Client
	switch cfg.TLS {
	case config.RelayTLSImplicit:
		t := tls.Client(conn, tc)
		t.SetDeadline(time.Now().Add(cfg.CommandTimeout))
		if err := t.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("TLS with %s: %w", cfg.Addr, err)
		}
		t.SetDeadline(time.Time{})
		conn = t
		c = smtp.NewClient(conn)
	case config.RelayTLSStartTLS:
		conn.SetDeadline(time.Now().Add(cfg.CommandTimeout))
		c, err = smtp.NewClientStartTLS(conn, tc)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("STARTTLS with %s: %w", cfg.Addr, err)
		}
		conn.SetDeadline(time.Time{})
	default:
		c = smtp.NewClient(conn)
	}
	c.CommandTimeout = cfg.CommandTimeout
	c.SubmissionTimeout = cfg.DataTimeout
	if cfg.TLS != config.RelayTLSStartTLS { // STARTTLS said EHLO already, as "localhost"
		name := cfg.LocalName
		if name == "" {
			name = "localhost"
		}
		if err := c.Hello(name); err != nil {
			c.Close()
			return nil, fmt.Errorf("EHLO to %s: %w", cfg.Addr, err)
		}
	}
	return &relayConn{c: c, conn: conn, cfg: cfg}, nil
}

// close ends the session politely when it can.
func (r *relayConn) close() {
	if r == nil {
		return
	}
	r.conn.SetDeadline(time.Now().Add(5 * time.Second))
	r.c.Quit()
	r.c.Close()
}

// Reply errors the client gets.
var (
	errRelayDown = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 1}, Message: "Next hop not reachable, try again later"}
	errRelayLost = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Connection to the next hop lost, try again later"}
	errLocal     = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Local error in processing, try again later"}
)

// relayReply turns the next hop's answer into the client's: its own
// SMTP error as it stands (4xx or 5xx), anything else (a dead or stalled
// connection) a 451 4.4.2.
func relayReply(err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	return errRelayLost
}

// CheckRelay connects to the next hop, says EHLO (and STARTTLS or
// implicit TLS as configured) and returns the extensions it offers;
// with needAuth, an error unless it offers AUTH PLAIN or LOGIN (the
// submission mode passes the clients' logins on).
func CheckRelay(ctx context.Context, cfg RelayConfig, needAuth bool) (string, error) {
	rc, err := dialRelay(ctx, cfg)
	if err != nil {
		return "", err
	}
	defer rc.close()
	var offers []string
	for _, ext := range []string{"STARTTLS", "SIZE", "8BITMIME", "SMTPUTF8", "PIPELINING", "AUTH"} {
		if ok, param := rc.c.Extension(ext); ok {
			offers = append(offers, strings.TrimSpace(ext+" "+param))
		}
	}
	if needAuth && !rc.c.SupportsAuth("PLAIN") && !rc.c.SupportsAuth("LOGIN") {
		return strings.Join(offers, ", "), fmt.Errorf("%s offers neither AUTH PLAIN nor LOGIN: the submission mode cannot pass logins on", cfg.Addr)
	}
	return strings.Join(offers, ", "), nil
}
