package gateway

// This file is one SMTP session of a client: AUTH passed on to the
// upstream (submission), MAIL and RCPT forwarded to the next hop as they
// come, DATA spooled and handed to process.

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/smimed/smimed/daemon/config"
)

type session struct {
	g        *Gateway
	conn     *smtp.Conn
	log      *slog.Logger
	relay    *relayConn // nil until MAIL (filter) or AUTH (submission)
	login    string     // submission: the AUTH user name
	accepted map[string]bool
	from     string
	utf8     bool
	rcpts    []string
	inTx     bool // a MAIL went to the next hop
}

var (
	errAuthNeeded = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	errNoAuth     = &smtp.SMTPError{Code: 502, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "AUTH not offered here"}
	errLoginLost  = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "The session with the upstream was lost: connect and log in again"}
	errLongLine   = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "A line is longer than 65536 octets (RFC 5321 allows 1000)"}
	errTimeout    = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Timeout while reading the data"}
)

func (g *Gateway) newSession(c *smtp.Conn) (smtp.Session, error) {
	g.active.Add(1)
	g.mon.SessionStarted()
	remote := ""
	if a := c.Conn().RemoteAddr(); a != nil {
		remote = a.String()
	}
	return &session{g: g, conn: c, log: g.log.With("remote", remote), accepted: map[string]bool{}}, nil
}

func (s *session) Logout() error {
	s.relay.close()
	s.relay = nil
	s.g.active.Add(-1)
	s.g.mon.SessionEnded()
	return nil
}

// AuthMechanisms: submission passes PLAIN and LOGIN on; a filter offers
// none.
func (s *session) AuthMechanisms() []string {
	if s.g.cfg.Mode != config.ModeSubmission {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	if s.g.cfg.Mode != config.ModeSubmission {
		return nil, errNoAuth
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			return s.upstreamAuth(identity, user, pass)
		}), nil
	case sasl.Login:
		return newLoginServer(func(user, pass string) error {
			return s.upstreamAuth("", user, pass)
		}), nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// upstreamAuth opens the session to the upstream and logs in there with
// the client's credentials (PLAIN when the upstream offers it, else
// LOGIN, whichever the client used); the client gets the upstream's
// answer. The password is used for this login only and kept nowhere.
func (s *session) upstreamAuth(identity, user, pass string) error {
	if s.relay != nil {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Already authenticated"}
	}
	rc, err := s.dial()
	if err != nil {
		return err
	}
	var c sasl.Client
	switch {
	case rc.c.SupportsAuth(sasl.Plain):
		c = sasl.NewPlainClient(identity, user, pass)
	case rc.c.SupportsAuth(sasl.Login) && identity == "":
		c = sasl.NewLoginClient(user, pass)
	default:
		rc.close()
		s.log.Warn("gateway: the upstream offers neither AUTH PLAIN nor LOGIN", "relay", s.g.cfg.Relay.Addr)
		return &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "The upstream offers no AUTH smimed can pass on"}
	}
	rc.conn.SetDeadline(time.Now().Add(s.g.cfg.Relay.CommandTimeout))
	err = rc.c.Auth(c)
	rc.conn.SetDeadline(time.Time{})
	if err != nil {
		rc.close()
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			s.log.Info("gateway: upstream refused the login", "user", user, "code", se.Code)
			return se
		}
		s.g.mon.RelayError()
		s.log.Warn("gateway: login to the upstream failed", "user", user, "err", err)
		return errRelayLost
	}
	s.relay, s.login = rc, user
	s.log = s.log.With("user", user)
	s.log.Info("gateway: login passed on to the upstream")
	return nil
}

// dial connects to the next hop; a failure is a 451 4.4.1 for the client.
func (s *session) dial() (*relayConn, error) {
	rc, err := dialRelay(s.g.ctx(), s.g.cfg.Relay)
	if err != nil {
		s.g.mon.RelayError()
		s.log.Warn("gateway: next hop not reachable", "relay", s.g.cfg.Relay.Addr, "err", err)
		return nil, errRelayDown
	}
	return rc, nil
}

// lost handles an error of the next hop's session: an SMTP answer is
// passed on; a broken connection is closed (a filter dials again for the
// next transaction) and answered 451 4.4.2.
func (s *session) lost(what string, err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	s.g.mon.RelayError()
	s.log.Warn("gateway: next hop's session broke", "during", what, "err", err)
	s.relay.close()
	s.relay = nil
	s.inTx = false
	return errRelayLost
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	reused := s.relay != nil
	if s.relay == nil {
		if s.g.cfg.Mode == config.ModeSubmission {
			if s.login != "" {
				// The upstream's session broke: only a new login opens
				// another.
				return errLoginLost
			}
			return errAuthNeeded
		}
		rc, err := s.dial()
		if err != nil {
			return err
		}
		s.relay = rc
	}
	o := &smtp.MailOptions{}
	if opts != nil {
		o.UTF8, o.RequireTLS, o.Return, o.EnvelopeID = opts.UTF8, opts.RequireTLS, opts.Return, opts.EnvelopeID
		// SIZE is not passed on: signing and encryption change it. BODY
		// is go-smtp's: 8BITMIME wherever the next hop offers it.
	}
	err := s.relay.c.Mail(from, o)
	if err != nil && reused && s.g.cfg.Mode != config.ModeSubmission && relayGone(err) {
		// The session kept from the client's previous transaction ended
		// while idle (the next hop's timeout, a restart): no transaction
		// was open, so a new session loses nothing.
		s.log.Info("gateway: the kept session to the next hop had ended; connecting again", "err", err)
		s.relay.close()
		s.relay = nil
		rc, derr := s.dial()
		if derr != nil {
			return derr
		}
		s.relay = rc
		err = s.relay.c.Mail(from, o)
	}
	if err != nil {
		if !isSMTPError(err) && strings.HasPrefix(err.Error(), "smtp: server does not support") {
			// SMTPUTF8 or REQUIRETLS asked for and not offered next.
			return &smtp.SMTPError{Code: 555, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "The next hop does not offer " + strings.TrimPrefix(err.Error(), "smtp: server does not support ")}
		}
		return s.lost("MAIL", err)
	}
	s.inTx = true
	s.from = from
	s.utf8 = o.UTF8
	return nil
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if s.relay == nil || !s.inTx {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "MAIL first"}
	}
	var o *smtp.RcptOptions
	if opts != nil {
		// The DSN parameters (RFC 3461 4.1, 4.2); go-smtp sends them
		// only where the next hop announces DSN.
		o = &smtp.RcptOptions{Notify: opts.Notify, OriginalRecipientType: opts.OriginalRecipientType, OriginalRecipient: opts.OriginalRecipient}
	}
	if err := s.relay.c.Rcpt(to, o); err != nil {
		return s.lost("RCPT", err)
	}
	// The upstream took a recipient from this sender: it accepts the
	// address for the login. Not at MAIL: Postfix (smtpd_delay_reject)
	// and others check the sender against the login at RCPT.
	s.accepted[strings.ToLower(s.from)] = true
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *session) Reset() {
	if s.inTx && s.relay != nil {
		if err := s.relay.c.Reset(); err != nil {
			s.lost("RSET", err)
		}
	}
	s.inTx = false
	s.from = ""
	s.rcpts = nil
}

func (s *session) Data(r io.Reader) (err error) {
	defer func() {
		// A bug on a stranger's message must not end every session: the
		// message is refused for now and nothing was sent.
		if p := recover(); p != nil {
			s.log.Error("gateway: panic while processing a message: not sent", "panic", fmt.Sprint(p))
			s.relay.close()
			s.relay, s.inTx = nil, false
			err = errLocal
		}
	}()
	if s.relay == nil || !s.inTx {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "MAIL first"}
	}
	s.conn.Conn().SetReadDeadline(time.Now().Add(s.g.cfg.DataTimeout))
	f, err := os.CreateTemp(s.g.cfg.TempDir, "gw-*.eml")
	if err != nil {
		s.log.Error("gateway: cannot spool a message", "err", err)
		return errLocal
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	if _, err := io.Copy(f, r); err != nil {
		var se *smtp.SMTPError
		var ne net.Error
		switch {
		case strings.Contains(err.Error(), "too long a line"):
			s.log.Info("gateway: message refused: a line over the limit", "max_line", maxLine)
			return errLongLine
		case errors.As(err, &se): // too large: 552 5.3.4
			s.log.Info("gateway: message refused", "reason", se.Message, "max_message_size", s.g.cfg.MaxMessageSize)
			return se
		case errors.As(err, &ne) && ne.Timeout():
			s.log.Info("gateway: client stalled in DATA", "data_timeout", s.g.cfg.DataTimeout)
			return errTimeout
		}
		s.log.Warn("gateway: cannot spool a message", "err", err)
		return errLocal
	}
	return s.g.process(s, f)
}

// relayGone tells whether err says the next hop's session has ended: it
// said 421 (closing) or the connection failed.
func relayGone(err error) bool {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code == 421
	}
	return !strings.HasPrefix(err.Error(), "smtp: server does not support")
}

func isSMTPError(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se)
}

// allowed tells whether the sender may sign as addr: in submission mode
// only addresses the upstream accepted as MAIL FROM for this login, with
// a recipient.
func (s *session) allowed(addr string) bool { return s.accepted[strings.ToLower(addr)] }
