package harvest

// This file decodes the base64 transfer encoding (RFC 2045 section 6.8)
// of MIME bodies. An encrypted message is its ciphertext in base64, so
// decoding costs about as much as decrypting: the common case (runs of
// alphabet characters between line breaks) goes through a table of
// character pairs, and everything else through encoding/base64, so that
// what is accepted and the errors stay those of the standard decoder.

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
)

// decodeBase64 decodes base64 that may be wrapped and may carry stray
// whitespace, straight into one buffer sized from the input (no cleaned
// copy of the input: a big attachment must not cost its size twice).
// Missing final padding is tolerated.
func decodeBase64(in []byte) ([]byte, error) {
	return decodeBase64Room(in, 0)
}

// decodeBase64Room is decodeBase64 into a buffer that keeps room bytes
// free before the decoded data: it returns the whole buffer, the data
// being buf[room:].
//
// The input is read as runs of non-whitespace. Each run, after topping up
// the characters left over from the previous run to a quantum, is decoded
// as the standard decoder decodes it (padding ends a run, not the input);
// the characters after its last whole quantum are carried to the next.
func decodeBase64Room(in []byte, room int) ([]byte, error) {
	out := make([]byte, room, room+len(in)/4*3+3)
	var carry [4]byte // characters left over from the previous run
	nc := 0
	decode := func(src []byte) error {
		n, err := base64.StdEncoding.Decode(out[len(out):cap(out)], src)
		if err != nil {
			return fmt.Errorf("base64 body: %v", err)
		}
		out = out[:len(out)+n]
		return nil
	}
	for len(in) > 0 {
		for len(in) > 0 && isB64Space(in[0]) {
			in = in[1:]
		}
		for nc > 0 && nc < 4 && len(in) > 0 && !isB64Space(in[0]) {
			carry[nc] = in[0]
			nc++
			in = in[1:]
		}
		if nc == 4 {
			if err := decode(carry[:]); err != nil {
				return nil, err
			}
			nc = 0
		}
		done := 0 // characters of the run at in decoded
		if nc == 0 {
			// Whole runs of quanta of alphabet characters, then the
			// leading ones of the run the fast path stopped in.
			n, read, run := decodeB64Quanta(out[len(out):cap(out)], in)
			out = out[:len(out)+n]
			in, done = in[run:], read-run
		}
		// The rest of the run's whole quanta, with the standard decoder.
		end := done
		for end < len(in) && !isB64Space(in[end]) {
			end++
		}
		whole := done + (end-done)/4*4
		if whole > done {
			if err := decode(in[done:whole]); err != nil {
				// Report the error as the standard decoder does for the
				// whole run.
				_, err = base64.StdEncoding.Decode(make([]byte, whole/4*3), in[:whole])
				return nil, fmt.Errorf("base64 body: %v", err)
			}
		}
		nc += copy(carry[nc:], in[whole:end])
		in = in[end:]
	}
	if nc > 0 {
		pad := carry[:nc]
		if nc >= 2 {
			pad = append(pad, "=="[:4-nc]...)
		}
		if err := decode(pad); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func isB64Space(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// b64Pairs maps two characters (the first in the high byte) to the 12 bits
// they encode; b64Bad marks a pair with a character outside the alphabet
// ('=' included). 128 KiB, of which real input touches about 25.
var b64Pairs = func() *[1 << 16]uint16 {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	var value [256]int
	for i := range value {
		value[i] = -1
	}
	for i := 0; i < len(alphabet); i++ {
		value[alphabet[i]] = i
	}
	t := new([1 << 16]uint16)
	for i := range t {
		hi, lo := value[i>>8], value[i&0xff]
		if hi < 0 || lo < 0 {
			t[i] = b64Bad
		} else {
			t[i] = uint16(hi<<6 | lo)
		}
	}
	return t
}()

const b64Bad = 0x8000

// decodeB64Quanta decodes quanta of alphabet characters from the start of
// src into dst, as the standard decoder would, skipping the whitespace
// between runs that end on a quantum. It stops at the first quantum with
// anything else (whitespace inside it, padding, a bad character) or when
// dst is short, and returns the bytes written, the characters read and
// where the run it stopped in starts (read-run characters of it were
// decoded, a multiple of 4).
func decodeB64Quanta(dst, src []byte) (n, read, run int) {
	t := b64Pairs
	for {
		for len(src)-read >= 8 && len(dst)-n >= 8 {
			s := src[read : read+8 : read+8]
			a := t[uint16(s[0])<<8|uint16(s[1])]
			b := t[uint16(s[2])<<8|uint16(s[3])]
			c := t[uint16(s[4])<<8|uint16(s[5])]
			d := t[uint16(s[6])<<8|uint16(s[7])]
			if (a|b|c|d)&b64Bad != 0 {
				break
			}
			// 48 bits; the two bytes after them are overwritten later.
			binary.BigEndian.PutUint64(dst[n:], uint64(a)<<52|uint64(b)<<40|uint64(c)<<28|uint64(d)<<16)
			n += 6
			read += 8
		}
		for len(src)-read >= 4 && len(dst)-n >= 3 {
			s := src[read : read+4 : read+4]
			a := t[uint16(s[0])<<8|uint16(s[1])]
			b := t[uint16(s[2])<<8|uint16(s[3])]
			if (a|b)&b64Bad != 0 {
				break
			}
			v := uint32(a)<<12 | uint32(b)
			d := dst[n : n+3 : n+3]
			d[0], d[1], d[2] = byte(v>>16), byte(v>>8), byte(v)
			n += 3
			read += 4
		}
		if read == len(src) || !isB64Space(src[read]) {
			return n, read, run
		}
		for read < len(src) && isB64Space(src[read]) {
			read++
		}
		run = read
	}
}
