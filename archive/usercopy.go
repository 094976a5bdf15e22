package archive

// The user's copy: the readable plaintext of a processed message, APPENDed
// to a folder of the user's mailbox with three header fields on top that say
// what smimed found (RFC 8601 Authentication-Results with the RFC 7281
// "smime" method), where the message came from (X-Smimed-Source, which the
// folder writer searches for so that a crash between APPEND and checkpoint
// does not make a second copy) and how it was decrypted
// (X-Smimed-Decryption).
//
// Everything in the plaintext came from the sender, so the header it brings
// is hostile: a sender must not be able to show the user a verdict of ours
// (a forged Authentication-Results with our authserv-id) or plant our
// marker (which would make the de-duplication skip the real copy). Those
// fields are removed, and every string we copy from the message into our
// own fields is stripped of line breaks and control characters.

import (
	"bytes"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/smimed/smimed/harvest"
)

// Copy modes: which processed messages get a readable copy in the user's
// folder.
const (
	UserCopyEncrypted = "encrypted" // the default
	UserCopySMIME     = "smime"
	UserCopyAll       = "all"
)

// Names of the fields UserCopy adds (besides Authentication-Results).
const (
	UserCopySourceField     = "X-Smimed-Source"
	UserCopyDecryptionField = "X-Smimed-Decryption"
	// UserCopyRecordField names the archive record (the version of the
	// message) a copy shows: with X-Smimed-Source it identifies a copy.
	UserCopyRecordField = "X-Smimed-Record"
	// UserCopySignerField says, per valid signature, who signed as the
	// CA vouches for it: the name and organization it validated, only
	// when it says it validated them, and the address.
	UserCopySignerField = "X-Smimed-Signer"
)

// signerValue is the X-Smimed-Signer value of a valid signature, "" for
// any other: "Alice Example, ACME GmbH <alice@partner.example>
// (sponsor-validated (strict) by ACME CA)", or for a CA that named no
// validation type "alice@partner.example (address only: no validation
// type named by Example CA)". A record from before validation types were
// recorded gets none.
func signerValue(sig harvest.Signature) string {
	if sig.Status != harvest.StatusValid || sig.Signer == "" || sig.Validation == "" {
		return ""
	}
	who := sig.Signer
	if sig.ValidatedName != "" {
		who = sig.ValidatedName + " <" + sig.Signer + ">"
	}
	switch {
	case sig.ValidatedBy == "":
		return who + " (no CA: a certificate pinned by an administrator)"
	case sig.Validation == harvest.ValidationUnspecified:
		return who + " (address only: no validation type named by " + sig.ValidatedBy + ")"
	}
	return who + " (" + sig.Validation + " by " + sig.ValidatedBy + ")"
}

const authResultsField = "Authentication-Results"

// WantCopy reports whether a message with report rep gets a copy in the
// user's folder under mode:
//
//   - "encrypted" (also "", the default): only a message that arrived
//     encrypted and was decrypted (rep.Decryption.Status == "ok"); the copy
//     is what makes it readable. A message whose decryption failed has
//     nothing readable to add and is never copied in this mode.
//   - "smime": a decrypted message as above, and any message with at least
//     one signature verdict (len(rep.Signatures) > 0), whatever the verdict;
//     the copy shows the user the verdict. A message whose decryption failed
//     is not copied, even when a signature outside the encryption was seen.
//   - "all": every message, including one whose decryption failed (the
//     original under our header fields, so the user sees that it arrived
//     and what went wrong).
//
// An unknown mode is treated as the default; configuration checking is
// where a misspelt mode is reported. A nil report is copied only under
// "all".
func WantCopy(mode string, rep *harvest.Report) bool {
	if mode == UserCopyAll {
		return true
	}
	if rep == nil {
		return false
	}
	switch rep.Decryption.Status {
	case harvest.DecryptOK:
		return true
	case harvest.DecryptFailed:
		return false
	}
	return mode == UserCopySMIME && len(rep.Signatures) > 0
}

// UserCopy returns the message to APPEND to the user's folder: plaintext
// (as built by the harvest engine, or the original for a message without
// S/MIME or one that could not be decrypted) with these fields on top, in
// this order:
//
//	Authentication-Results: <authservID>; smime=<result> ...   (RFC 8601, RFC 7281)
//	X-Smimed-Source: <src.Marker()>
//	X-Smimed-Decryption: ok; cipher=...; key-transport=...; key=<fingerprint>
//
// Removed from the plaintext's top-level header (everything before the
// first empty line) are every Authentication-Results field whose
// authserv-id is authservID (RFC 8601 section 5: a forgery of our own
// verdict), and every X-Smimed-Source and X-Smimed-Decryption field, each
// with its continuation lines. Other fields are kept byte for byte, with
// one exception: a lone CR (not part of CRLF) in the header becomes a
// space, as in the harvest engine's plaintext, because parsers disagree on
// whether it ends a line and so on which fields there are. A continuation
// line before the first field would continue our last field; it is
// dropped. The body is never touched.
//
// Line ends of the new fields follow the message: CRLF when its first line
// ends in CRLF, else LF. A message without an empty line is taken as a
// header without a body when every line is a header field, else as a body
// without a header: it then follows our fields and an empty line unchanged.
func UserCopy(plaintext []byte, rep *harvest.Report, src Source, authservID string) []byte {
	if rep == nil {
		rep = &harvest.Report{}
	}
	eol := "\n"
	if i := bytes.IndexByte(plaintext, '\n'); i > 0 && plaintext[i-1] == '\r' {
		eol = "\r\n"
	}

	var top strings.Builder
	writeFolded(&top, authResultsField, authResultsPieces(rep, authservID), eol)
	writeFolded(&top, UserCopySourceField, unstructuredPieces(src.Marker()), eol)
	writeFolded(&top, UserCopyDecryptionField, decryptionPieces(rep.Decryption), eol)
	for _, sig := range rep.Signatures {
		if v := signerValue(sig); v != "" {
			writeFolded(&top, UserCopySignerField, unstructuredPieces(v), eol)
		}
	}
	for _, f := range rep.Unprotected {
		writeFolded(&top, harvest.UnprotectedField(sanitize(f.Name, true, maxTokenLen)), unstructuredPieces(f.Value), eol)
	}

	return withTop(top.String(), plaintext, eol, authservID)
}

// withTop is plaintext with the fields top on top, and the fields that
// claim to be ours removed from its header (dropIncomingField), as
// UserCopy describes.
func withTop(top string, plaintext []byte, eol, authservID string) []byte {
	header, rest, hasSep := splitHeaderBlock(plaintext)
	fields, allFields := headerFieldGroups(header)
	out := make([]byte, 0, len(top)+len(plaintext)+len(eol))
	out = append(out, top...)
	if !hasSep && !allFields {
		// No header we could tell from body: keep all of it as the body.
		out = append(out, eol...)
		return append(out, plaintext...)
	}
	for _, f := range fields {
		if !dropIncomingField(f, authservID) {
			out = append(out, f...)
		}
	}
	if hasSep {
		return append(out, rest...)
	}
	// A header without a body: end its last line and add the empty line, so
	// that every parser finds the end of the header where we do.
	if n := len(out); n > 0 && out[n-1] != '\n' {
		out = append(out, eol...)
	}
	return append(out, eol...)
}

// UserCopyRecord is UserCopy with one more field on top,
// "X-Smimed-Record: <id>", naming the archive record the copy shows, so
// that the copy of a re-processed message (a new record) is told apart
// from the copy of its earlier version even when both read the same.
func UserCopyRecord(plaintext []byte, rep *harvest.Report, src Source, authservID string, id uint64) []byte {
	out := UserCopy(plaintext, rep, src, authservID)
	eol := "\n"
	if i := bytes.IndexByte(out, '\n'); i > 0 && out[i-1] == '\r' {
		eol = "\r\n"
	}
	field := UserCopyRecordField + ": " + strconv.FormatUint(id, 10) + eol
	return append([]byte(field), out...)
}

// splitHeaderBlock splits msg at its first empty line ("\n" or "\r\n"):
// header is everything before it, rest the empty line and the body.
func splitHeaderBlock(msg []byte) (header, rest []byte, ok bool) {
	for pos := 0; pos < len(msg); {
		j := bytes.IndexByte(msg[pos:], '\n')
		if j < 0 {
			break
		}
		line := msg[pos : pos+j+1]
		if len(line) == 1 || (len(line) == 2 && line[0] == '\r') {
			return msg[:pos], msg[pos:], true
		}
		pos += j + 1
	}
	return msg, nil, false
}

// headerFieldGroups splits a header block into fields, each with its
// continuation lines, after making every lone CR a space (a copy: the
// caller's bytes are not changed). Continuation lines before the first
// field are dropped. allFields reports whether every group has a colon,
// i.e. looks like a header field and not like text.
func headerFieldGroups(header []byte) (groups [][]byte, allFields bool) {
	if bytes.IndexByte(header, '\r') >= 0 {
		h := bytes.Clone(header)
		for i, c := range h {
			if c == '\r' && (i+1 == len(h) || h[i+1] != '\n') {
				h[i] = ' '
			}
		}
		header = h
	}
	allFields = true
	for len(header) > 0 {
		end := 0
		for {
			j := bytes.IndexByte(header[end:], '\n')
			if j < 0 {
				end = len(header)
				break
			}
			end += j + 1
			if end >= len(header) || (header[end] != ' ' && header[end] != '\t') {
				break
			}
		}
		g := header[:end]
		header = header[end:]
		if g[0] == ' ' || g[0] == '\t' {
			continue // an orphan continuation: it would extend our last field
		}
		if bytes.IndexByte(firstLine(g), ':') < 0 {
			allFields = false
		}
		groups = append(groups, g)
	}
	return groups, allFields
}

func firstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i]
	}
	return b
}

// dropIncomingField tells whether a header field of the incoming message
// claims to be ours: one of our X-Smimed fields, or an
// Authentication-Results with our authserv-id — as the most lenient
// reader would see it, since dropping a forged field too many costs
// nothing and one too few shows the user a verdict we did not give.
func dropIncomingField(f []byte, authservID string) bool {
	// The name is what precedes the colon, unfolded: RFC 5322 obs-optional
	// allows white space before the colon and parsers accept it (go-message
	// trims it). A lenient parser (Dovecot's, whose SEARCH HEADER finds our
	// marker) takes a line without a colon as a field of that name, with
	// the continuation lines as its value; so "X-Smimed-Source" alone on a
	// line, or with the colon on the next line, goes too. Readers that
	// skip NUL or other control bytes in a name exist: every byte that
	// cannot be part of a field name (RFC 5322 ftext is printable ASCII
	// but the colon) is left out before comparing.
	name, value, _ := bytes.Cut(f, []byte(":"))
	name = bytes.Map(func(r rune) rune {
		if r <= ' ' || r >= 0x7f {
			return -1
		}
		return r
	}, name)
	switch {
	case asciiEqualFold(name, UserCopySourceField), asciiEqualFold(name, UserCopyDecryptionField), asciiEqualFold(name, UserCopyRecordField),
		asciiEqualFold(name, UserCopySignerField), asciiEqualFold(name, OutgoingField):
		return true
	case len(name) > len(unprotectedPrefix) && asciiEqualFold(name[:len(unprotectedPrefix)], unprotectedPrefix):
		// Ours come from the report (the engine's own), never the sender.
		return true
	case asciiEqualFold(name, authResultsField):
		id, ok := authservIDOf(withoutControls(value))
		return ok && authservKey(id) == authservKey(sanitize(authservID, true, 0))
	}
	return false
}

// withoutControls drops NUL, DEL and the C0 controls but TAB, CR and LF
// (which are folding white space) from a field value, as readers that
// skip such bytes see it.
func withoutControls(v []byte) []byte {
	return bytes.Map(func(r rune) rune {
		if (r < ' ' && r != '\t' && r != '\r' && r != '\n') || r == 0x7f {
			return -1
		}
		return r
	}, v)
}

// authservKey is an authserv-id as compared with ours: ASCII lower case,
// without the white space a quoted-string may hold around it and without
// trailing dots ("mx.example.org." is the same DNS name).
func authservKey(id string) string {
	id = strings.TrimRight(strings.Trim(id, " \t"), ".")
	b := []byte(id)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// asciiEqualFold compares case-insensitively in ASCII only, as mail
// software compares field names; strings.EqualFold would also match
// Unicode look-alikes such as U+017F for "s".
func asciiEqualFold(a []byte, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// authservIDOf returns the authserv-id at the start of an
// Authentication-Results field value (RFC 8601 section 2.2:
// [CFWS] authserv-id, where authserv-id is an RFC 2045 value: a token or a
// quoted-string). Comments and folding white space before it are skipped;
// what follows it (a version, the results) does not matter. ok is false
// when there is no id to read.
func authservIDOf(v []byte) (id string, ok bool) {
	i := skipCFWS(v, 0)
	if i >= len(v) {
		return "", false
	}
	if v[i] == '"' {
		var b strings.Builder
		for i++; i < len(v); i++ {
			switch c := v[i]; c {
			case '"':
				return b.String(), true
			case '\\':
				if i+1 < len(v) {
					i++
					b.WriteByte(v[i])
				}
			case '\r', '\n':
				// folding inside the quoted-string
			default:
				b.WriteByte(c)
			}
		}
		return "", false // unterminated
	}
	j := i
	for j < len(v) && isTokenChar(v[j]) {
		j++
	}
	return string(v[i:j]), j > i
}

// skipCFWS skips white space, line ends and (nested) comments from i.
func skipCFWS(v []byte, i int) int {
	depth := 0
	for ; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\' && depth > 0:
			i++ // quoted-pair inside a comment
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth > 0, c == ' ', c == '\t', c == '\r', c == '\n':
		default:
			return i
		}
	}
	return i
}

// isTokenChar tells RFC 2045 token characters: US-ASCII printable, not
// space, not tspecials.
func isTokenChar(c byte) bool {
	return c > ' ' && c < 0x7f && !strings.ContainsRune(`()<>@,;:\"/[]?=`, rune(c))
}

// piece is an unbreakable part of a field value; a field is folded only in
// the single space before a piece.
type piece struct {
	text    string
	newLine bool // always start this piece on a new line
}

// unprotectedPrefix starts the names of the fields that keep an outer
// header value differing from the protected one (harvest.UnprotectedField).
var unprotectedPrefix = harvest.UnprotectedField("")

// maxLine is the line length RFC 5322 section 2.1.1 recommends.
const maxLine = 78

// writeFolded writes "name: p1 p2 ...", folding before a piece whenever the
// line would get longer than maxLine (RFC 5322 section 3.2.2: FWS is the
// line end followed by the space that was there). Never before the first
// piece nor before an empty one, so no line holds only white space.
func writeFolded(b *strings.Builder, name string, pieces []piece, eol string) {
	b.WriteString(name)
	b.WriteByte(':')
	n := len(name) + 1
	for i, p := range pieces {
		if i > 0 && p.text != "" && (p.newLine || n+1+len(p.text) > maxLine) {
			b.WriteString(eol)
			n = 0
		}
		b.WriteByte(' ')
		b.WriteString(p.text)
		n += 1 + len(p.text)
	}
	b.WriteString(eol)
}

// unstructuredPieces splits a sanitised unstructured value at its spaces,
// which are the only places it may be folded.
func unstructuredPieces(s string) []piece {
	parts := strings.Split(sanitize(s, false, 0), " ")
	ps := make([]piece, len(parts))
	for i, p := range parts {
		ps[i] = piece{text: p}
	}
	return ps
}

// Limits for strings from the message; longer ones are cut, so a hostile
// message cannot make a header line longer than RFC 5322 allows.
const (
	maxSignerLen  = 254 // the longest address SMTP can carry (RFC 5321 4.5.3.1)
	maxReasonLen  = 200
	maxTokenLen   = 64
	maxSignatures = 20
)

// sanitize makes s fit for a header field value: invalid UTF-8 becomes
// U+FFFD, control characters (CR, LF, NUL, TAB, DEL, C1) and the Unicode
// line and paragraph separators become a space, and with asciiOnly every
// non-ASCII character becomes '?'. Runs of spaces are kept (a folder name
// may have them), leading and trailing ones are not. max > 0 cuts the
// result to at most max bytes, at a character boundary.
func sanitize(s string, asciiOnly bool, max int) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == utf8.RuneError:
			// Either invalid UTF-8 or a literal U+FFFD; both print the same.
			if asciiOnly {
				r = '?'
			}
		case unicode.IsControl(r), r == '\u2028', r == '\u2029':
			r = ' '
		case asciiOnly && r >= utf8.RuneSelf:
			r = '?'
		}
		if max > 0 && b.Len()+utf8.RuneLen(r) > max {
			break
		}
		b.WriteRune(r)
	}
	return strings.Trim(b.String(), " ")
}

// mimeValue renders an ASCII string as an RFC 2045 value: a token when it
// is one, else a quoted-string with '"' and '\' escaped (RFC 822
// quoted-pair).
func mimeValue(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool { return r > 0x7f || !isTokenChar(byte(r)) }) < 0 {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := range len(s) {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// smimeResult maps a verdict status to an RFC 7281 section 3 result. The
// definitions there: pass = signed, acceptable to the ADMD, verified; fail =
// acceptable to the ADMD but failed verification; policy = some aspect of
// the signature was not acceptable to the ADMD; neutral = syntax errors or
// otherwise not processable, and other failures; permerror = could not be
// verified, unrecoverably.
//
//   - valid → pass.
//   - invalid → fail: the digest or signature does not match (or is a
//     rejected SHA-1 one); the verification test itself failed.
//   - mismatch → policy: the signature verifies and the chain holds, but
//     the From address is not in the certificate; binding the signer to
//     From is our policy (RFC 8550 section 3), not part of verifying CMS.
//   - untrusted → policy, not neutral: the engine judges a chain only after
//     the signature verified (docs/verdicts.md, "How verdicts are decided"), so the
//     signature was processed and is cryptographically sound; what is not
//     acceptable is the certificate (no chain to one of our anchors, or not
//     allowed to sign mail). Which anchors to trust is the ADMD's choice,
//     i.e. policy. neutral is for signatures that could not be processed.
//   - expired → policy, not fail: the signature matches too; the
//     certificate was not valid at the time we chose to judge it at (the
//     sender-asserted signing time, or receipt when that is not believable),
//     a choice of ours. fail would put it beside a forged signature.
//   - partial → policy: the signature verifies, the chain and the From
//     binding hold, but it covers only part of what a mail client shows
//     (an unsigned part beside the signed one); that we accept only
//     signatures over everything shown is our rule. The reason names what
//     is not signed.
//   - revoked → fail: the issuer has withdrawn the key; no local choice can
//     make the signature acceptable, and RFC 5280 path validation fails.
//   - error → permerror: the structure cannot be judged (missing signature
//     part, malformed attributes, unsupported algorithm, signer certificate
//     missing); processing the same bytes again gives the same answer.
//     neutral would also be allowed for the malformed cases; permerror tells
//     a filter that no later attempt will help.
//   - anything else → neutral, RFC 7281's result for "other failures".
func smimeResult(status string) string {
	switch status {
	case harvest.StatusValid:
		return "pass"
	case harvest.StatusInvalid, harvest.StatusRevoked:
		return "fail"
	case harvest.StatusMismatch, harvest.StatusUntrusted, harvest.StatusExpired, harvest.StatusPartial:
		return "policy"
	case harvest.StatusError:
		return "permerror"
	}
	return "neutral"
}

// defaultReason explains a verdict when the engine gave no reason.
var defaultReason = map[string]string{
	harvest.StatusInvalid:   "signature does not match",
	harvest.StatusUntrusted: "certificate not trusted",
	harvest.StatusExpired:   "certificate not valid at signing time",
	harvest.StatusRevoked:   "certificate revoked",
	harvest.StatusMismatch:  "From address not in certificate",
	harvest.StatusPartial:   "signature covers only part of the message",
	harvest.StatusError:     "signature cannot be judged",
}

// authResultsPieces builds the Authentication-Results value: the
// authserv-id, then one "smime" resinfo per signer (RFC 8601 section 2.2,
// RFC 7281 section 3):
//
//	smime=<result> [reason="..."] body.smime-identifier=<signer> (sha256:<fingerprint>)
//
// The policy detail (which check failed) goes in the reason, which RFC 8601
// allows for every method; a "policy.smime-..." property would not be
// registered for the smime method. body.smime-serial and body.smime-issuer
// (RFC 7281 3.2.3: both or neither) are left out: the report does not
// carry them.
//
// With no signature the result is "none", unless the message could not be
// read to the end (decryption failed, or the engine stopped with an error):
// then nobody knows whether it was signed, and "none" ("not signed") would
// be a claim we cannot make; permerror with the reason says so.
func authResultsPieces(rep *harvest.Report, authservID string) []piece {
	id := mimeValue(sanitize(authservID, true, 0))
	ps := []piece{{text: id + ";"}}
	sigs := rep.Signatures
	if len(sigs) == 0 {
		var reason string
		switch {
		case rep.Decryption.Status == harvest.DecryptFailed:
			reason = "message not decrypted"
		case rep.Error != "":
			reason = "message not fully read: " + rep.Error
		default:
			return append(ps, piece{text: "smime=none"})
		}
		return append(ps, piece{text: "smime=permerror"},
			piece{text: "reason=" + mimeValue(sanitize(reason, true, maxReasonLen))})
	}
	more := 0
	if len(sigs) > maxSignatures {
		more = len(sigs) - maxSignatures
		sigs = sigs[:maxSignatures]
	}
	for i, s := range sigs {
		ps = append(ps, piece{text: "smime=" + smimeResult(s.Status), newLine: len(sigs) > 1})
		reason := s.Reason
		if s.Status == harvest.StatusValid {
			reason = ""
			if s.WeakDigest {
				reason = "weak digest " + s.Digest
			}
		} else if strings.TrimSpace(reason) == "" {
			reason = defaultReason[s.Status]
		}
		if r := sanitize(reason, true, maxReasonLen); r != "" {
			ps = append(ps, piece{text: "reason=" + mimeValue(r)})
		}
		fp := hexFingerprint(s.Fingerprint)
		ident := smimeIdentifier(s.Signer, fp)
		if ident != "" {
			ps = append(ps, piece{text: "body.smime-identifier=" + ident})
		}
		if fp != "" && ident != fp {
			ps = append(ps, piece{text: "(sha256:" + fp + ")"})
		}
		// RFC 7281 3.2.3: serial and issuer go together, or not at all.
		if serial, issuer := hexSerial(s.Serial), sanitize(s.Issuer, true, maxReasonLen); serial != "" && issuer != "" {
			ps = append(ps, piece{text: "body.smime-serial=" + serial}, piece{text: "body.smime-issuer=" + mimeValue(issuer)})
		}
		if i < len(sigs)-1 {
			ps[len(ps)-1].text += ";"
		}
	}
	if more > 0 {
		// A trailing comment is CFWS before the end of the payload.
		ps = append(ps, piece{text: "(" + strconv.Itoa(more) + " more signatures not listed)"})
	}
	return ps
}

// hexFingerprint returns fp lower-cased if it is hex, else "" (it goes into
// a comment, and is ours, but the type does not promise its form).
func hexFingerprint(fp string) string {
	fp = strings.ToLower(fp)
	if fp == "" || len(fp) > 128 || strings.Trim(fp, "0123456789abcdef") != "" {
		return ""
	}
	return fp
}

// smimeIdentifier renders the signer for body.smime-identifier, a pvalue
// (RFC 8601 section 2.2: a value, or [[local-part] "@"] domain-name). A
// plain address is written as is; other ASCII text as a quoted-string. A
// signer with non-ASCII characters (not expected: certificate addresses
// are IA5String) is replaced by the fingerprint rather than mangled.
func smimeIdentifier(signer, fp string) string {
	s := sanitize(signer, false, maxSignerLen)
	for _, r := range s {
		if r >= utf8.RuneSelf {
			s = ""
			break
		}
	}
	switch {
	case s == "":
		return fp
	case isPlainAddress(s):
		return s
	}
	return mimeValue(s)
}

// isPlainAddress tells an address whose local part is a dot-atom and whose
// domain is a DNS name (RFC 6376 domain-name), so that it is a pvalue
// without quoting.
func isPlainAddress(s string) bool {
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" {
		return false
	}
	for _, atom := range strings.Split(local, ".") {
		if atom == "" || strings.IndexFunc(atom, func(r rune) bool {
			return !(r < utf8.RuneSelf && (isAlnum(byte(r)) || strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r)))
		}) >= 0 {
			return false
		}
	}
	labels := strings.Split(domain, ".")
	if len(labels) < 2 { // RFC 6376: sub-domain 1*("." sub-domain)
		return false
	}
	for _, label := range labels {
		if label == "" || !isAlnum(label[0]) || !isAlnum(label[len(label)-1]) ||
			strings.IndexFunc(label, func(r rune) bool { return !(r < utf8.RuneSelf && (isAlnum(byte(r)) || r == '-')) }) >= 0 {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// decryptionPieces builds the X-Smimed-Decryption value: the status, then
// "; name=value" parameters in MIME style (values are RFC 2045 values):
// "ok; cipher=aes-256-gcm; key-transport=rsa-oaep; key=<fingerprint>",
// "failed; error=\"...\"", or "none".
func decryptionPieces(d harvest.Decryption) []piece {
	status := d.Status
	if status == "" {
		status = harvest.DecryptNone
	}
	var params [][2]string
	switch status {
	case harvest.DecryptOK:
		params = [][2]string{{"cipher", d.Cipher}, {"key-transport", d.KeyTransport}, {"key", hexFingerprint(d.Key)}}
	case harvest.DecryptFailed:
		params = [][2]string{{"error", d.Error}}
	}
	ps := []piece{{text: mimeValue(sanitize(status, true, maxTokenLen))}}
	for _, p := range params {
		limit := maxTokenLen
		switch p[0] {
		case "error":
			limit = maxReasonLen
		case "key":
			limit = 0 // checked by hexFingerprint
		}
		v := sanitize(p[1], true, limit)
		if v == "" {
			continue
		}
		ps[len(ps)-1].text += ";"
		ps = append(ps, piece{text: p[0] + "=" + mimeValue(v)})
	}
	return ps
}

// hexSerial returns a certificate serial number in hex (a token), or ""
// when it is not one.
func hexSerial(s string) string {
	if s == "" || len(s) > 64 || strings.Trim(strings.ToUpper(s), "0123456789ABCDEF") != "" {
		return ""
	}
	return strings.ToUpper(s)
}
