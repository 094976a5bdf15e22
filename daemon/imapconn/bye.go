package imapconn

// go-imap reads a server's untagged BYE (RFC 3501 7.1.5) and drops its
// text, so a connection the server shut down ends in the log as "use of
// closed network connection". byeConn watches the bytes the server sends
// for a BYE and keeps its text. It follows literals ({n} at the end of a
// line: n bytes that are not lines), so nothing inside a message — whose
// body any sender writes — is ever taken for a BYE. Memory is bounded: a
// few hundred bytes per line, whatever the line's length.

import (
	"net"
	"strconv"
	"strings"
	"sync"
)

// maxByeText bounds the BYE text kept (and logged).
const maxByeText = 200

type byeConn struct {
	net.Conn
	mu   sync.Mutex
	scan byeScanner
	pend []byte // bytes for go-imap not yet returned (see diverter)
	div  diverter
}

func (b *byeConn) Read(p []byte) (int, error) {
	for {
		b.mu.Lock()
		if len(b.pend) > 0 {
			n := copy(p, b.pend)
			b.pend = b.pend[n:]
			b.mu.Unlock()
			return n, nil
		}
		b.mu.Unlock()
		n, err := b.Conn.Read(p)
		b.mu.Lock()
		if !b.div.active() {
			b.scan.feed(p[:n])
			b.mu.Unlock()
			return n, err
		}
		b.pend = b.div.filter(&b.scan, p[:n], b.pend)
		if err != nil {
			b.div.fail(err)
		}
		k := copy(p, b.pend)
		b.pend = b.pend[k:]
		b.mu.Unlock()
		if k > 0 || err != nil {
			return k, err
		}
		// Everything read was the diverted response: go-imap waits on.
	}
}

// bye is the text of the last BYE the server sent, "" when none.
func (b *byeConn) bye() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.scan.text
}

// byeScanner splits the server's stream into response lines, skipping
// literals.
type byeScanner struct {
	skip int64  // literal bytes still to skip
	cont bool   // the current line continues a response after a literal
	head []byte // the line's first bytes
	tail []byte // the line's last bytes (a literal's {n})
	text string
}

// atLineStart reports whether the next byte begins a response line (not
// a literal's bytes, nor the rest of a response after a literal).
func (s *byeScanner) atLineStart() bool {
	return s.skip == 0 && !s.cont && len(s.tail) == 0
}

func (s *byeScanner) feed(p []byte) {
	for len(p) > 0 {
		if s.skip > 0 {
			n := int64(len(p))
			if n > s.skip {
				n = s.skip
			}
			s.skip -= n
			p = p[n:]
			continue
		}
		b := p[0]
		p = p[1:]
		if b == '\n' {
			s.endLine()
			continue
		}
		if len(s.head) < 6+maxByeText {
			s.head = append(s.head, b)
		}
		s.tail = append(s.tail, b)
		if len(s.tail) > 32 {
			s.tail = append(s.tail[:0], s.tail[len(s.tail)-24:]...)
		}
	}
}

func (s *byeScanner) endLine() {
	tail := strings.TrimSuffix(string(s.tail), "\r")
	head := string(s.head)
	cont := s.cont
	s.head, s.tail, s.cont = s.head[:0], s.tail[:0], false
	if n, ok := literalSize(tail); ok {
		s.skip, s.cont = n, true
		return
	}
	if !cont && len(head) >= 6 && strings.EqualFold(head[:6], "* BYE ") {
		s.text = printable(strings.TrimSuffix(head[6:], "\r"))
	}
}

// literalSize reads "{n}" or "{n+}" at the end of a line.
func literalSize(tail string) (int64, bool) {
	if !strings.HasSuffix(tail, "}") {
		return 0, false
	}
	i := strings.LastIndexByte(tail, '{')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(tail[i+1:len(tail)-1], "+"), 10, 64)
	return n, err == nil && n >= 0
}

// printable keeps the printable ASCII of s, at most maxByeText bytes.
func printable(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 0x20 && r < 0x7f && b.Len() < maxByeText {
			b.WriteRune(r)
		}
	}
	return strings.TrimSpace(b.String())
}
