package testenv

// An SMTP (and LMTP) server for tests: the next hop of a Postfix or of the
// gateway. It records every message it accepts with its envelope, can be
// told to answer MAIL, RCPT or DATA with a reply of the test's choosing
// (4xx, 5xx), and can be taken down (connections refused) and brought up
// again on the same port. Its handler hook turns it into a relay, e.g. a
// stand-in content filter (see postfix_test.go).
//
// It speaks the subset of RFC 5321 that Postfix's smtp and lmtp clients
// use: EHLO/HELO/LHLO, MAIL, RCPT, DATA (dot-unstuffed), RSET, NOOP, QUIT,
// with PIPELINING, 8BITMIME, SMTPUTF8, SIZE and ENHANCEDSTATUSCODES
// announced. No TLS, no AUTH, no XFORWARD (Postfix sends it only when
// announced). Lines are bounded, so a confused client cannot grow memory
// beyond MaxMessage.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// SinkMessage is one message a sink received, with its envelope.
type SinkMessage struct {
	Helo string   // the EHLO/HELO/LHLO argument
	From string   // MAIL FROM's address, without <>
	To   []string // RCPT TO's addresses, without <>
	Data []byte   // the message as sent, dot-unstuffed, CRLF line ends
}

// SinkStage is where a sink's reply applies.
type SinkStage string

const (
	SinkMail SinkStage = "MAIL" // the reply to MAIL FROM
	SinkRcpt SinkStage = "RCPT" // the reply to every RCPT TO
	SinkData SinkStage = "DATA" // the reply after the message's final dot
)

// SinkOptions configure StartSMTPSink; the zero value accepts everything.
type SinkOptions struct {
	// Handler, when set, is called for each complete message before the
	// final reply; a non-empty result (e.g. "451 4.3.0 later") is sent
	// instead of 250, and the message is then not recorded. It runs on
	// the session's goroutine.
	Handler func(SinkMessage) string
	// MaxMessage bounds a message's size (default 64 MiB): larger ones
	// are answered 552 and not recorded.
	MaxMessage int
}

// SMTPSink is a running sink; see StartSMTPSink.
type SMTPSink struct {
	t    testing.TB
	addr string
	opts SinkOptions

	mu       sync.Mutex
	ln       net.Listener
	conns    map[net.Conn]bool
	replies  map[SinkStage]string
	msgs     []SinkMessage
	attempts int
	changed  chan struct{} // closed and replaced when msgs or attempts change
	wg       sync.WaitGroup
}

// StartSMTPSink starts a sink on a free port of 127.0.0.1 and stops it
// when the test ends.
func StartSMTPSink(t testing.TB, opts SinkOptions) *SMTPSink {
	t.Helper()
	if opts.MaxMessage <= 0 {
		opts.MaxMessage = 64 << 20
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: SMTP sink: %v", err)
	}
	s := &SMTPSink{
		t:       t,
		addr:    ln.Addr().String(),
		opts:    opts,
		conns:   map[net.Conn]bool{},
		replies: map[SinkStage]string{},
		changed: make(chan struct{}),
	}
	s.serve(ln)
	t.Cleanup(func() {
		s.Down()
		s.wg.Wait()
	})
	return s
}

// Addr is the sink's host:port.
func (s *SMTPSink) Addr() string { return s.addr }

// Port is the sink's port.
func (s *SMTPSink) Port() int {
	_, p, _ := net.SplitHostPort(s.addr)
	n, _ := strconv.Atoi(p)
	return n
}

// SetReply makes the sink answer stage with reply (a whole SMTP reply
// line such as "451 4.3.0 try again later"); "" restores the normal
// answer. It applies to the commands that arrive from now on.
func (s *SMTPSink) SetReply(stage SinkStage, reply string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if reply == "" {
		delete(s.replies, stage)
	} else {
		s.replies[stage] = reply
	}
}

// Down closes the listener and every open session, so that connections
// are refused until Up. It does nothing when the sink is down.
func (s *SMTPSink) Down() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return
	}
	s.ln.Close()
	s.ln = nil
	for c := range s.conns {
		c.Close()
	}
}

// Up listens again on the same port (retrying for a while if the port is
// still taken), failing t when it cannot.
func (s *SMTPSink) Up(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	up := s.ln != nil
	s.mu.Unlock()
	if up {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ln, err := net.Listen("tcp", s.addr)
		if err == nil {
			s.serve(ln)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: SMTP sink up again on %s: %v", s.addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Messages are the messages accepted so far, oldest first.
func (s *SMTPSink) Messages() []SinkMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SinkMessage(nil), s.msgs...)
}

// Attempts counts the messages that reached the end of DATA, accepted or
// not (a refusal by SetReply(SinkData, ...) or by the Handler counts).
func (s *SMTPSink) Attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts
}

// WaitMessages waits until the sink has accepted at least n messages and
// returns them, failing t after within.
func (s *SMTPSink) WaitMessages(t testing.TB, n int, within time.Duration) []SinkMessage {
	t.Helper()
	if !s.waitFor(func() bool { return len(s.msgs) >= n }, within) {
		t.Fatalf("testenv: SMTP sink %s: %d messages after %v, want %d", s.addr, len(s.Messages()), within, n)
	}
	return s.Messages()
}

// WaitAttempts waits until Attempts() >= n, failing t after within.
func (s *SMTPSink) WaitAttempts(t testing.TB, n int, within time.Duration) {
	t.Helper()
	if !s.waitFor(func() bool { return s.attempts >= n }, within) {
		t.Fatalf("testenv: SMTP sink %s: %d attempts after %v, want %d", s.addr, s.Attempts(), within, n)
	}
}

// waitFor waits until cond (called with s.mu held) holds.
func (s *SMTPSink) waitFor(cond func() bool, within time.Duration) bool {
	timeout := time.After(within)
	for {
		s.mu.Lock()
		ok, ch := cond(), s.changed
		s.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-timeout:
			return false
		}
	}
}

func (s *SMTPSink) serve(ln net.Listener) {
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			if s.ln != ln { // went down meanwhile
				s.mu.Unlock()
				c.Close()
				return
			}
			s.conns[c] = true
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.session(c)
				c.Close()
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
		}
	}()
}

func (s *SMTPSink) reply(stage SinkStage) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replies[stage]
}

func (s *SMTPSink) record(m SinkMessage, accepted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts++
	if accepted {
		s.msgs = append(s.msgs, m)
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// maxLine bounds a command line (RFC 5321 4.5.3.1.4 says 512; be lenient)
// and a text line of DATA (1000, with room).
const maxLine = 4096

var errLineTooLong = errors.New("line too long")

// readLine reads one line without its CRLF (or bare LF), at most maxLine
// bytes; a longer one is consumed and reported as errLineTooLong.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	long := false
	for {
		frag, err := r.ReadSlice('\n')
		if !long {
			if len(line)+len(frag) > maxLine+2 {
				long, line = true, nil
			} else {
				line = append(line, frag...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return nil, err
		}
		if long {
			return nil, errLineTooLong
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		return bytes.TrimSuffix(line, []byte("\r")), nil
	}
}

// session speaks SMTP (or LMTP, after LHLO) with one client on rw.
func (s *SMTPSink) session(rw io.ReadWriter) {
	if c, ok := rw.(net.Conn); ok {
		c.SetDeadline(time.Now().Add(5 * time.Minute))
	}
	r := bufio.NewReaderSize(rw, 4096)
	w := bufio.NewWriter(rw)
	send := func(lines ...string) bool {
		for _, l := range lines {
			w.WriteString(l + "\r\n")
		}
		// Flush only when the client waits for us: after a command whose
		// pipelined successors are not yet read.
		if r.Buffered() > 0 {
			return true
		}
		return w.Flush() == nil
	}
	if !send("220 sink.test.smimed.example ESMTP testenv sink") {
		return
	}
	var m SinkMessage
	lmtp, inTx := false, false
	for {
		line, err := readLine(r)
		if err == errLineTooLong {
			if !send("500 5.5.2 line too long") {
				return
			}
			continue
		}
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(string(line), " ")
		switch strings.ToUpper(verb) {
		case "EHLO", "LHLO":
			lmtp = strings.EqualFold(verb, "LHLO")
			m, inTx = SinkMessage{Helo: arg}, false
			if !send("250-sink.test.smimed.example", "250-PIPELINING", "250-8BITMIME", "250-SMTPUTF8",
				fmt.Sprintf("250-SIZE %d", s.opts.MaxMessage), "250 ENHANCEDSTATUSCODES") {
				return
			}
		case "HELO":
			m, inTx = SinkMessage{Helo: arg}, false
			if !send("250 sink.test.smimed.example") {
				return
			}
		case "MAIL":
			addr, ok := pathArg(arg, "FROM:")
			switch {
			case !ok:
				ok = send("501 5.5.4 syntax: MAIL FROM:<address>")
			case inTx:
				ok = send("503 5.5.1 nested MAIL command")
			case s.reply(SinkMail) != "":
				ok = send(s.reply(SinkMail))
			default:
				m, inTx = SinkMessage{Helo: m.Helo, From: addr}, true
				ok = send("250 2.1.0 ok")
			}
			if !ok {
				return
			}
		case "RCPT":
			addr, ok := pathArg(arg, "TO:")
			switch {
			case !ok:
				ok = send("501 5.5.4 syntax: RCPT TO:<address>")
			case !inTx:
				ok = send("503 5.5.1 need MAIL first")
			case s.reply(SinkRcpt) != "":
				ok = send(s.reply(SinkRcpt))
			default:
				m.To = append(m.To, addr)
				ok = send("250 2.1.5 ok")
			}
			if !ok {
				return
			}
		case "DATA":
			if !inTx || len(m.To) == 0 {
				if !send("503 5.5.1 need RCPT first") {
					return
				}
				continue
			}
			if !send("354 end with <CRLF>.<CRLF>") {
				return
			}
			if err := w.Flush(); err != nil {
				return
			}
			data, tooBig, err := readData(r, s.opts.MaxMessage)
			if err != nil {
				return
			}
			m.Data = data
			final := "250 2.0.0 ok: queued"
			switch {
			case tooBig:
				final = "552 5.3.4 message too big"
			case s.reply(SinkData) != "":
				final = s.reply(SinkData)
			case s.opts.Handler != nil:
				if h := s.opts.Handler(m); h != "" {
					final = h
				}
			}
			s.record(m, final == "250 2.0.0 ok: queued")
			replies := []string{final}
			if lmtp { // one reply per recipient (RFC 2033 4.2)
				replies = nil
				for range m.To {
					replies = append(replies, final)
				}
			}
			m, inTx = SinkMessage{Helo: m.Helo}, false
			if !send(replies...) {
				return
			}
		case "RSET":
			m, inTx = SinkMessage{Helo: m.Helo}, false
			if !send("250 2.0.0 ok") {
				return
			}
		case "NOOP":
			if !send("250 2.0.0 ok") {
				return
			}
		case "QUIT":
			send("221 2.0.0 bye")
			w.Flush()
			return
		default:
			if !send("502 5.5.2 command not recognized") {
				return
			}
		}
	}
}

// pathArg takes the address out of "FROM:<a@b> PARAMS" (prefix "FROM:").
func pathArg(arg, prefix string) (string, bool) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return "", false
	}
	rest := strings.TrimLeft(arg[len(prefix):], " ")
	if !strings.HasPrefix(rest, "<") {
		return "", false
	}
	end := strings.IndexByte(rest, '>')
	if end < 0 {
		return "", false
	}
	return rest[1:end], true
}

// readData reads a message up to the line ".", undoing dot-stuffing,
// keeping at most max bytes (tooBig reports that more came).
func readData(r *bufio.Reader, max int) (data []byte, tooBig bool, err error) {
	var b bytes.Buffer
	for {
		line, err := readLine(r)
		if err == errLineTooLong {
			tooBig = true // RFC 5321 4.5.3.1.6: a text line is at most 1000 octets
			continue
		}
		if err != nil {
			return nil, false, err
		}
		if len(line) == 1 && line[0] == '.' {
			if tooBig {
				return nil, true, nil
			}
			return b.Bytes(), false, nil
		}
		line = bytes.TrimPrefix(line, []byte("."))
		if b.Len()+len(line)+2 > max {
			tooBig = true
			b.Reset()
			continue
		}
		if !tooBig {
			b.Write(line)
			b.WriteString("\r\n")
		}
	}
}
