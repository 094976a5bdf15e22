package gateway

// This file reads what the gateway needs of a message's header (From,
// Subject, Message-ID) from the spooled file, and removes the encryption
// trigger from the Subject. It is written for strangers' mail: bare LF,
// NUL, 8-bit bytes and endless headers are all read without a panic, in
// bounded memory (maxHeader).

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"mime"
	"net/mail"
	"strings"

	"github.com/emersion/go-message/charset"
)

// maxHeader bounds the header block read (RFC 5322 sets no limit; 1 MiB
// is far above what mail programs write).
const maxHeader = 1 << 20

// ErrHeaderTooLong is returned for a header block over maxHeader.
var ErrHeaderTooLong = errors.New("gateway: header longer than 1 MiB")

// header is a message's header block: its raw bytes and fields.
type header struct {
	raw    []byte  // the header block, up to and including the empty line (if any)
	fields []field // in order
}

// field is one header field: the raw bytes from its name to the end of
// its last continuation line (line ending included).
type field struct {
	name string // as written
	raw  []byte
}

// value is the field's unfolded value, without the name and colon.
func (f field) value() string {
	_, v, _ := bytes.Cut(f.raw, []byte{':'})
	s := strings.NewReplacer("\r\n", "", "\n", "", "\r", "").Replace(string(v))
	return strings.TrimSpace(s)
}

// readHeader reads the header block from r: lines up to the first empty
// one, a line that is not a field ending it too (as a body would).
func readHeader(r *bufio.Reader) (*header, error) {
	h := &header{}
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the reader's buffer: keep reading it.
			buf := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) && len(h.raw)+len(buf) <= maxHeader {
				line, err = r.ReadSlice('\n')
				buf = append(buf, line...)
			}
			line = buf
		}
		if len(h.raw)+len(line) > maxHeader {
			return nil, ErrHeaderTooLong
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		if len(line) == 0 {
			return h, nil
		}
		trimmed := bytes.TrimRight(line, "\r\n")
		switch {
		case len(trimmed) == 0:
			h.raw = append(h.raw, line...)
			return h, nil
		case (line[0] == ' ' || line[0] == '\t') && len(h.fields) > 0:
			f := &h.fields[len(h.fields)-1]
			f.raw = append(f.raw, line...)
		default:
			name, _, ok := bytes.Cut(trimmed, []byte{':'})
			if !ok || len(name) == 0 || bytes.ContainsAny(name, " \t") {
				// Not a field: the header has ended without an empty line.
				return h, nil
			}
			h.fields = append(h.fields, field{name: string(name), raw: append([]byte(nil), line...)})
		}
		h.raw = append(h.raw, line...)
		if errors.Is(err, io.EOF) {
			return h, nil
		}
	}
}

// get is the value of the first field called name, "" if none.
func (h *header) get(name string) string {
	for _, f := range h.fields {
		if strings.EqualFold(f.name, name) {
			return f.value()
		}
	}
	return ""
}

// count is how many fields are called name.
func (h *header) count(name string) int {
	n := 0
	for _, f := range h.fields {
		if strings.EqualFold(f.name, name) {
			n++
		}
	}
	return n
}

// fromAddresses are the addresses of the From field, lower case; an
// error when there is none, more than one From field, or it cannot be
// read.
func (h *header) fromAddresses() ([]string, error) {
	switch h.count("From") {
	case 0:
		return nil, errors.New("no From field")
	case 1:
	default:
		return nil, errors.New("more than one From field")
	}
	return parseAddressList(h.get("From"))
}

// parseAddressList reads an address list (RFC 5322 3.4), with encoded
// words and UTF-8 (RFC 6532) allowed.
func parseAddressList(v string) ([]string, error) {
	p := mail.AddressParser{WordDecoder: &mime.WordDecoder{CharsetReader: func(string, io.Reader) (io.Reader, error) {
		return nil, errors.New("unknown charset")
	}}}
	list, err := p.ParseList(v)
	if err != nil {
		// A display name in raw 8-bit (not UTF-8) or otherwise broken:
		// the one angle-addr, when there is exactly one, is the address.
		if a := angleAddr(v); a != "" {
			if one, err2 := p.Parse("<" + a + ">"); err2 == nil {
				return []string{strings.ToLower(one.Address)}, nil
			}
		}
		return nil, err
	}
	if len(list) == 0 {
		return nil, errors.New("no address")
	}
	out := make([]string, 0, len(list))
	for _, a := range list {
		out = append(out, strings.ToLower(a.Address))
	}
	return out, nil
}

// angleAddr is the text between the only "<" and the only ">" of v
// after it, "" when v does not have exactly one such pair.
func angleAddr(v string) string {
	if strings.Count(v, "<") != 1 || strings.Count(v, ">") != 1 {
		return ""
	}
	i, j := strings.IndexByte(v, '<'), strings.IndexByte(v, '>')
	if j < i {
		return ""
	}
	return v[i+1 : j]
}

// removeTrigger returns the header with trigger (compared without
// regard to ASCII case) taken out of the Subject field, and whether it
// was there. Only the first Subject field is looked at; the spaces the
// trigger leaves are collapsed.
func (h *header) removeTrigger(trigger string) ([]byte, bool) {
	if trigger == "" {
		return h.raw, false
	}
	var out []byte
	found := false
	for i, f := range h.fields {
		if found || !strings.EqualFold(f.name, "Subject") {
			continue
		}
		nf, ok := stripTrigger(f, trigger)
		if !ok {
			break // only the first Subject counts
		}
		found = true
		for j, g := range h.fields {
			if j == i {
				out = append(out, nf...)
			} else {
				out = append(out, g.raw...)
			}
		}
		// The rest of the block: the empty line, when there is one.
		var n int
		for _, g := range h.fields {
			n += len(g.raw)
		}
		out = append(out, h.raw[n:]...)
	}
	if !found {
		return h.raw, false
	}
	return out, true
}

// stripTrigger rewrites one Subject field without the trigger, unfolded
// onto one line with the field's own line ending.
func stripTrigger(f field, trigger string) ([]byte, bool) {
	v := f.value()
	encode := func(s string) string { return s }
	// A mail program writes a Subject with any non-ASCII character as
	// encoded words (RFC 2047), the trigger included: look in the
	// decoded text, and write what is left encoded again.
	if dec, err := (&mime.WordDecoder{CharsetReader: charset.Reader}).DecodeHeader(v); err == nil && dec != v {
		v = dec
		encode = func(s string) string { return mime.QEncoding.Encode("utf-8", s) }
	}
	i := indexFold(v, trigger)
	if i < 0 {
		return nil, false
	}
	rest := strings.Join(strings.Fields(v[:i]+" "+v[i+len(trigger):]), " ")
	eol := "\r\n"
	if !bytes.HasSuffix(f.raw, []byte("\r\n")) {
		eol = "\n"
	}
	return []byte(f.name + ": " + encode(rest) + eol), true
}

// indexFold is strings.Index ignoring ASCII case (byte offsets stay
// those of s: only A-Z change).
func indexFold(s, sub string) int {
	if sub == "" {
		return -1
	}
	return strings.Index(asciiLower(s), asciiLower(sub))
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
