package testenv

import (
	"io"

	"github.com/emersion/go-smtp"
)

// SendSMTP sends msg over c in one transaction (MAIL FROM from, RCPT TO
// each of to, DATA) and returns the first refusal or error; nil means
// the server accepted the message (250 after DATA).
func SendSMTP(c *smtp.Client, from string, to []string, msg string) error {
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, msg); err != nil {
		return err
	}
	return w.Close()
}
