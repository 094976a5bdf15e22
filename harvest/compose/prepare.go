package compose

// Preparing an entity for signing (RFC 8551 section 3.1): a signature
// must survive transport, so what is signed uses 7bit transfer encodings
// only, lines of at most 998 octets and CRLF line breaks (RFC 5322
// section 2.1.1, RFC 8551 sections 3.1.1 and 3.1.2). Parts that already
// meet this are kept byte for byte (with CRLF); other leaves are encoded:
// quoted-printable for text/*, base64 for the rest. Multiparts and
// message/rfc822 are walked down to their leaves.

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime/quotedprintable"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// ErrSignedEightBit is returned for a multipart/signed inside the message
// whose content is not 7bit: it cannot be re-encoded without breaking its
// signature, nor signed as it is.
var ErrSignedEightBit = errors.New("compose: a signed part holds 8bit data")

// ErrUnsupportedEncoding is returned for a part whose transfer encoding
// is unknown and whose content is not 7bit already: it cannot be
// re-encoded without knowing what it means.
var ErrUnsupportedEncoding = errors.New("compose: unknown content transfer encoding")

// maxDepth bounds the nesting of multiparts and messages.
const maxDepth = 32

// maxLine is the longest line RFC 5322 allows, without its CRLF.
const maxLine = 998

type preparer struct {
	tempDir string
}

// entity writes the entity of header h and body to w, prepared for
// signing.
func (p *preparer) entity(w io.Writer, h header, body io.Reader, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: more than %d nested parts", ErrMalformed, maxDepth)
	}
	h, err := h.sevenBit()
	if err != nil {
		return err
	}
	mt, params := h.contentType()
	cte := strings.ToLower(strings.TrimSpace(h.get("Content-Transfer-Encoding")))
	identity := cte == "" || cte == "7bit" || cte == "8bit" || cte == "binary"
	switch {
	case mt == "multipart/signed" && identity:
		// RFC 1847: a signed multipart is passed on byte for byte, or its
		// signature breaks.
		return p.opaque(w, h, body)
	case strings.HasPrefix(mt, "multipart/") && params["boundary"] != "" && identity:
		if cte != "" {
			h = h.del("Content-Transfer-Encoding")
		}
		return p.multipart(w, h, body, params["boundary"], depth)
	case (mt == "message/rfc822" || mt == "message/global") && identity:
		if cte != "" {
			h = h.del("Content-Transfer-Encoding")
		}
		br := bufio.NewReader(body)
		inner, err := readHeader(br)
		if err == nil {
			if err := h.write(w); err != nil {
				return err
			}
			return p.entity(w, inner, br, depth+1)
		}
		// Not a readable message: carry it as data.
		return p.leaf(w, h, io.MultiReader(bufferedPrefix(br), br), "application/octet-stream", cte)
	}
	return p.leaf(w, h, body, mt, cte)
}

// bufferedPrefix is what br has buffered (after a failed header read).
func bufferedPrefix(br *bufio.Reader) io.Reader {
	b, _ := br.Peek(br.Buffered())
	return strings.NewReader(string(b))
}

func (p *preparer) multipart(w io.Writer, h header, body io.Reader, boundary string, depth int) error {
	// The parts are written with a boundary of our own: no line of a
	// re-encoded part can be mistaken for it.
	mr := textproto.NewMultipartReader(body, boundary)
	boundary, err := newBoundary()
	if err != nil {
		return err
	}
	if err := h.withParam("boundary", boundary).write(w); err != nil {
		return err
	}
	first := true
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: multipart: %v", ErrMalformed, err)
		}
		sep := "\r\n--" + boundary + "\r\n"
		if first {
			sep = "--" + boundary + "\r\n"
			first = false
		}
		if _, err := io.WriteString(w, sep); err != nil {
			return err
		}
		var ph header
		for fs := part.Header.Fields(); fs.Next(); {
			raw, err := fs.Raw()
			if err != nil {
				return fmt.Errorf("%w: part header: %v", ErrMalformed, err)
			}
			ph = append(ph, field{key: fs.Key(), value: fs.Value(), raw: canonicalLine(raw)})
		}
		if err := p.entity(w, ph, part, depth+1); err != nil {
			return err
		}
	}
	if first {
		// A multipart without parts cannot be written back as one.
		return fmt.Errorf("%w: multipart without parts", ErrMalformed)
	}
	_, err = io.WriteString(w, "\r\n--"+boundary+"--\r\n")
	return err
}

// leaf writes a leaf part: its body as it is (CRLF line breaks) when that
// is 7bit already, else re-encoded.
func (p *preparer) leaf(w io.Writer, h header, body io.Reader, mt, cte string) error {
	sp := newSpool(p.tempDir)
	defer sp.Close()
	chk := &sevenBitCheck{w: sp}
	if _, err := io.Copy(chk, body); err != nil {
		return fmt.Errorf("%w: part body: %v", ErrMalformed, err)
	}
	raw, err := sp.Reader()
	if err != nil {
		return err
	}
	if chk.ok() {
		if cte == "8bit" || cte == "binary" {
			h = h.set("Content-Transfer-Encoding", "7bit")
		}
		if err := h.write(w); err != nil {
			return err
		}
		c := &crlfWriter{w: w}
		_, err := io.Copy(c, raw)
		return err
	}
	var decoded io.Reader
	switch cte {
	case "", "7bit", "8bit", "binary":
		decoded = raw
	case "base64":
		decoded = base64.NewDecoder(base64.StdEncoding, &base64Filter{r: raw})
	case "quoted-printable":
		decoded = quotedprintable.NewReader(raw)
	default:
		return fmt.Errorf("%w %q", ErrUnsupportedEncoding, cte)
	}
	text := strings.HasPrefix(mt, "text/")
	enc := "base64"
	if text {
		enc = "quoted-printable"
	}
	if err := h.set("Content-Transfer-Encoding", enc).write(w); err != nil {
		return err
	}
	var ew io.WriteCloser
	var dst io.Writer
	if text {
		ew = quotedprintable.NewWriter(w)
		dst = &lineBreakWriter{w: ew}
	} else {
		ew = newBase64Writer(w)
		dst = ew
	}
	if _, err := io.Copy(dst, decoded); err != nil {
		return fmt.Errorf("%w: part body (%s): %v", ErrMalformed, cte, err)
	}
	return ew.Close()
}

// sevenBitCheck passes bytes on and records whether they are 7bit data
// (RFC 2045 section 2.7): no octet over 127, no NUL, CR only before LF,
// lines of at most 998 octets.
type sevenBitCheck struct {
	w      io.Writer
	bad    bool
	line   int
	prevCR bool
}

func (c *sevenBitCheck) Write(p []byte) (int, error) {
	if !c.bad {
		for _, b := range p {
			if c.prevCR && b != '\n' {
				c.bad = true
				break
			}
			switch {
			case b == '\n':
				c.line = 0
			case b == '\r':
			case b == 0 || b >= 0x80:
				c.bad = true
			default:
				c.line++
				if c.line > maxLine {
					c.bad = true
				}
			}
			c.prevCR = b == '\r'
			if c.bad {
				break
			}
		}
	}
	return c.w.Write(p)
}

func (c *sevenBitCheck) ok() bool { return !c.bad && !c.prevCR }

// base64Filter drops what is not base64 alphabet or padding, as RFC 2045
// section 6.8 tells decoders to, so that line breaks and stray characters
// do not stop the decoder.
type base64Filter struct{ r io.Reader }

func (f *base64Filter) Read(p []byte) (int, error) {
	for {
		n, err := f.r.Read(p)
		k := 0
		for _, b := range p[:n] {
			if b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '+' || b == '/' || b == '=' {
				p[k] = b
				k++
			}
		}
		if k > 0 || err != nil {
			return k, err
		}
	}
}

// opaque writes an entity whose body must not change (multipart/signed):
// as it is, with CRLF line breaks, when it is 7bit.
func (p *preparer) opaque(w io.Writer, h header, body io.Reader) error {
	sp := newSpool(p.tempDir)
	defer sp.Close()
	chk := &sevenBitCheck{w: sp}
	if _, err := io.Copy(chk, body); err != nil {
		return fmt.Errorf("%w: part body: %v", ErrMalformed, err)
	}
	if !chk.ok() {
		return ErrSignedEightBit
	}
	raw, err := sp.Reader()
	if err != nil {
		return err
	}
	if err := h.write(w); err != nil {
		return err
	}
	_, err = io.Copy(&crlfWriter{w: w}, raw)
	return err
}
