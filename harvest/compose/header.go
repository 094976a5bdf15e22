package compose

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// field is one header field as read: its canonical name, its unfolded
// value and its raw bytes (with line breaks as CRLF, ending in CRLF).
type field struct {
	key, value string
	raw        []byte
}

// header is a header section in its order.
type header []field

// readHeader reads a header section up to and including the blank line.
func readHeader(br *bufio.Reader) (header, error) {
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	var out header
	for fs := h.Fields(); fs.Next(); {
		raw, err := fs.Raw()
		if err != nil {
			return nil, fmt.Errorf("%w: header field %s: %v", ErrMalformed, fs.Key(), err)
		}
		out = append(out, field{key: fs.Key(), value: fs.Value(), raw: canonicalLine(raw)})
	}
	return out, nil
}

// canonicalLine gives raw with CRLF line breaks, ending in CRLF.
func canonicalLine(raw []byte) []byte {
	var b bytes.Buffer
	c := &crlfWriter{w: &b}
	c.Write(raw)
	out := b.Bytes()
	switch {
	case bytes.HasSuffix(out, []byte("\r\n")):
	case bytes.HasSuffix(out, []byte("\r")):
		out = append(out, '\n')
	default:
		out = append(out, '\r', '\n')
	}
	return out
}

func newField(key, value string) field {
	return field{key: key, value: value, raw: []byte(key + ": " + value + "\r\n")}
}

// get is the value of the first field named key ("" when absent).
func (h header) get(key string) string {
	for _, f := range h {
		if strings.EqualFold(f.key, key) {
			return f.value
		}
	}
	return ""
}

func (h header) has(key string) bool {
	for _, f := range h {
		if strings.EqualFold(f.key, key) {
			return true
		}
	}
	return false
}

// set replaces the first field named key (dropping the others) or adds
// one at the end.
func (h header) set(key, value string) header {
	out := make(header, 0, len(h)+1)
	done := false
	for _, f := range h {
		if strings.EqualFold(f.key, key) {
			if !done {
				out = append(out, newField(key, value))
				done = true
			}
			continue
		}
		out = append(out, f)
	}
	if !done {
		out = append(out, newField(key, value))
	}
	return out
}

func (h header) del(key string) header {
	out := make(header, 0, len(h))
	for _, f := range h {
		if !strings.EqualFold(f.key, key) {
			out = append(out, f)
		}
	}
	return out
}

// write writes the fields and the blank line that ends the section.
func (h header) write(w io.Writer) error {
	for _, f := range h {
		if _, err := w.Write(f.raw); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, "\r\n")
	return err
}

// isMIMEField reports whether a field describes the body (MIME-Version
// and Content-*): those go into the signed or encrypted entity, the rest
// stays outside.
func isMIMEField(key string) bool {
	k := strings.ToLower(key)
	return k == "mime-version" || strings.HasPrefix(k, "content-")
}

// split divides a message header into the transport fields and the
// fields of the body entity.
func (h header) split() (outer, inner header) {
	for _, f := range h {
		if isMIMEField(f.key) {
			inner = append(inner, f)
		} else {
			outer = append(outer, f)
		}
	}
	return outer, inner
}

// contentType is the entity's media type and parameters; the RFC 2045
// default text/plain when absent or unreadable.
func (h header) contentType() (string, map[string]string) {
	v := h.get("Content-Type")
	if v == "" {
		return "text/plain", map[string]string{}
	}
	mt, params, err := mime.ParseMediaType(v)
	if err != nil {
		return "text/plain", map[string]string{}
	}
	return mt, params
}

// withParam is h with the parameter name=value added to its Content-Type
// (set to text/plain; charset=us-ascii when absent).
func (h header) withParam(name, value string) header {
	ct := h.get("Content-Type")
	if ct == "" {
		ct = "text/plain; charset=us-ascii"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		// Keep the field as it is and append the parameter.
		return h.set("Content-Type", strings.TrimRight(ct, "; \t")+"; "+name+"=\""+value+"\"")
	}
	params[name] = value
	return h.set("Content-Type", mime.FormatMediaType(mt, params))
}

// sevenBit returns h with every field made 7bit with lines of at most 998
// octets (for the signed entity): a field that is not is written anew,
// Content-Type and Content-Disposition with RFC 2231 parameters where
// they parse, other text as RFC 2047 encoded-words, folded at spaces.
func (h header) sevenBit() (header, error) {
	var out header
	for _, f := range h {
		if isSevenBit(f.raw) {
			out = append(out, f)
			continue
		}
		v := f.value
		switch strings.ToLower(f.key) {
		case "content-type", "content-disposition":
			if mt, params, err := mime.ParseMediaType(v); err == nil {
				if s := mime.FormatMediaType(mt, params); s != "" {
					v = s
				}
			}
		}
		if !isSevenBit([]byte(v)) {
			v = mime.QEncoding.Encode("utf-8", v)
		}
		nf := field{key: f.key, value: v, raw: fold(f.key + ": " + v)}
		if !isSevenBit(nf.raw) {
			return nil, fmt.Errorf("%w: header field %s cannot be written in lines of 998 octets", ErrMalformed, f.key)
		}
		out = append(out, nf)
	}
	return out, nil
}

// isSevenBit reports whether b is 7bit data (sevenBitCheck).
func isSevenBit(b []byte) bool {
	c := &sevenBitCheck{w: io.Discard}
	c.Write(b)
	return c.ok()
}

// fold breaks a field at spaces into lines of about 76 octets, ending it
// with CRLF.
func fold(s string) []byte {
	var b strings.Builder
	col := 0
	for i, word := range strings.Split(s, " ") {
		if i > 0 {
			if col+1+len(word) > 76 {
				b.WriteString("\r\n")
				col = 0
			}
			b.WriteByte(' ')
			col++
		}
		b.WriteString(word)
		col += len(word)
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// maxHeaderBytes bounds a message's header section.
const maxHeaderBytes = 1 << 20

// headerLimit is a reader that fails once more than maxHeaderBytes were
// read while limited is set: the header section is read through it, the
// body after it is not limited.
type headerLimit struct {
	r       io.Reader
	n       int64
	limited bool
}

func (l *headerLimit) Read(p []byte) (int, error) {
	if l.limited && l.n >= maxHeaderBytes {
		return 0, fmt.Errorf("%w: header section over %d bytes", ErrMalformed, maxHeaderBytes)
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	return n, err
}

// readMessageHeader reads a message's header section from src, at most
// maxHeaderBytes of it, and returns it with a reader of the body.
func readMessageHeader(src io.Reader) (header, *bufio.Reader, error) {
	l := &headerLimit{r: src, limited: true}
	br := bufio.NewReader(l)
	h, err := readHeader(br)
	l.limited = false
	return h, br, err
}
