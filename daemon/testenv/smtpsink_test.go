package testenv

import (
	"bytes"
	"errors"
	"io"
	"net/smtp"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

// TestSMTPSink talks to the sink with Go's net/smtp client (an SMTP
// implementation of its own) and checks what the sink recorded, its
// replies and its down/up.
func TestSMTPSink(t *testing.T) {
	s := StartSMTPSink(t, SinkOptions{})
	msg := "Subject: x\r\n\r\n.leading dot\r\nline\r\n"
	if err := smtp.SendMail(s.Addr(), nil, "a@org.example", []string{"b@partner.example", "c@partner.example"}, []byte(msg)); err != nil {
		t.Fatalf("SendMail() = %v", err)
	}
	got := s.WaitMessages(t, 1, time.Minute)[0]
	if got.From != "a@org.example" || strings.Join(got.To, " ") != "b@partner.example c@partner.example" || string(got.Data) != msg {
		t.Errorf("recorded %+v, want a@org.example -> [b@partner.example c@partner.example] %q", got, msg)
	}

	s.SetReply(SinkData, "451 4.3.0 later")
	err := smtp.SendMail(s.Addr(), nil, "a@org.example", []string{"b@partner.example"}, []byte(msg))
	if !isReply(err, 451, "4.3.0 later") {
		t.Errorf("SendMail() with a DATA reply set = %v, want 451 4.3.0 later", err)
	}
	if s.Attempts() != 2 || len(s.Messages()) != 1 {
		t.Errorf("Attempts() = %d, Messages() = %d, want 2 and 1", s.Attempts(), len(s.Messages()))
	}
	s.SetReply(SinkData, "")
	s.SetReply(SinkRcpt, "550 5.1.1 no such user")
	err = smtp.SendMail(s.Addr(), nil, "a@org.example", []string{"b@partner.example"}, []byte(msg))
	if !isReply(err, 550, "5.1.1 no such user") {
		t.Errorf("SendMail() with a RCPT reply set = %v, want 550 5.1.1", err)
	}
	s.SetReply(SinkRcpt, "")

	s.Down()
	if err := smtp.SendMail(s.Addr(), nil, "a@org.example", []string{"b@partner.example"}, []byte(msg)); err == nil {
		t.Error("SendMail() to a sink that is down = nil error")
	}
	s.Up(t)
	if err := smtp.SendMail(s.Addr(), nil, "a@org.example", []string{"b@partner.example"}, []byte(msg)); err != nil {
		t.Errorf("SendMail() after Up = %v", err)
	}
	s.WaitMessages(t, 2, time.Minute)
}

// isReply reports whether err is the SMTP reply code msg.
func isReply(err error, code int, msg string) bool {
	var te *textproto.Error
	return errors.As(err, &te) && te.Code == code && te.Msg == msg
}

// rw is a session's connection: the client's bytes in, the replies out.
type rw struct {
	io.Reader
	io.Writer
}

// FuzzSMTPSinkSession feeds arbitrary client input to a session: it must
// end (at the input's end) without a panic, and record only messages
// with at least one recipient, within the size bound.
func FuzzSMTPSinkSession(f *testing.F) {
	f.Add([]byte("EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: s\r\n\r\n..x\r\n.\r\nQUIT\r\n"))
	f.Add([]byte("LHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\nx\n.\nRSET\r\nNOOP\r\n"))
	f.Add([]byte("HELO\r\nDATA\r\nMAIL FROM:a\r\nRCPT TO:<\r\n" + strings.Repeat("x", 5000) + "\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &SMTPSink{opts: SinkOptions{MaxMessage: 1 << 12}, replies: map[SinkStage]string{}, changed: make(chan struct{})}
		var out bytes.Buffer
		s.session(rw{bytes.NewReader(in), &out})
		for _, m := range s.Messages() {
			if len(m.To) == 0 || len(m.Data) > 1<<12 {
				t.Fatalf("recorded %d recipients, %d bytes", len(m.To), len(m.Data))
			}
		}
	})
}
