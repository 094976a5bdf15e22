package cms

import (
	"errors"
	"fmt"
)

// ErrMalformed is returned for CMS structures that cannot be parsed.
var ErrMalformed = errors.New("cms: malformed structure")

// maxBERDepth bounds the nesting of constructed values, so hostile input
// cannot exhaust the stack.
const maxBERDepth = 64

// ToDER rewrites a BER encoding (RFC 5652 permits BER; Outlook and
// `openssl cms -stream` send indefinite lengths and chunked OCTET STRINGs)
// into DER-style definite lengths that encoding/asn1 accepts. Constructed
// universal OCTET STRINGs and BIT STRINGs are joined into one primitive
// value. Context-specific constructed values are kept constructed, because
// whether they hold an IMPLICIT string is only known to the caller
// (see JoinImplicitOctets). Input that is already DER comes out unchanged.
//
// Only one value is read; trailing bytes are an error.
func ToDER(in []byte) ([]byte, error) {
	// Headroom for the lengths reserved while values are open, so that
	// the buffer is normally allocated once.
	out := make([]byte, 0, len(in)+5*maxBERDepth+64)
	out, rest, err := berValue(out, in, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes after BER value", ErrMalformed, len(rest))
	}
	return out, nil
}

// normalize is ToDER for callers that only read the result: input that is
// already in the form ToDER writes is returned as it is, without a copy
// (a big encrypted message would otherwise cost its size once more).
func normalize(in []byte) ([]byte, error) {
	if rest, ok := isNormal(in, 0); ok && len(rest) == 0 {
		return in, nil
	}
	return ToDER(in)
}

// isNormal reports whether berValue would copy the first value of in
// unchanged (definite, shortest lengths; no constructed universal OCTET
// STRING or BIT STRING), and returns the input after it. Anything else,
// errors included, is left to berValue.
func isNormal(in []byte, depth int) ([]byte, bool) {
	if depth > maxBERDepth {
		return nil, false
	}
	h, rest, err := readBERHeader(in)
	if err != nil || h.indefinite {
		return nil, false
	}
	var lb [5]byte
	if l := appendLength(lb[:0], h.length); len(in)-len(rest) != len(h.idBytes)+len(l) {
		return nil, false // a longer length form than needed
	}
	body, rest := rest[:h.length], rest[h.length:]
	if !h.constructed {
		return rest, true
	}
	if h.class == 0 && (h.tag == 4 || h.tag == 3) {
		return nil, false
	}
	for len(body) > 0 {
		var ok bool
		if body, ok = isNormal(body, depth+1); !ok {
			return nil, false
		}
	}
	return rest, true
}

type berHeader struct {
	class, tag  int
	constructed bool
	indefinite  bool
	length      int
	idBytes     []byte // the identifier octets, as read
}

func readBERHeader(in []byte) (berHeader, []byte, error) {
	var h berHeader
	if len(in) < 2 {
		return h, nil, fmt.Errorf("%w: truncated BER header", ErrMalformed)
	}
	i := 0
	b := in[i]
	i++
	h.class = int(b >> 6)
	h.constructed = b&0x20 != 0
	h.tag = int(b & 0x1f)
	if h.tag == 0x1f {
		h.tag = 0
		for n := 0; ; n++ {
			if i >= len(in) || n > 3 {
				return h, nil, fmt.Errorf("%w: bad BER tag", ErrMalformed)
			}
			b = in[i]
			i++
			h.tag = h.tag<<7 | int(b&0x7f)
			if b&0x80 == 0 {
				break
			}
		}
	}
	h.idBytes = in[:i]
	if i >= len(in) {
		return h, nil, fmt.Errorf("%w: truncated BER length", ErrMalformed)
	}
	b = in[i]
	i++
	switch {
	case b == 0x80:
		if !h.constructed {
			return h, nil, fmt.Errorf("%w: indefinite length on primitive value", ErrMalformed)
		}
		h.indefinite = true
	case b < 0x80:
		h.length = int(b)
		if h.length > len(in)-i {
			return h, nil, fmt.Errorf("%w: BER length %d exceeds the %d bytes left", ErrMalformed, h.length, len(in)-i)
		}
	default:
		n := int(b & 0x7f)
		if n > 4 || i+n > len(in) {
			return h, nil, fmt.Errorf("%w: bad BER length", ErrMalformed)
		}
		l := 0
		for j := 0; j < n; j++ {
			l = l<<8 | int(in[i+j])
		}
		i += n
		if l < 0 || l > len(in)-i {
			return h, nil, fmt.Errorf("%w: BER length %d exceeds the %d bytes left", ErrMalformed, l, len(in)-i)
		}
		h.length = l
	}
	return h, in[i:], nil
}

func appendLength(out []byte, l int) []byte {
	switch {
	case l < 0x80:
		return append(out, byte(l))
	case l < 0x100:
		return append(out, 0x81, byte(l))
	case l < 0x10000:
		return append(out, 0x82, byte(l>>8), byte(l))
	case l < 0x1000000:
		return append(out, 0x83, byte(l>>16), byte(l>>8), byte(l))
	default:
		return append(out, 0x84, byte(l>>24), byte(l>>16), byte(l>>8), byte(l))
	}
}

// berValue appends the normalised form of the first value of in to out and
// returns the remaining input. Everything is written straight into out: a
// constructed value reserves room for the longest length, its children are
// appended after it, and the content is moved back once its length is
// known. That costs some copying per nesting level but no allocation, so a
// large streamed message is normalised in about its own size.
func berValue(out, in []byte, depth int) ([]byte, []byte, error) {
	if depth > maxBERDepth {
		return nil, nil, fmt.Errorf("%w: BER nesting deeper than %d", ErrMalformed, maxBERDepth)
	}
	h, rest, err := readBERHeader(in)
	if err != nil {
		return nil, nil, err
	}
	if !h.constructed {
		out = append(out, h.idBytes...)
		out = appendLength(out, h.length)
		out = append(out, rest[:h.length]...)
		return out, rest[h.length:], nil
	}
	var body []byte
	if !h.indefinite {
		body = rest[:h.length]
		rest = rest[h.length:]
	} else {
		body = rest
	}
	// Universal OCTET STRING (4) or BIT STRING (3), constructed: join.
	joinString := h.class == 0 && (h.tag == 4 || h.tag == 3)
	if joinString {
		out = append(out, byte(h.tag)) // primitive universal tag
	} else {
		out = append(out, h.idBytes...)
	}
	lenPos := len(out)
	out = append(out, 0, 0, 0, 0, 0) // room for appendLength's longest form
	contentStart := len(out)
	for {
		if h.indefinite {
			if len(body) < 2 {
				return nil, nil, fmt.Errorf("%w: missing end-of-contents", ErrMalformed)
			}
			if body[0] == 0 && body[1] == 0 {
				body = body[2:]
				break
			}
		} else if len(body) == 0 {
			break
		}
		childStart := len(out)
		out, body, err = berValue(out, body, depth+1)
		if err != nil {
			return nil, nil, err
		}
		if joinString {
			// Keep only the chunk's payload.
			ch, _, err := readBERHeader(out[childStart:])
			if err != nil || ch.constructed || ch.class != 0 || ch.tag != h.tag {
				return nil, nil, fmt.Errorf("%w: constructed string holds a foreign value", ErrMalformed)
			}
			skip := len(out) - childStart - ch.length // the chunk's header
			if h.tag == 3 && childStart > contentStart && ch.length > 0 {
				skip++ // only the first chunk keeps its unused-bits octet
			}
			n := copy(out[childStart:], out[childStart+skip:])
			out = out[:childStart+n]
		}
	}
	if h.indefinite {
		rest = body
	}
	contentLen := len(out) - contentStart
	if uint64(contentLen) > 0xffffffff {
		return nil, nil, fmt.Errorf("%w: BER value longer than 4 GiB", ErrMalformed)
	}
	var lb [5]byte
	l := appendLength(lb[:0], contentLen)
	copy(out[lenPos:], l)
	if len(l) < len(lb) {
		n := copy(out[lenPos+len(l):], out[contentStart:])
		out = out[:lenPos+len(l)+n]
	}
	return out, rest, nil
}

// JoinImplicitOctets returns the content of an IMPLICIT OCTET STRING whose
// tag the caller has already stripped: full is the complete TLV (as from
// asn1.RawValue.FullBytes). A primitive value yields its bytes; a constructed
// one (BER chunking) the concatenation of its OCTET STRING children.
func JoinImplicitOctets(full []byte) ([]byte, error) {
	h, rest, err := readBERHeader(full)
	if err != nil {
		return nil, err
	}
	if h.indefinite {
		return nil, fmt.Errorf("%w: indefinite length left after normalisation", ErrMalformed)
	}
	body := rest[:h.length]
	if !h.constructed {
		return body, nil
	}
	var out []byte
	for len(body) > 0 {
		ch, r, err := readBERHeader(body)
		if err != nil {
			return nil, err
		}
		if ch.class != 0 || ch.tag != 4 || ch.constructed || ch.indefinite {
			return nil, fmt.Errorf("%w: chunked string holds a non-OCTET STRING", ErrMalformed)
		}
		out = append(out, r[:ch.length]...)
		body = r[ch.length:]
	}
	return out, nil
}
