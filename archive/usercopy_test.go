package archive

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	nettextproto "net/textproto"
	"os/exec"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"

	"github.com/smimed/smimed/harvest"
)

func TestWantCopy(t *testing.T) {
	decrypted := &harvest.Report{Decryption: harvest.Decryption{Status: harvest.DecryptOK}}
	decryptedSigned := &harvest.Report{Decryption: harvest.Decryption{Status: harvest.DecryptOK},
		Signatures: []harvest.Signature{{Status: harvest.StatusValid}}}
	failed := &harvest.Report{Decryption: harvest.Decryption{Status: harvest.DecryptFailed}}
	// A signature outside an envelope that could not be opened.
	failedSigned := &harvest.Report{Decryption: harvest.Decryption{Status: harvest.DecryptFailed},
		Signatures: []harvest.Signature{{Status: harvest.StatusValid}}}
	signed := &harvest.Report{Decryption: harvest.Decryption{Status: harvest.DecryptNone},
		Signatures: []harvest.Signature{{Status: harvest.StatusInvalid}}}
	plain := &harvest.Report{Decryption: harvest.Decryption{Status: harvest.DecryptNone}}
	zero := &harvest.Report{}

	tests := []struct {
		mode string
		rep  *harvest.Report
		want bool
	}{
		{"encrypted", decrypted, true},
		{"encrypted", decryptedSigned, true},
		{"encrypted", failed, false},
		{"encrypted", failedSigned, false},
		{"encrypted", signed, false},
		{"encrypted", plain, false},
		{"encrypted", zero, false},
		{"encrypted", nil, false},
		{"", decrypted, true}, // the default is "encrypted"
		{"", signed, false},
		{"", failed, false},
		{"smime", decrypted, true},
		{"smime", decryptedSigned, true},
		{"smime", signed, true},
		{"smime", failed, false},
		{"smime", failedSigned, false},
		{"smime", plain, false},
		{"smime", nil, false},
		{"all", decrypted, true},
		{"all", failed, true},
		{"all", failedSigned, true},
		{"all", signed, true},
		{"all", plain, true},
		{"all", nil, true},
		{"no-such-mode", decrypted, true}, // unknown: the default
		{"no-such-mode", signed, false},
	}
	for _, tt := range tests {
		if got := WantCopy(tt.mode, tt.rep); got != tt.want {
			t.Errorf("WantCopy(%q, %+v) = %v, want %v", tt.mode, tt.rep, got, tt.want)
		}
	}
}

const testAuthserv = "mx.example.org"

var testSource = Source{Account: "bob", Folder: "INBOX", UIDValidity: 1700000000, UID: 42}

const testFP = "1f66f0b4920c7f2f0123456789abcdef0123456789abcdef0123456789abcdef"

func decryptedReport() *harvest.Report {
	return &harvest.Report{
		Layers: []string{"enveloped-data", "multipart/signed"},
		Decryption: harvest.Decryption{Status: harvest.DecryptOK, Cipher: "aes-256-gcm",
			KeyTransport: "rsa-oaep", Key: strings.ToUpper(testFP)},
		Signatures: []harvest.Signature{{Status: harvest.StatusValid, Signer: "alice@partner.example",
			Fingerprint: testFP, Digest: "sha256", Layer: 1}},
	}
}

// hostileHeader is an incoming header with forged fields of ours in every
// form we know, among fields that must survive byte for byte. nl is the
// line end. The kept lines are returned separately: the expected header.
func hostileHeader(nl string) (header, kept string) {
	type line struct {
		text string
		keep bool
	}
	lines := []line{
		{"Received: from mail.partner.example by mx.example.org;" + nl + "\tTue, 1 Apr 2025 10:00:00 +0000", true},
		{"Authentication-Results: mx.example.org; smime=pass body.smime-identifier=ceo@example.org", false},
		{"Authentication-Results: MX.Example.ORG; dkim=pass", false},
		{"Authentication-Results: (forged) mx.example.org 1;" + nl + " smime=pass" + nl + "\tbody.smime-identifier=ceo@example.org", false},
		{"Authentication-Results: \"mx.example.org\"; smime=pass", false},
		{"Authentication-Results:" + nl + " mx.example.org;" + nl + " smime=pass", false},
		{"authentication-results : mx.example.org; smime=pass", false},
		// What a lenient reader takes for our id (issue 9, item 8): a
		// trailing dot (the root of the DNS), a NUL in the name or the
		// id, spaces inside the quotes, comments, case.
		{"Authentication-Results: mx.example.org.; smime=pass", false},
		{"Authentication-Results: (c (nested)) MX.EXAMPLE.ORG.(x); smime=pass", false},
		{"Authentication-Results\x00: mx.example.org; smime=pass", false},
		{"Authentication\x00-Results: mx.example.org; smime=pass", false},
		{"Authentication-Results: mx.exa\x00mple.org; smime=pass", false},
		{"Authentication-Results: \" mx.example.org. \"; smime=pass", false},
		{"X-Smimed-Source\x00: bob/INBOX/1700000000/43", false},
		{"Authentication-Results: other.example.net; dkim=pass header.d=partner.example", true},
		{"Authentication-Results: mx.example.org.evil.example; smime=pass", true},
		{"Authentication-Results: mx.example; smime=pass", true},
		{"From: Alice <alice@partner.example>", true},
		{"X-Smimed-Source: bob/INBOX/1700000000/41", false},
		{"x-smimed-source:bob/INBOX/1700000000/42", false},
		{"X-SMIMED-DECRYPTION: ok; cipher=aes-256-gcm", false},
		{"X-Smimed-Decryption\t: none" + nl + " continued", false},
		{"X-Smimed-Sourcery: kept, a different field", true},
		{"Subject: =?utf-8?q?caf=C3=A9?= and a line that is long enough to have been folded" + nl + " by the sender", true},
		{"To: bob@example.org", true},
		{"MIME-Version: 1.0", true},
		{"Content-Type: text/plain; charset=utf-8", true},
	}
	var h, k strings.Builder
	for _, l := range lines {
		h.WriteString(l.text + nl)
		if l.keep {
			k.WriteString(l.text + nl)
		}
	}
	return h.String(), k.String()
}

// bodyOf returns what follows the first empty line, and whether there is
// one.
func bodyOf(msg []byte) ([]byte, bool) {
	lines := bytes.SplitAfter(msg, []byte("\n"))
	n := 0
	for _, l := range lines {
		n += len(l)
		if string(l) == "\n" || string(l) == "\r\n" {
			return msg[n:], true
		}
	}
	return nil, false
}

func TestUserCopyHostileHeader(t *testing.T) {
	body := "--b\r\nContent-Type: text/plain\r\n\r\nX-Smimed-Source: in the body stays\r\n" +
		"Authentication-Results: mx.example.org; smime=pass\r\n\r\n\xff\x00 8-bit and NUL\r\n--b--\r\n"
	for _, nl := range []string{"\r\n", "\n"} {
		t.Run(fmt.Sprintf("%q", nl), func(t *testing.T) {
			header, kept := hostileHeader(nl)
			msg := []byte(header + nl + body)
			got := UserCopy(msg, decryptedReport(), testSource, testAuthserv)

			ours, rest, ok := strings.Cut(string(got), "X-Smimed-Decryption:")
			if !ok {
				t.Fatalf("UserCopy() has no X-Smimed-Decryption field:\n%s", got)
			}
			// What follows our last field's line(s) is the kept header, the
			// empty line and the body, byte for byte.
			i := strings.Index(rest, nl)
			for i >= 0 && i+len(nl) < len(rest) && (rest[i+len(nl)] == ' ' || rest[i+len(nl)] == '\t') {
				j := strings.Index(rest[i+len(nl):], nl)
				i += len(nl) + j
			}
			if want := kept + nl + body; rest[i+len(nl):] != want {
				t.Errorf("UserCopy() after our fields =\n%q\nwant\n%q", rest[i+len(nl):], want)
			}
			if !strings.HasPrefix(ours, "Authentication-Results: "+testAuthserv+";") {
				t.Errorf("UserCopy() does not start with our Authentication-Results:\n%s", got)
			}
			checkLineEnds(t, []byte(ours+"X-Smimed-Decryption:"+rest[:i+len(nl)]), nl)

			gotBody, ok := bodyOf(got)
			if !ok || string(gotBody) != body {
				t.Errorf("body = %q, want %q", gotBody, body)
			}

			h := readHeaderGoMessage(t, got)
			checkOurFields(t, h.counts, h.ar, 1)
			if h.counts["x-smimed-sourcery"] != 1 {
				t.Errorf("go-message: X-Smimed-Sourcery count = %d, want 1", h.counts["x-smimed-sourcery"])
			}
			wantForeign := []string{
				"other.example.net; dkim=pass header.d=partner.example",
				"mx.example.org.evil.example; smime=pass",
				"mx.example; smime=pass",
			}
			if fmt.Sprint(h.ar[1:]) != fmt.Sprint(wantForeign) {
				t.Errorf("go-message: foreign Authentication-Results = %q, want %q", h.ar[1:], wantForeign)
			}
			if want := "bob/INBOX/1700000000/42"; h.source != want {
				t.Errorf("go-message: X-Smimed-Source = %q, want %q", h.source, want)
			}
			if want := "ok; cipher=aes-256-gcm; key-transport=rsa-oaep; key=" + testFP; h.decryption != want {
				t.Errorf("go-message: X-Smimed-Decryption = %q, want %q", h.decryption, want)
			}
			res := mustParseAuthRes(t, h.ar[0])
			want := []resinfo{{method: "smime", result: "pass",
				props: map[string]string{"body.smime-identifier": "alice@partner.example"}}}
			if !equalResinfos(res, want) {
				t.Errorf("Authentication-Results %q = %+v, want %+v", h.ar[0], res, want)
			}
			if !strings.Contains(h.ar[0], "(sha256:"+testFP+")") {
				t.Errorf("Authentication-Results %q has no fingerprint comment", h.ar[0])
			}

			py := parsePython(t, got)
			if py == nil {
				return
			}
			for _, name := range []string{UserCopySourceField, UserCopyDecryptionField} {
				if len(py.Fields[name]) != 1 {
					t.Errorf("python: %s = %q, want exactly one", name, py.Fields[name])
				}
			}
			if len(py.Fields[authResultsField]) == 0 || py.Fields[authResultsField][0] != h.ar[0] {
				t.Errorf("python: first Authentication-Results = %q, want %q (as go-message reads it)", py.Fields[authResultsField], h.ar[0])
			}
			if fmt.Sprint(py.Fields[authResultsField][1:]) != fmt.Sprint(wantForeign) {
				t.Errorf("python: foreign Authentication-Results = %q, want %q", py.Fields[authResultsField][1:], wantForeign)
			}
			if string(py.Body) != body {
				t.Errorf("python: body = %q, want %q", py.Body, body)
			}
			if len(py.Defects) > 0 {
				t.Errorf("python: defects %v", py.Defects)
			}
		})
	}
}

// TestUserCopyResults checks the result for each verdict against the
// mapping decided from RFC 7281 section 3 (see smimeResult), and that
// every Authentication-Results we write is RFC 8601 syntax.
func TestUserCopyResults(t *testing.T) {
	sig := func(status, signer, reason string) harvest.Signature {
		return harvest.Signature{Status: status, Signer: signer, Fingerprint: testFP, Reason: reason}
	}
	tests := []struct {
		name string
		rep  harvest.Report
		want []resinfo
	}{
		{"unsigned", harvest.Report{Decryption: harvest.Decryption{Status: "none"}},
			[]resinfo{{method: "smime", result: "none"}}},
		{"not decrypted", harvest.Report{Decryption: harvest.Decryption{Status: "failed", Error: "no key"}},
			[]resinfo{{method: "smime", result: "permerror", reason: "message not decrypted"}}},
		{"engine error", harvest.Report{Error: "too deep"},
			[]resinfo{{method: "smime", result: "permerror", reason: "message not fully read: too deep"}}},
		{"valid", harvest.Report{Signatures: []harvest.Signature{sig("valid", "alice@partner.example", "")}},
			[]resinfo{{method: "smime", result: "pass", props: map[string]string{"body.smime-identifier": "alice@partner.example"}}}},
		{"valid sha1", harvest.Report{Signatures: []harvest.Signature{{Status: "valid", Signer: "a@b.example", Digest: "sha1", WeakDigest: true}}},
			[]resinfo{{method: "smime", result: "pass", reason: "weak digest sha1", props: map[string]string{"body.smime-identifier": "a@b.example"}}}},
		{"invalid", harvest.Report{Signatures: []harvest.Signature{sig("invalid", "a@b.example", "digest mismatch")}},
			[]resinfo{{method: "smime", result: "fail", reason: "digest mismatch", props: map[string]string{"body.smime-identifier": "a@b.example"}}}},
		{"untrusted", harvest.Report{Signatures: []harvest.Signature{sig("untrusted", "a@b.example", "")}},
			[]resinfo{{method: "smime", result: "policy", reason: "certificate not trusted", props: map[string]string{"body.smime-identifier": "a@b.example"}}}},
		{"expired", harvest.Report{Signatures: []harvest.Signature{sig("expired", "a@b.example", "")}},
			[]resinfo{{method: "smime", result: "policy", reason: "certificate not valid at signing time", props: map[string]string{"body.smime-identifier": "a@b.example"}}}},
		{"revoked", harvest.Report{Signatures: []harvest.Signature{sig("revoked", "a@b.example", "")}},
			[]resinfo{{method: "smime", result: "fail", reason: "certificate revoked", props: map[string]string{"body.smime-identifier": "a@b.example"}}}},
		{"mismatch", harvest.Report{Signatures: []harvest.Signature{sig("mismatch", "a@b.example", "")}},
			[]resinfo{{method: "smime", result: "policy", reason: "From address not in certificate", props: map[string]string{"body.smime-identifier": "a@b.example"}}}},
		{"partial", harvest.Report{Signatures: []harvest.Signature{sig("partial", "alice@partner.example", "the text/html part is not signed")}},
			[]resinfo{{method: "smime", result: "policy", reason: "the text/html part is not signed", props: map[string]string{"body.smime-identifier": "alice@partner.example"}}}},
		{"partial, no reason", harvest.Report{Signatures: []harvest.Signature{sig("partial", "alice@partner.example", " ")}},
			[]resinfo{{method: "smime", result: "policy", reason: "signature covers only part of the message", props: map[string]string{"body.smime-identifier": "alice@partner.example"}}}},
		{"error, no signer", harvest.Report{Signatures: []harvest.Signature{{Status: "error", Reason: `signer certificate "CN=x\y" is neither in the message nor in the store`}}},
			[]resinfo{{method: "smime", result: "permerror", reason: `signer certificate "CN=x\y" is neither in the message nor in the store`}}},
		{"unknown status", harvest.Report{Signatures: []harvest.Signature{sig("frobbed", "a@b.example", "x")}},
			[]resinfo{{method: "smime", result: "neutral", reason: "x", props: map[string]string{"body.smime-identifier": "a@b.example"}}}},
		{"no signer address", harvest.Report{Signatures: []harvest.Signature{sig("valid", "", "")}},
			[]resinfo{{method: "smime", result: "pass", props: map[string]string{"body.smime-identifier": testFP}}}},
		{"hostile signer", harvest.Report{Signatures: []harvest.Signature{sig("mismatch", "Evil \"CEO\" <ceo@example.org>\r\nX-Smimed-Source: x\x00\\", "r\re\nason")}},
			[]resinfo{{method: "smime", result: "policy", reason: "r e ason", props: map[string]string{"body.smime-identifier": `Evil "CEO" <ceo@example.org>  X-Smimed-Source: x \`}}}},
		{"non-ASCII signer", harvest.Report{Signatures: []harvest.Signature{sig("valid", "jörg@bücher.example", "")}},
			[]resinfo{{method: "smime", result: "pass", props: map[string]string{"body.smime-identifier": testFP}}}},
		{"single-label domain", harvest.Report{Signatures: []harvest.Signature{sig("valid", "root@localhost", "")}},
			[]resinfo{{method: "smime", result: "pass", props: map[string]string{"body.smime-identifier": "root@localhost"}}}},
		{"serial and issuer", harvest.Report{Signatures: []harvest.Signature{{Status: "valid", Signer: "a@b.example", Fingerprint: testFP, Serial: "1001", Issuer: "CN=Smimed Test Intermediate CA,O=Smimed Test"}}},
			[]resinfo{{method: "smime", result: "pass", props: map[string]string{"body.smime-identifier": "a@b.example", "body.smime-serial": "1001", "body.smime-issuer": "CN=Smimed Test Intermediate CA,O=Smimed Test"}}}},
		{"serial without issuer", harvest.Report{Signatures: []harvest.Signature{{Status: "valid", Signer: "a@b.example", Fingerprint: testFP, Serial: "1001"}}},
			[]resinfo{{method: "smime", result: "pass", props: map[string]string{"body.smime-identifier": "a@b.example"}}}},
		{"two signers", harvest.Report{Signatures: []harvest.Signature{sig("valid", "a@b.example", ""), sig("invalid", "c@d.example", "bad")}},
			[]resinfo{
				{method: "smime", result: "pass", props: map[string]string{"body.smime-identifier": "a@b.example"}},
				{method: "smime", result: "fail", reason: "bad", props: map[string]string{"body.smime-identifier": "c@d.example"}},
			}},
	}
	long := map[string]bool{"error, no signer": true, "no signer address": true, "non-ASCII signer": true, "serial and issuer": true}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := UserCopy([]byte("Subject: x\r\n\r\nbody\r\n"), &tt.rep, testSource, testAuthserv)
			h := readHeaderGoMessage(t, got)
			checkOurFields(t, h.counts, h.ar, 1)
			res := mustParseAuthRes(t, h.ar[0])
			if !equalResinfos(res, tt.want) {
				t.Errorf("Authentication-Results %q\n = %+v\nwant %+v", h.ar[0], res, tt.want)
			}
			// A quoted reason or a 64-digit identifier cannot be folded
			// (it has no CFWS inside) and may be longer than 78.
			if !long[tt.name] {
				checkLineLengths(t, got)
			}
		})
	}
}

func TestUserCopyManySignatures(t *testing.T) {
	var rep harvest.Report
	for i := range 50 {
		rep.Signatures = append(rep.Signatures, harvest.Signature{Status: "valid", Signer: fmt.Sprintf("s%d@b.example", i)})
	}
	got := UserCopy([]byte("Subject: x\n\nbody\n"), &rep, testSource, testAuthserv)
	h := readHeaderGoMessage(t, got)
	res := mustParseAuthRes(t, h.ar[0])
	if len(res) != 20 {
		t.Errorf("%d resinfos, want 20", len(res))
	}
	if !strings.HasSuffix(h.ar[0], "(30 more signatures not listed)") {
		t.Errorf("Authentication-Results %q does not say 30 are left out", h.ar[0])
	}
}

func TestUserCopyDecryptionField(t *testing.T) {
	tests := []struct {
		d    harvest.Decryption
		want string
	}{
		{harvest.Decryption{Status: "ok", Cipher: "aes-128-cbc", Key: testFP}, "ok; cipher=aes-128-cbc; key=" + testFP},
		{harvest.Decryption{Status: "ok", Cipher: "aes-256-gcm", KeyTransport: "rsaes-pkcs1-v1_5", Key: "not hex"}, "ok; cipher=aes-256-gcm; key-transport=rsaes-pkcs1-v1_5"},
		{harvest.Decryption{Status: "failed", Error: "harvest: no private key for any recipient\r\nX-Smimed-Source: x"},
			`failed; error="harvest: no private key for any recipient  X-Smimed-Source: x"`},
		{harvest.Decryption{Status: "failed"}, "failed"},
		{harvest.Decryption{Status: "none"}, "none"},
		{harvest.Decryption{}, "none"},
	}
	for _, tt := range tests {
		rep := &harvest.Report{Decryption: tt.d}
		got := UserCopy([]byte("Subject: x\r\n\r\n"), rep, testSource, testAuthserv)
		h := readHeaderGoMessage(t, got)
		checkOurFields(t, h.counts, h.ar, 1)
		if h.decryption != tt.want {
			t.Errorf("X-Smimed-Decryption for %+v = %q, want %q", tt.d, h.decryption, tt.want)
		}
	}
}

// TestUserCopyShapes feeds messages that are not well-formed: the result
// must still have our fields on top, then the original.
func TestUserCopyShapes(t *testing.T) {
	rep := decryptedReport()
	ourFields := func(nl string) string {
		got := string(UserCopy([]byte(nl), rep, testSource, testAuthserv))
		return strings.TrimSuffix(got, nl) // the message "nl" is an empty header and an empty body
	}
	crlf, lf := ourFields("\r\n"), ourFields("\n")
	if strings.Contains(lf, "\r") {
		t.Fatalf("LF message got CR in our fields: %q", lf)
	}
	if strings.Count(crlf, "\r\n") != strings.Count(crlf, "\n") {
		t.Fatalf("CRLF message got bare LF in our fields: %q", crlf)
	}
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", lf + "\n"},
		{"body only", "\r\nbody\r\n", crlf + "\r\nbody\r\n"},
		{"header only", "Subject: x\r\nTo: y\r\n", crlf + "Subject: x\r\nTo: y\r\n\r\n"},
		{"header only, unterminated", "Subject: x\r\nTo: y", crlf + "Subject: x\r\nTo: y\r\n\r\n"},
		{"header only, forged", "X-Smimed-Source: f\r\nTo: y", crlf + "To: y\r\n\r\n"},
		{"text without header", "Hello there\nsecond line\n", lf + "\nHello there\nsecond line\n"},
		{"binary", "\x00\xff\xfe", lf + "\n\x00\xff\xfe"},
		{"orphan continuation", " X-Smimed-Source: f\r\n\tmore\r\nSubject: x\r\n\r\nb", crlf + "Subject: x\r\n\r\nb"},
		{"lone CR", "Subject: x\rX-Smimed-Source: f\r\nTo: y\r\r\n\r\nb\rc", crlf + "Subject: x X-Smimed-Source: f\r\nTo: y \r\n\r\nb\rc"},
		{"lone CR hides field", "Subject: x\r\n\rX-Smimed-Source: f\r\n\r\nb", crlf + "Subject: x\r\n X-Smimed-Source: f\r\n\r\nb"},
		{"garbage line in header", "From: a\r\nnot a field\r\nX-Smimed-Source: f\r\n\r\nb", crlf + "From: a\r\nnot a field\r\n\r\nb"},
		{"name without colon", "X-Smimed-Source\r\n : bob/INBOX/1700000000/42\r\nSubject: x\r\n\r\nb", crlf + "Subject: x\r\n\r\nb"},
		{"A-R colon on next line", "Authentication-Results\r\n : mx.example.org; smime=pass\r\nTo: y\r\n\r\nb", crlf + "To: y\r\n\r\nb"},
		{"first line LF", "Subject: x\nTo: y\r\n\r\nb", lf + "Subject: x\nTo: y\r\n\r\nb"},
	}
	for _, tt := range tests {
		got := string(UserCopy([]byte(tt.in), rep, testSource, testAuthserv))
		if got != tt.want {
			t.Errorf("%s: UserCopy(%q) =\n%q\nwant\n%q", tt.name, tt.in, got, tt.want)
		}
	}
}

func TestUserCopyFolderNames(t *testing.T) {
	tests := []struct {
		folder, want string
	}{
		{"Archiv/Größe", "bob/Archiv/Größe/1700000000/42"},
		{"A  folder with\ttabs and  many spaces that make the line longer than seventy-eight",
			"bob/A  folder with tabs and  many spaces that make the line longer than seventy-eight/1700000000/42"},
		{"evil\r\nX-Smimed-Source: x\x00", "bob/evil  X-Smimed-Source: x /1700000000/42"},
		{"bad\xffutf8", "bob/bad\uFFFDutf8/1700000000/42"},
	}
	for _, tt := range tests {
		src := testSource
		src.Folder = tt.folder
		got := UserCopy([]byte("Subject: x\r\n\r\nbody"), decryptedReport(), src, testAuthserv)
		h := readHeaderGoMessage(t, got)
		checkOurFields(t, h.counts, h.ar, 1)
		if h.source != tt.want {
			t.Errorf("X-Smimed-Source for folder %q = %q, want %q", tt.folder, h.source, tt.want)
		}
		checkLineLengths(t, got)
		if py := parsePython(t, got); py != nil {
			if f := py.Fields[UserCopySourceField]; len(f) != 1 || f[0] != tt.want {
				t.Errorf("python: X-Smimed-Source for folder %q = %q, want %q", tt.folder, f, tt.want)
			}
		}
	}
}

// TestUserCopyAuthservID checks the id we write and the forgeries we
// remove when the configured id is not a plain token.
func TestUserCopyAuthservID(t *testing.T) {
	msg := "Authentication-Results: \"smimed at mx\"; smime=pass\r\n" +
		"Authentication-Results: smimed; smime=pass\r\n\r\nb"
	got := UserCopy([]byte(msg), decryptedReport(), testSource, "smimed at mx")
	h := readHeaderGoMessage(t, got)
	if len(h.ar) != 2 || h.ar[1] != "smimed; smime=pass" {
		t.Fatalf("Authentication-Results = %q, want ours and the one of \"smimed\"", h.ar)
	}
	if !strings.HasPrefix(h.ar[0], `"smimed at mx"; smime=pass`) {
		t.Errorf("Authentication-Results = %q, want the id quoted", h.ar[0])
	}
	mustParseAuthRes(t, h.ar[0])
}

// checkLineEnds fails unless every line of b ends in nl.
func checkLineEnds(t *testing.T, b []byte, nl string) {
	t.Helper()
	if nl == "\n" && bytes.IndexByte(b, '\r') >= 0 {
		t.Errorf("LF message got CR in %q", b)
	}
	if nl == "\r\n" && bytes.Count(b, []byte("\r\n")) != bytes.Count(b, []byte("\n")) {
		t.Errorf("CRLF message got bare LF in %q", b)
	}
}

// checkLineLengths fails when a line of our fields is longer than 78
// characters (every test value here can be folded to fit).
func checkLineLengths(t *testing.T, msg []byte) {
	t.Helper()
	hdr, _, _ := bytes.Cut(msg, []byte("\nX-Smimed-Decryption:"))
	for _, l := range strings.Split(string(hdr), "\n") {
		l = strings.TrimSuffix(l, "\r")
		if n := len([]rune(l)); n > 78 {
			t.Errorf("line of %d characters: %q", n, l)
		}
	}
}

type goHeader struct {
	counts             map[string]int
	ar                 []string // Authentication-Results values, in order
	source, decryption string
}

// readHeaderGoMessage parses msg's header with go-message.
func readHeaderGoMessage(t *testing.T, msg []byte) goHeader {
	t.Helper()
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(msg)))
	if err != nil {
		t.Fatalf("textproto.ReadHeader() = %v\n%s", err, msg)
	}
	g := goHeader{counts: map[string]int{}}
	for f := h.Fields(); f.Next(); {
		g.counts[strings.ToLower(f.Key())]++
	}
	g.ar = h.Values(authResultsField)
	g.source = h.Get(UserCopySourceField)
	g.decryption = h.Get(UserCopyDecryptionField)
	return g
}

// checkOurFields checks that each of our fields is there exactly once and
// that the first Authentication-Results is ours.
func checkOurFields(t *testing.T, counts map[string]int, ar []string, want int) {
	t.Helper()
	for _, name := range []string{"x-smimed-source", "x-smimed-decryption"} {
		if counts[name] != want {
			t.Errorf("%s occurs %d times, want %d", name, counts[name], want)
		}
	}
	ours := 0
	for _, v := range ar {
		if id, err := authservIDForTest(v); err == nil && strings.EqualFold(id, testAuthserv) {
			ours++
		}
	}
	if ours != want {
		t.Errorf("Authentication-Results of %s: %d, want %d (%q)", testAuthserv, ours, want, ar)
	}
}

type pyResult struct {
	Fields  map[string][]string `json:"fields"`
	Body    []byte              `json:"body"`
	Defects []string            `json:"defects"`
}

// pyScript parses a message from stdin with Python's email package and
// prints the named fields (unfolded, as Python reads them), the body bytes
// (base64, which encoding/json decodes into []byte) and the parser's
// defects as JSON.
const pyScript = `
import base64, json, sys
from email import policy
from email.parser import BytesParser
data = sys.stdin.buffer.read()
msg = BytesParser(policy=policy.default).parsebytes(data, headersonly=True)
out = {"fields": {}, "defects": [type(d).__name__ for d in msg.defects]}
for name in sys.argv[1:]:
    out["fields"][name] = [str(v) for v in msg.get_all(name, [])]
# The parser keeps 8-bit body bytes as surrogates in _payload; get_payload()
# would replace them with U+FFFD.
out["body"] = base64.b64encode(msg._payload.encode("ascii", "surrogateescape")).decode()
print(json.dumps(out))
`

// parsePython parses msg with Python 3's email package; nil (and the test
// skipped) when there is no python3.
func parsePython(t *testing.T, msg []byte) *pyResult {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found: the cross-check with Python's email package is skipped")
		return nil
	}
	cmd := exec.Command(py, "-c", pyScript, authResultsField, UserCopySourceField, UserCopyDecryptionField)
	cmd.Stdin = bytes.NewReader(msg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, stderr.Bytes())
	}
	var r pyResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("python3 output %q: %v", out, err)
	}
	return &r
}

// An independent checker for Authentication-Results values, written from
// the ABNF of RFC 8601 section 2.2 (with RFC 2045 value, RFC 5322 CFWS,
// RFC 5321 Keyword and RFC 6376 domain-name), and RFC 7281 section 3 for
// the smime method's results and properties. It shares no code with
// usercopy.go.

type resinfo struct {
	method, result, reason string
	props                  map[string]string
}

func equalResinfos(a, b []resinfo) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].method != b[i].method || a[i].result != b[i].result || a[i].reason != b[i].reason ||
			len(a[i].props) != len(b[i].props) {
			return false
		}
		for k, v := range a[i].props {
			if w, ok := b[i].props[k]; !ok || w != v {
				return false
			}
		}
	}
	return true
}

// mustParseAuthRes checks v (an unfolded field value) against the grammar
// and the smime registrations and returns its resinfos.
func mustParseAuthRes(t *testing.T, v string) []resinfo {
	t.Helper()
	_, res, err := parseAuthResForTest(v)
	if err != nil {
		t.Fatalf("Authentication-Results %q: %v", v, err)
	}
	smimeResults := map[string]bool{"none": true, "pass": true, "fail": true, "policy": true,
		"neutral": true, "temperror": true, "permerror": true}
	smimeProps := map[string]bool{"body.smime-identifier": true, "body.smime-part": true,
		"body.smime-serial": true, "body.smime-issuer": true}
	for _, r := range res {
		if r.method != "smime" {
			continue
		}
		if !smimeResults[r.result] {
			t.Errorf("Authentication-Results %q: result %q is not one of RFC 7281's", v, r.result)
		}
		for p := range r.props {
			if !smimeProps[p] {
				t.Errorf("Authentication-Results %q: property %q is not registered for smime", v, p)
			}
		}
		if (r.props["body.smime-serial"] == "") != (r.props["body.smime-issuer"] == "") {
			t.Errorf("Authentication-Results %q: smime-serial and smime-issuer go together (RFC 7281 3.2.3)", v)
		}
	}
	return res
}

type arScanner struct {
	s string
	i int
}

func (p *arScanner) eof() bool { return p.i >= len(p.s) }
func (p *arScanner) peek() byte {
	if p.eof() {
		return 0
	}
	return p.s[p.i]
}

func (p *arScanner) errorf(format string, a ...any) error {
	return fmt.Errorf("at %d (%q): %s", p.i, p.s[min(p.i, len(p.s)):], fmt.Sprintf(format, a...))
}

// cfws skips [CFWS]; it reports whether it skipped anything.
func (p *arScanner) cfws() (bool, error) {
	start := p.i
	for !p.eof() {
		switch c := p.peek(); {
		case c == ' ' || c == '\t':
			p.i++
		case c == '(':
			if err := p.comment(); err != nil {
				return false, err
			}
		default:
			return p.i > start, nil
		}
	}
	return p.i > start, nil
}

// comment = "(" *([FWS] ccontent) [FWS] ")"; ccontent = ctext / quoted-pair / comment.
func (p *arScanner) comment() error {
	p.i++ // "("
	for !p.eof() {
		c := p.peek()
		switch {
		case c == ')':
			p.i++
			return nil
		case c == '(':
			if err := p.comment(); err != nil {
				return err
			}
		case c == '\\':
			if p.i+1 >= len(p.s) || !isVCHARorWSP(p.s[p.i+1]) {
				return p.errorf("bad quoted-pair in comment")
			}
			p.i += 2
		case c == ' ' || c == '\t' || (c >= 33 && c <= 126): // ctext, FWS
			p.i++
		default:
			return p.errorf("byte %#x in comment", c)
		}
	}
	return p.errorf("unterminated comment")
}

func isVCHARorWSP(c byte) bool { return c == ' ' || c == '\t' || (c >= 33 && c <= 126) }

// quotedString parses an RFC 822 quoted-string (ASCII: qtext is any CHAR
// but '"', '\' and CR; we also refuse LF and other controls, which a
// header must not carry) and returns its content.
func (p *arScanner) quotedString() (string, error) {
	p.i++ // DQUOTE
	var b strings.Builder
	for !p.eof() {
		c := p.peek()
		switch {
		case c == '"':
			p.i++
			return b.String(), nil
		case c == '\\':
			if p.i+1 >= len(p.s) || p.s[p.i+1] > 127 || p.s[p.i+1] == '\r' || p.s[p.i+1] == '\n' || p.s[p.i+1] == 0 {
				return "", p.errorf("bad quoted-pair")
			}
			b.WriteByte(p.s[p.i+1])
			p.i += 2
		case isVCHARorWSP(c):
			b.WriteByte(c)
			p.i++
		default:
			return "", p.errorf("byte %#x in quoted-string", c)
		}
	}
	return "", p.errorf("unterminated quoted-string")
}

// value = token / quoted-string (RFC 2045 section 5.1).
func (p *arScanner) value() (string, error) {
	if p.peek() == '"' {
		return p.quotedString()
	}
	start := p.i
	for !p.eof() {
		c := p.peek()
		if c <= ' ' || c >= 127 || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			break
		}
		p.i++
	}
	if p.i == start {
		return "", p.errorf("want a value")
	}
	return p.s[start:p.i], nil
}

// keyword = Ldh-str = *( ALPHA / DIGIT / "-" ) Let-dig (RFC 5321 4.1.2).
func (p *arScanner) keyword() (string, error) {
	start := p.i
	for !p.eof() {
		c := p.peek()
		if !(c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			break
		}
		p.i++
	}
	k := p.s[start:p.i]
	if k == "" || k[len(k)-1] == '-' {
		return "", p.errorf("want a keyword")
	}
	return k, nil
}

func (p *arScanner) expect(c byte) error {
	if p.peek() != c {
		return p.errorf("want %q", c)
	}
	p.i++
	return nil
}

// dotAtom = 1*atext *("." 1*atext).
func (p *arScanner) dotAtom() bool {
	const atext = "!#$%&'*+-/=?^_`{|}~"
	start := p.i
	for !p.eof() {
		c := p.peek()
		if c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte(atext, c) >= 0 {
			p.i++
			continue
		}
		if c == '.' && p.i > start && p.s[p.i-1] != '.' {
			p.i++
			continue
		}
		break
	}
	return p.i > start && p.s[p.i-1] != '.'
}

// domainName = sub-domain 1*("." sub-domain) (RFC 6376 3.5), sub-domain =
// Let-dig [Ldh-str].
func (p *arScanner) domainName() bool {
	labels := 0
	for {
		k, err := p.keyword()
		if err != nil || k[0] == '-' {
			return false
		}
		labels++
		if p.peek() != '.' {
			return labels >= 2
		}
		p.i++
	}
}

// pvalue = [CFWS] ( value / [ [ local-part ] "@" ] domain-name ) [CFWS].
func (p *arScanner) pvalue() (string, error) {
	if _, err := p.cfws(); err != nil {
		return "", err
	}
	start := p.i
	// local-part "@" domain-name, with local-part a dot-atom or quoted-string.
	okLocal := false
	if p.peek() == '"' {
		_, err := p.quotedString()
		okLocal = err == nil
	} else {
		okLocal = p.dotAtom()
	}
	if okLocal && p.peek() == '@' {
		p.i++
		if p.domainName() {
			v := p.s[start:p.i]
			_, err := p.cfws()
			return v, err
		}
	}
	p.i = start
	if p.peek() == '@' {
		p.i++
		if p.domainName() {
			v := p.s[start:p.i]
			_, err := p.cfws()
			return v, err
		}
		p.i = start
	}
	v, err := p.value()
	if err != nil {
		return "", err
	}
	_, err = p.cfws()
	return v, err
}

// parseAuthResForTest parses authres-payload without the field name and
// the final CRLF.
func parseAuthResForTest(v string) (id string, res []resinfo, err error) {
	p := &arScanner{s: v}
	if _, err := p.cfws(); err != nil {
		return "", nil, err
	}
	if id, err = p.value(); err != nil {
		return "", nil, err
	}
	if ws, err := p.cfws(); err != nil {
		return "", nil, err
	} else if ws && p.peek() >= '0' && p.peek() <= '9' { // authres-version
		for p.peek() >= '0' && p.peek() <= '9' {
			p.i++
		}
		if _, err := p.cfws(); err != nil {
			return "", nil, err
		}
	}
	for {
		if _, err := p.cfws(); err != nil {
			return "", nil, err
		}
		if p.eof() {
			break
		}
		if err := p.expect(';'); err != nil {
			return "", nil, err
		}
		if _, err := p.cfws(); err != nil {
			return "", nil, err
		}
		method, err := p.keyword()
		if err != nil {
			return "", nil, err
		}
		if _, err := p.cfws(); err != nil {
			return "", nil, err
		}
		if method == "none" && p.eof() && len(res) == 0 { // no-result
			return id, nil, nil
		}
		if p.peek() == '/' { // method-version
			p.i++
			if _, err := p.cfws(); err != nil {
				return "", nil, err
			}
			if p.peek() < '0' || p.peek() > '9' {
				return "", nil, p.errorf("want a method version")
			}
			for p.peek() >= '0' && p.peek() <= '9' {
				p.i++
			}
			if _, err := p.cfws(); err != nil {
				return "", nil, err
			}
		}
		if err := p.expect('='); err != nil {
			return "", nil, err
		}
		if _, err := p.cfws(); err != nil {
			return "", nil, err
		}
		r := resinfo{method: method, props: map[string]string{}}
		if r.result, err = p.keyword(); err != nil {
			return "", nil, err
		}
		ws, err := p.cfws()
		if err != nil {
			return "", nil, err
		}
		if ws && strings.HasPrefix(p.s[p.i:], "reason") {
			save := p.i
			p.i += len("reason")
			if _, err := p.cfws(); err != nil {
				return "", nil, err
			}
			if p.peek() == '=' {
				p.i++
				if _, err := p.cfws(); err != nil {
					return "", nil, err
				}
				if r.reason, err = p.value(); err != nil {
					return "", nil, err
				}
				if ws, err = p.cfws(); err != nil {
					return "", nil, err
				}
			} else {
				p.i = save
			}
		}
		for !p.eof() && p.peek() != ';' {
			if !ws {
				return "", nil, p.errorf("want CFWS before a propspec")
			}
			ptype, err := p.keyword()
			if err != nil {
				return "", nil, err
			}
			if _, err := p.cfws(); err != nil {
				return "", nil, err
			}
			if err := p.expect('.'); err != nil {
				return "", nil, err
			}
			if _, err := p.cfws(); err != nil {
				return "", nil, err
			}
			prop, err := p.keyword()
			if err != nil {
				return "", nil, err
			}
			if _, err := p.cfws(); err != nil {
				return "", nil, err
			}
			if err := p.expect('='); err != nil {
				return "", nil, err
			}
			pv, err := p.pvalue()
			if err != nil {
				return "", nil, err
			}
			if _, dup := r.props[ptype+"."+prop]; dup {
				return "", nil, p.errorf("property %s.%s twice", ptype, prop)
			}
			r.props[ptype+"."+prop] = pv
			ws = true // pvalue ends in [CFWS]; a quoted value may be followed directly
		}
		res = append(res, r)
	}
	if len(res) == 0 {
		return "", nil, p.errorf("no resinfo")
	}
	return id, res, nil
}

// authservIDForTest returns the authserv-id of an Authentication-Results
// value.
func authservIDForTest(v string) (string, error) {
	p := &arScanner{s: v}
	if _, err := p.cfws(); err != nil {
		return "", err
	}
	return p.value()
}

// TestUserCopyUnprotectedFields: the X-Smimed-Unprotected-* fields in the
// copy are the engine's (from the report), never the sender's.
func TestUserCopyUnprotectedFields(t *testing.T) {
	msg := []byte("From: alice@partner.example\r\nSubject: lunch\r\nX-Smimed-Unprotected-From: planted\r\nx-smimed-unprotected-subject : planted too\r\n\r\nbody\r\n")
	rep := decryptedReport()
	rep.Unprotected = []harvest.HeaderField{{Name: "Subject", Value: "URGENT: change of bank details"}}
	got := string(UserCopy(msg, rep, testSource, testAuthserv))
	if strings.Contains(got, "planted") {
		t.Errorf("the sender's X-Smimed-Unprotected-* fields survive:\n%s", got)
	}
	h, err := nettextproto.NewReader(bufio.NewReader(strings.NewReader(got))).ReadMIMEHeader()
	if err != nil {
		t.Fatal(err)
	}
	if v := h.Values("X-Smimed-Unprotected-Subject"); len(v) != 1 || v[0] != "URGENT: change of bank details" {
		t.Errorf("X-Smimed-Unprotected-Subject = %q", v)
	}
	// Without a report field, none at all.
	if got := string(UserCopy(msg, decryptedReport(), testSource, testAuthserv)); strings.Contains(strings.ToLower(got), "x-smimed-unprotected") {
		t.Errorf("copy without protected headers has X-Smimed-Unprotected fields:\n%s", got)
	}
}

// TestUserCopySignerField (issue 15): one X-Smimed-Signer per valid
// signature, naming what its CA validated; none for other verdicts or for
// records from before validation types were recorded; a validated name
// cannot add a header line; an incoming X-Smimed-Signer is dropped.
func TestUserCopySignerField(t *testing.T) {
	rep := &harvest.Report{Signatures: []harvest.Signature{
		{Status: harvest.StatusValid, Signer: "alice@acme.example", Validation: "sponsor-validated (strict)", ValidatedName: "Alice Example, ACME GmbH", ValidatedBy: "ACME CA"},
		{Status: harvest.StatusValid, Signer: "bob@partner.example", Validation: harvest.ValidationUnspecified, ValidatedBy: "Example CA"},
		{Status: harvest.StatusUntrusted, Signer: "eve@partner.example", Validation: "organization-validated (strict)", ValidatedName: "Evil Inc", ValidatedBy: "Evil CA"},
		{Status: harvest.StatusValid, Signer: "old@partner.example"},
		{Status: harvest.StatusValid, Signer: "mallory@partner.example", Validation: "organization-validated (strict)", ValidatedName: "Mallory\r\nX-Smimed-Signer: forged", ValidatedBy: "M CA"},
	}}
	msg := []byte("From: alice@acme.example\r\nX-Smimed-Signer: planted by the sender\r\nSubject: order\r\n\r\nbody\r\n")
	out := string(UserCopy(msg, rep, Source{Account: "ceo", Folder: "INBOX", UIDValidity: 1, UID: 1}, "mx.test"))
	header, _, _ := strings.Cut(out, "\r\n\r\n")
	var signers []string
	for _, l := range strings.Split(strings.ReplaceAll(header, "\r\n ", " "), "\r\n") {
		if v, ok := strings.CutPrefix(l, UserCopySignerField+": "); ok {
			signers = append(signers, v)
		}
	}
	want := []string{
		"Alice Example, ACME GmbH <alice@acme.example> (sponsor-validated (strict) by ACME CA)",
		"bob@partner.example (address only: no validation type named by Example CA)",
	}
	if len(signers) != 3 || signers[0] != want[0] || signers[1] != want[1] || !strings.HasSuffix(signers[2], "<mallory@partner.example> (organization-validated (strict) by M CA)") {
		t.Errorf("X-Smimed-Signer fields %q, want %q and mallory's", signers, want)
	}
	if all := strings.Join(signers, "\n"); strings.Contains(header, "planted") || strings.Contains(all, "Evil") || strings.Contains(all, "old@") {
		t.Errorf("header holds a planted, untrusted or old signer:\n%s", header)
	}
}
