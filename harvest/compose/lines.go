package compose

import (
	"encoding/base64"
	"io"
)

// lineWriter breaks what it is given into lines of width octets ending in
// CRLF (for base64 output); Close ends the last line.
type lineWriter struct {
	w     io.Writer
	width int
	col   int
}

func (l *lineWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(l.width-l.col, len(p))
		if _, err := l.w.Write(p[:k]); err != nil {
			return n, err
		}
		n += k
		l.col += k
		p = p[k:]
		if l.col == l.width {
			if _, err := io.WriteString(l.w, "\r\n"); err != nil {
				return n, err
			}
			l.col = 0
		}
	}
	return n, nil
}

func (l *lineWriter) Close() error {
	if l.col == 0 {
		return nil
	}
	l.col = 0
	_, err := io.WriteString(l.w, "\r\n")
	return err
}

// base64Writer encodes to base64 in lines of 76 characters (RFC 2045
// section 6.8); Close flushes it and ends the last line.
type base64Writer struct {
	enc   io.WriteCloser
	lines *lineWriter
}

func newBase64Writer(w io.Writer) *base64Writer {
	l := &lineWriter{w: w, width: 76}
	return &base64Writer{enc: base64.NewEncoder(base64.StdEncoding, l), lines: l}
}

func (b *base64Writer) Write(p []byte) (int, error) { return b.enc.Write(p) }

func (b *base64Writer) Close() error {
	if err := b.enc.Close(); err != nil {
		return err
	}
	return b.lines.Close()
}

// crlfWriter turns bare LF into CRLF (and leaves CRLF alone).
type crlfWriter struct {
	w      io.Writer
	prevCR bool
}

func (c *crlfWriter) Write(p []byte) (int, error) {
	start := 0
	for i, b := range p {
		if b == '\n' && !(i == 0 && c.prevCR) && !(i > 0 && p[i-1] == '\r') {
			if _, err := c.w.Write(p[start:i]); err != nil {
				return 0, err
			}
			if _, err := io.WriteString(c.w, "\r"); err != nil {
				return 0, err
			}
			start = i
		}
	}
	if _, err := c.w.Write(p[start:]); err != nil {
		return 0, err
	}
	if len(p) > 0 {
		c.prevCR = p[len(p)-1] == '\r'
	}
	return len(p), nil
}

// lineBreakWriter makes every line break of text CRLF: CRLF, bare LF and
// bare CR alike. It comes before mime/quotedprintable's Writer, which
// loses the LF that follows a bare CR and other octets.
type lineBreakWriter struct {
	w      io.Writer
	prevCR bool
	buf    []byte
}

func (l *lineBreakWriter) Write(p []byte) (int, error) {
	l.buf = l.buf[:0]
	for _, b := range p {
		switch {
		case b == '\r':
			l.buf = append(l.buf, '\r', '\n')
		case b == '\n' && l.prevCR:
		case b == '\n':
			l.buf = append(l.buf, '\r', '\n')
		default:
			l.buf = append(l.buf, b)
		}
		l.prevCR = b == '\r'
	}
	if _, err := l.w.Write(l.buf); err != nil {
		return 0, err
	}
	return len(p), nil
}
