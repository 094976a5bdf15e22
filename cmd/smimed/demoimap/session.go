package demoimap

import (
	"time"

	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// session is an in-memory server session for the one user that tells the
// server when it enters IDLE.
type session struct {
	*imapmemserver.UserSession // nil until logged in
	user                       *imapmemserver.User
	idling                     func()
}

var _ imapserver.SessionIMAP4rev2 = (*session)(nil)

func (s *session) Login(username, password string) error {
	if err := s.user.Login(username, password); err != nil {
		return err
	}
	s.UserSession = imapmemserver.NewUserSession(s.user)
	return nil
}

// idlePoll is how often a session in IDLE looks for updates.
const idlePoll = 20 * time.Millisecond

// Idle polls the session's queued updates instead of calling
// imapmemserver's Idle: that one writes only the updates queued after it
// registered, so a message appended between the session's previous command
// and the IDLE stayed unannounced until the next one (the service then
// waited in IDLE with new mail in the folder).
func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	s.idling()
	tick := time.NewTicker(idlePoll)
	defer tick.Stop()
	for {
		if err := s.UserSession.Poll(w, true); err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-tick.C:
		}
	}
}

func (s *session) Close() error {
	if s.UserSession == nil {
		return nil
	}
	return s.UserSession.Close()
}
