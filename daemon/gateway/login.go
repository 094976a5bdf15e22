package gateway

// The server side of SASL LOGIN (draft-murchison-sasl-login), which
// go-sasl lacks and which many mail clients still use: "Username:",
// then "Password:", each answer one response.

import (
	"errors"

	"github.com/emersion/go-sasl"
)

type loginServer struct {
	step     int
	user     string
	authFunc func(user, pass string) error
}

func newLoginServer(f func(user, pass string) error) sasl.Server {
	return &loginServer{authFunc: f}
}

var errLoginSteps = errors.New("unexpected LOGIN response")

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step++
		if response != nil { // an initial response holds the user name
			l.user = string(response)
			l.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		l.user = string(response)
		l.step++
		return []byte("Password:"), false, nil
	case 2:
		l.step++
		return nil, true, l.authFunc(l.user, string(response))
	}
	return nil, false, errLoginSteps
}
