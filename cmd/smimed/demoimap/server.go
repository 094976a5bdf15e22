// Package demoimap is the IMAP server of `smimed demo`: go-imap's
// in-memory server (imapmemserver) with one user on a loopback address,
// so that the demo needs no mail server. It speaks IMAP4rev1 (RFC 3501)
// with UIDPLUS (RFC 4315), MOVE (RFC 6851) and NAMESPACE (RFC 2342), and
// takes LOGIN without TLS, which is why the demo allows only loopback
// addresses.
//
// It imports go-imap v2's server API (imapserver, imapmemserver), a beta
// like its client API, because a real IMAP server inside the process is
// what lets the demo run the unchanged service with nothing set up, and
// go-imap's is the one the service's client is tested against. Besides
// daemon/imapconn, the service's client adapter, this package is the
// only place that imports go-imap, so that an upgrade of the beta touches
// these two; no go-imap type appears in its API.
package demoimap

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// Server is a running in-memory IMAP server with one user.
type Server struct {
	srv    *imapserver.Server
	ln     net.Listener
	user   *imapmemserver.User
	served chan struct{} // closed when Serve returned
	idle   chan struct{} // closed when the first IDLE began
	once   sync.Once
	closed sync.Once
}

// Start listens on listen (host:port; port 0 picks a free one) and serves
// the user username with password and the given mailboxes, empty, until
// Close. ctx bounds the start only (the lookup of listen's host).
func Start(ctx context.Context, listen, username, password string, mailboxes ...string) (*Server, error) {
	user := imapmemserver.NewUser(username, password)
	for _, name := range mailboxes {
		if err := user.Create(name, nil); err != nil {
			return nil, err
		}
	}
	s := &Server{user: user, served: make(chan struct{}), idle: make(chan struct{})}
	s.srv = imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &session{user: user, idling: s.idling}, nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}, imap.CapMove: {}, imap.CapNamespace: {}},
		InsecureAuth: true, // no TLS: loopback only
		Logger:       slog.NewLogLogger(slog.DiscardHandler, slog.LevelError),
	})
	ln, err := new(net.ListenConfig).Listen(ctx, "tcp", listen)
	if err != nil {
		return nil, err
	}
	s.ln = ln
	go func() {
		s.srv.Serve(ln)
		close(s.served)
	}()
	return s, nil
}

// Addr is the address the server listens on (host:port).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Append delivers msg, a raw message, into mailbox with the internal date
// date, as a mail server delivers new mail: sessions that have the
// mailbox selected hear of it (in IDLE at once).
func (s *Server) Append(mailbox string, msg []byte, date time.Time) error {
	_, err := s.user.Append(mailbox, bytes.NewReader(msg), &imap.AppendOptions{Time: date})
	return err
}

// Messages is the number of messages in mailbox (0 when there is no
// such mailbox).
func (s *Server) Messages(mailbox string) int {
	st, err := s.user.Status(mailbox, &imap.StatusOptions{NumMessages: true})
	if err != nil || st.NumMessages == nil {
		return 0
	}
	return int(*st.NumMessages)
}

// Idling is closed once a session has entered IDLE and listens for
// updates: from then on an Append reaches it at once.
func (s *Server) Idling() <-chan struct{} { return s.idle }

// idling is called whenever a session enters IDLE.
func (s *Server) idling() {
	s.once.Do(func() { close(s.idle) })
}

// Close stops listening, closes every connection and returns once the
// server has stopped. It may be called more than once.
func (s *Server) Close() error {
	err := errors.New("demoimap: server already closed")
	s.closed.Do(func() {
		err = s.srv.Close()
		// Serve may not have registered the listener yet, and then
		// the server's Close does not close it.
		s.ln.Close()
		<-s.served
	})
	return err
}
