package archive

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/smimed/smimed/harvest"
)

// FuzzUserCopy feeds arbitrary messages and arbitrary strings from the
// report (which come from the sender's certificate and message) through
// UserCopy. Whatever comes in, the copy's header must hold each of our
// fields exactly once, on top, free of bare CR and NUL, with a grammatical
// Authentication-Results, and the body must be the message's body.
func FuzzUserCopy(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("..", "testdata", "msg", "*.eml"))
	for _, s := range seeds {
		if data, err := os.ReadFile(s); err == nil {
			f.Add(data, "alice@partner.example", "", "INBOX", uint8(0))
		}
	}
	for _, nl := range []string{"\r\n", "\n"} {
		h, _ := hostileHeader(nl)
		f.Add([]byte(h+nl+"body"+nl), "Evil \"CEO\"\r\nX-Smimed-Source: x", "a\\b\x00", "Archiv/Größe", uint8(3))
	}
	f.Add([]byte(""), "", "", "", uint8(1))
	f.Add([]byte(" X-Smimed-Source: f\r\n\rX-Smimed-Decryption: x\r\nAuthentication-Results: (a\\)b) \"mx.example.org\"; x=y\r\n\r\n"), "\xff", "\u2028", "\x00", uint8(2))
	f.Add([]byte("no header at all"), "a@b", "r", "f", uint8(4))
	f.Add([]byte("Subject: x\rX-Smimed-Source: f\r\nAuthentication-Results\r\n :mx.example.org;\r\n\r\nb"), "a@b", "r", "f", uint8(5))

	statuses := []string{harvest.StatusValid, harvest.StatusInvalid, harvest.StatusUntrusted,
		harvest.StatusExpired, harvest.StatusRevoked, harvest.StatusMismatch, harvest.StatusError, "other"}
	decryptions := []string{harvest.DecryptOK, harvest.DecryptFailed, harvest.DecryptNone, ""}

	f.Fuzz(func(t *testing.T, msg []byte, signer, reason, folder string, sel uint8) {
		rep := &harvest.Report{Decryption: harvest.Decryption{
			Status: decryptions[int(sel)%len(decryptions)], Cipher: reason, KeyTransport: signer,
			Key: signer, Error: reason,
		}}
		for i := range int(sel>>4) % 3 {
			rep.Signatures = append(rep.Signatures, harvest.Signature{
				Status: statuses[(int(sel)+i)%len(statuses)], Signer: signer, Reason: reason,
				Fingerprint: reason, Digest: signer, WeakDigest: sel&8 != 0,
			})
		}
		src := Source{Account: signer, Folder: folder, UIDValidity: 7, UID: uint32(sel)}
		in := bytes.Clone(msg)
		out := UserCopy(msg, rep, src, testAuthserv)
		if !bytes.Equal(in, msg) {
			t.Fatal("UserCopy() changed its input")
		}

		header, body, hasBody := fuzzSplit(out)
		fields := fuzzFields(header)
		if len(fields) < 3 {
			t.Fatalf("output header has %d fields, want ours on top:\n%q", len(fields), out)
		}
		for i, name := range []string{authResultsField, UserCopySourceField, UserCopyDecryptionField} {
			f := fields[i]
			if n, _ := fuzzName(f); !strings.EqualFold(n, name) {
				t.Fatalf("field %d is %q, want %s:\n%q", i, f, name, out)
			}
			if bytes.IndexByte(f, 0) >= 0 {
				t.Errorf("NUL in our field %q", f)
			}
			for j, c := range f {
				if c == '\r' && (j+1 == len(f) || f[j+1] != '\n') {
					t.Errorf("bare CR in our field %q", f)
				}
				if c < ' ' && c != '\r' && c != '\n' || c == 0x7f {
					t.Errorf("control byte %#x in our field %q", c, f)
				}
			}
			if !utf8.Valid(f) {
				t.Errorf("invalid UTF-8 in our field %q", f)
			}
			if len(f) > 0 && f[len(f)-1] != '\n' {
				t.Errorf("our field %q does not end a line", f)
			}
		}
		_, v := fuzzName(fields[0])
		if _, _, err := parseAuthResForTest(v); err != nil {
			t.Errorf("our Authentication-Results %q: %v", v, err)
		}

		counts := map[string]int{}
		for _, f := range fields {
			name, v := fuzzName(f)
			name = strings.ToLower(name)
			if name == strings.ToLower(authResultsField) {
				if id, err := authservIDForTest(v); err != nil || !strings.EqualFold(id, testAuthserv) {
					continue
				}
			}
			counts[name]++
		}
		for _, name := range []string{authResultsField, UserCopySourceField, UserCopyDecryptionField} {
			if n := counts[strings.ToLower(name)]; n != 1 {
				t.Errorf("%s (ours) occurs %d times in the output header, want 1:\n%q", name, n, out)
			}
		}

		inHeader, inBody, inHasBody := fuzzSplit(msg)
		switch {
		case inHasBody:
			if !hasBody || !bytes.Equal(body, inBody) {
				t.Errorf("body = %q, want %q", body, inBody)
			}
		case hasBody && len(body) > 0:
			// A message without an empty line that is not a header is
			// kept whole as the body.
			if !bytes.Equal(body, msg) {
				t.Errorf("body = %q, want the whole message %q", body, msg)
			}
		}
		// Nothing is added but our fields and line ends.
		if len(out) > len(fields[0])+len(fields[1])+len(fields[2])+len(msg)+4 {
			t.Errorf("output of %d bytes from %d of input (header %d)", len(out), len(msg), len(inHeader))
		}
	})
}

// fuzzSplit splits a message at its first empty line (LF or CRLF); body
// is what follows that line.
func fuzzSplit(msg []byte) (header, body []byte, ok bool) {
	start := 0
	for start <= len(msg) {
		end := bytes.IndexByte(msg[start:], '\n')
		if end < 0 {
			break
		}
		line := msg[start : start+end+1]
		if bytes.Equal(line, []byte("\n")) || bytes.Equal(line, []byte("\r\n")) {
			return msg[:start], msg[start+end+1:], true
		}
		start += end + 1
	}
	return msg, nil, false
}

// fuzzFields splits a header into fields as a parser that takes CR, LF and
// CRLF as line ends would (the strictest view for our purpose: it sees
// the most fields). A line that starts with a space or tab continues the
// field before it.
func fuzzFields(header []byte) [][]byte {
	var fields [][]byte
	for len(header) > 0 {
		end := bytes.IndexAny(header, "\r\n")
		switch {
		case end < 0:
			end = len(header)
		case header[end] == '\r' && end+1 < len(header) && header[end+1] == '\n':
			end += 2
		default:
			end++
		}
		line := header[:end]
		header = header[end:]
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1] = append(fields[len(fields)-1], line...)
		} else {
			fields = append(fields, bytes.Clone(line))
		}
	}
	return fields
}

// fuzzName returns a field's name (white space before the colon
// trimmed) and its unfolded value.
func fuzzName(f []byte) (name, value string) {
	n, v, ok := bytes.Cut(f, []byte(":"))
	if !ok {
		return "", ""
	}
	v = bytes.ReplaceAll(v, []byte("\r"), nil)
	v = bytes.ReplaceAll(v, []byte("\n"), nil)
	return string(bytes.Trim(n, " \t")), strings.Trim(string(v), " \t")
}
