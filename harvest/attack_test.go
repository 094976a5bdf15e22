package harvest

import (
	"bufio"
	"bytes"
	"net/textproto"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/smimed/smimed/daemon/testenv"
)

// Regression tests for the attacks of the "trust under attack" review: each
// message is made by OpenSSL with the fixture PKI, and the expected verdict
// follows from the attack's premise (who really signed what), never from
// the engine's own output.

// signAs signs entity with the fixture certificate name (alice, bob, …,
// issued under the intermediate) and returns the multipart/signed message
// under the given outer header.
func signAs(t *testing.T, dir, name, header string, entity []byte) []byte {
	t.Helper()
	return append([]byte(header), testenv.OpenSSLSign(t, dir, name, entity)...)
}

// Attack 2: bob holds a trusted certificate for bob@elsewhere.example and
// dresses his From field up as alice's.
func TestLookalikeFrom(t *testing.T) {
	testenv.NeedOpenSSL(t)
	dir := t.TempDir()
	entity := []byte("Content-Type: text/plain\r\n\r\nPlease change our bank details.\r\n")
	eng := New(Options{Roots: fixtureRoots(t)})
	for _, tc := range []struct{ header, want string }{
		{"From: bob@elsewhere.example\r\n", StatusValid}, // the control: bob as himself
		{"From: Bob Example <bob@elsewhere.example>\r\n", StatusValid},
		{"From: \"Bob (bob@elsewhere.example)\" <bob@elsewhere.example>\r\n", StatusValid},
		{"From: \"Sales, Elsewhere\" <bob@elsewhere.example>\r\n", StatusValid},
		// any word with an at sign in the display name, whatever follows it
		{"From: \"Sales @ Elsewhere\" <bob@elsewhere.example>\r\n", StatusMismatch},
		{"From: \"alice@partner\u3002example\" <bob@elsewhere.example>\r\n", StatusMismatch},
		{"From: \"alice@partner\ua4f8example\" <bob@elsewhere.example>\r\n", StatusMismatch},
		// drawn right to left it reads alice@partner.example
		{"From: =?utf-8?b?4oCuZWxwbWF4ZS5yZW50cmFwQGVjaWxh4oCs?= <bob@elsewhere.example>\r\n", StatusMismatch},
		{"From: \"Bob \u202eExample\" <bob@elsewhere.example>\r\n", StatusMismatch},
		{"From: =?utf-8?q?Re=3A_Bob?= <bob@elsewhere.example>\r\n", StatusValid},
		// group syntax: the group name is shown, net/mail drops it
		{"From: \"alice@partner.example\": bob@elsewhere.example;\r\n", StatusMismatch},
		{"From: Alice: bob@elsewhere.example;\r\n", StatusMismatch},
		// at-sign lookalikes in the display name
		{"From: \"alice\uff20partner.example\" <bob@elsewhere.example>\r\n", StatusMismatch},
		{"From: \"alice\ufe6bpartner.example\" <bob@elsewhere.example>\r\n", StatusMismatch},
		{"From: \"alice @ partner.example\" <bob@elsewhere.example>\r\n", StatusMismatch},
		{"From: \"alice\u200b@partner.example\" <bob@elsewhere.example>\r\n", StatusMismatch},
		{"From: \"\uff41lice@partner\uff0eexample\" <bob@elsewhere.example>\r\n", StatusMismatch},
		// the same in an encoded word, and in a comment
		{"From: =?utf-8?b?YWxpY2XvvKBwYXJ0bmVyLmV4YW1wbGU=?= <bob@elsewhere.example>\r\n", StatusMismatch},
		{"From: bob@elsewhere.example (alice@partner.example)\r\n", StatusMismatch},
		{"From: alice@partner.example <bob@elsewhere.example>\r\n", StatusMismatch},
	} {
		res := process(t, eng, signAs(t, dir, "bob", tc.header, entity))
		if s := res.Report.Signatures; len(s) != 1 || s[0].Status != tc.want {
			t.Errorf("%q: signatures = %+v, want %s", tc.header, s, tc.want)
		} else if tc.want == StatusMismatch && s[0].Reason == "" {
			t.Errorf("%q: mismatch without a reason", tc.header)
		}
	}
}

// Attack 1: a genuine signed part from alice beside the attacker's own
// content. The signature is good, but it does not cover what the reader
// is shown: partial, never valid, and nothing is harvested.
func TestPartialCoverage(t *testing.T) {
	testenv.NeedOpenSSL(t)
	dir := t.TempDir()
	signedPart := signAs(t, dir, "alice", "", []byte("Content-Type: text/plain\r\n\r\nSee you at the meeting.\r\n"))
	html := "Content-Type: text/html\r\n\r\n<p>Wire the money to IBAN XX00 6666.</p>\r\n"
	mixed := func(first, second string) []byte {
		return []byte("Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n" + first + "\r\n--zz\r\n" + second + "\r\n--zz--\r\n")
	}
	header := "From: alice@partner.example\r\nTo: bob@org.example\r\nSubject: payment\r\n"
	encrypt := func(entity []byte) []byte {
		enc := testenv.OpenSSLInput(t, dir, entity, "cms", "-encrypt", "-aes256", filepath.Join(testdataDir, "pki", "org-new.crt"))
		return append([]byte(header), enc...)
	}
	alternative := []byte("Content-Type: multipart/alternative; boundary=aa\r\n\r\n--aa\r\n" + string(signedPart) + "\r\n--aa\r\n" + html + "\r\n--aa--\r\n")
	for _, tc := range []struct {
		name, want, notSigned string
		raw                   []byte
	}{
		{"mixed: attacker html and a signed part", StatusPartial, "text/html part", append([]byte(header), mixed(html, string(signedPart))...)},
		{"mixed: the same, encrypted to the organisation", StatusPartial, "text/html part", encrypt(mixed(html, string(signedPart)))},
		{"alternative: signed text, unsigned html", StatusPartial, "text/html part", append([]byte(header), alternative...)},
		{"mixed: an attachment beside the signed part", StatusPartial, "application/pdf part \"invoice.pdf\"",
			append([]byte(header), mixed(string(signedPart), "Content-Type: application/pdf; name=invoice.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=")...)},
		// tricks from a review: a close delimiter with text after it
		// ("--zz--x" is none, RFC 2046 5.1.1), more parts than the engine
		// examines, an empty part that is still an attachment by name,
		// a third part in the multipart/signed itself
		{"mixed: a malformed close delimiter before the html", StatusPartial, "text/html part",
			append([]byte(header), []byte("Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n"+string(signedPart)+"\r\n--zz--x\r\n--zz\r\n"+html+"\r\n--zz--\r\n")...)},
		{"mixed: 200 empty parts before the html", StatusPartial, "the parts after the first 200",
			append([]byte(header), []byte("Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n"+string(signedPart)+"\r\n"+strings.Repeat("--zz\r\n", 200)+"--zz\r\n"+html+"\r\n--zz--\r\n")...)},
		{"mixed: an empty text part named as an attachment", StatusPartial, "text/plain part \"URGENT new IBAN.txt\"",
			append([]byte(header), mixed(string(signedPart), "Content-Type: text/plain\r\nContent-Disposition: attachment; filename=\"URGENT new IBAN.txt\"\r\n\r\n ")...)},
		{"multipart/signed with a third part", StatusPartial, "1 part(s) after the signature", append([]byte(header), thirdPart(t, signedPart, html)...)},
		// the controls: nothing shown beside the signed part
		{"mixed: a signed part and an empty part", StatusValid, "", append([]byte(header), mixed("Content-Type: text/plain\r\n\r\n \r\n", string(signedPart))...)},
		{"the signed part as the whole message", StatusValid, "", append([]byte(header), signedPart...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := openTestStore(t, filepath.Join(t.TempDir(), "smimed.db"), false)
			defer st.Close()
			res := process(t, New(Options{Roots: fixtureRoots(t), Keys: keyList(orgKeys(t)), Store: st, Harvest: true}), tc.raw)
			s := res.Report.Signatures
			if len(s) != 1 || s[0].Status != tc.want {
				t.Fatalf("signatures = %+v, want one %s", s, tc.want)
			}
			es, _ := st.ByEmail("alice@partner.example")
			if tc.want == StatusPartial {
				if !strings.Contains(s[0].Reason, "not signed: "+tc.notSigned) {
					t.Errorf("reason %q does not name %q", s[0].Reason, tc.notSigned)
				}
				if len(res.Report.Harvested) != 0 || len(es) != 0 {
					t.Errorf("a partial signature harvested %+v (store: %+v)", res.Report.Harvested, es)
				}
			} else if len(Usable(es)) != 1 {
				t.Errorf("store for alice = %+v, want her certificate usable", es)
			}
		})
	}
}

// Attack 3: alice signed a whole message whose Subject is "lunch on
// Friday?"; the attacker rewrites the outer Subject (and, in one case,
// the outer From). The reader must be shown what alice signed.
func TestProtectedHeaders(t *testing.T) {
	testenv.NeedOpenSSL(t)
	dir := t.TempDir()
	inner := "From: alice@partner.example\r\nTo: bob@org.example\r\nSubject: lunch on Friday?\r\nMessage-ID: <lunch@partner.example>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n"
	body := "Content-Type: text/plain\r\n\r\nShall we?\r\n"
	forged := "From: alice@partner.example\r\nTo: bob@org.example\r\nSubject: URGENT: change of bank details\r\nMessage-ID: <lunch@partner.example>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\nX-Smimed-Unprotected-From: planted\r\n"
	wrapped := []byte("Content-Type: message/rfc822; forwarded=no\r\n\r\n" + inner + body)
	hpClear := []byte("Content-Type: text/plain; hp=\"clear\"\r\n" + inner + "\r\nShall we?\r\n")
	hpCipher := []byte("Content-Type: text/plain; hp=\"cipher\"\r\n" + inner + "\r\nShall we?\r\n")
	signEncrypt := func(header string, entity []byte) []byte {
		signed := signAs(t, dir, "alice", "", entity)
		enc := testenv.OpenSSLInput(t, dir, signed, "cms", "-encrypt", "-aes256", filepath.Join(testdataDir, "pki", "org-new.crt"))
		return append([]byte(header), enc...)
	}
	obscured := strings.Replace(forged, "Subject: URGENT: change of bank details", "Subject: [...]", 1)
	for _, tc := range []struct {
		name           string
		raw            []byte
		want           string
		unprotected    string // the X-Smimed-Unprotected-Subject value expected, or ""
		reasonContains string
	}{
		{"message/rfc822 wrapper, outer Subject changed", signAs(t, dir, "alice", forged, wrapped), StatusValid, "URGENT: change of bank details", "Subject"},
		{"hp=clear, outer Subject changed", signAs(t, dir, "alice", forged, hpClear), StatusValid, "URGENT: change of bank details", "Subject"},
		{"hp=cipher, signed then encrypted, placeholder Subject", signEncrypt(obscured, hpCipher), StatusValid, "", ""},
		{"hp=clear, outer From changed", signAs(t, dir, "alice", strings.Replace(forged, "From: alice@partner.example", "From: mallory@evil.example", 1), hpClear),
			StatusMismatch, "URGENT: change of bank details", "differs from the protected From"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := process(t, New(Options{Roots: fixtureRoots(t), Keys: keyList(orgKeys(t))}), tc.raw)
			s := res.Report.Signatures
			if len(s) != 1 || s[0].Status != tc.want || !strings.Contains(s[0].Reason, tc.reasonContains) {
				t.Fatalf("signatures = %+v, want %s with %q in the reason", s, tc.want, tc.reasonContains)
			}
			hdr := plaintextHeader(t, res.Plaintext)
			if got := hdr.Get("Subject"); got != "lunch on Friday?" {
				t.Errorf("plaintext Subject = %q, want the protected one", got)
			}
			if got := hdr.Get("From"); got != "alice@partner.example" {
				t.Errorf("plaintext From = %q, want the protected one", got)
			}
			if res.Report.Subject != "lunch on Friday?" {
				t.Errorf("report Subject = %q", res.Report.Subject)
			}
			if got := hdr.Values("X-Smimed-Unprotected-Subject"); (tc.unprotected == "" && len(got) != 0) || (tc.unprotected != "" && (len(got) != 1 || got[0] != tc.unprotected)) {
				t.Errorf("X-Smimed-Unprotected-Subject = %q, want %q", got, tc.unprotected)
			}
			for _, v := range hdr.Values("X-Smimed-Unprotected-From") {
				if v == "planted" {
					t.Errorf("the sender's own X-Smimed-Unprotected-From reached the plaintext")
				}
			}
		})
	}
}

// Attack 6: mallory sends a certs-only message carrying alice's real,
// CA-issued certificate. Nothing in it is signed: it must not become
// usable for alice (nor for anyone), and it is quarantined at most, for
// the sender's own address and only if the certificate names it.
func TestCertsOnlyPlantsNothing(t *testing.T) {
	testenv.NeedOpenSSL(t)
	dir := t.TempDir()
	degenerate := testenv.OpenSSL(t, dir, "crl2pkcs7", "-nocrl", "-certfile", filepath.Join(testdataDir, "pki", "alice.crt"),
		"-certfile", filepath.Join(testdataDir, "pki", "intermediate.pem"), "-outform", "DER")
	body := wrapBase64(degenerate)
	for _, from := range []string{"mallory@evil.example", "alice@partner.example"} {
		raw := []byte("From: " + from + "\r\nSubject: my new certificate\r\nMIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=certs-only; name=smime.p7c\r\nContent-Transfer-Encoding: base64\r\n\r\n" + body)
		st := openTestStore(t, filepath.Join(t.TempDir(), "smimed.db"), false)
		res := process(t, New(Options{Roots: fixtureRoots(t), Store: st, Harvest: true}), raw)
		es, err := st.ByEmail("alice@partner.example")
		if err != nil {
			t.Fatal(err)
		}
		if len(Usable(es)) != 0 {
			t.Errorf("From %s: certs-only made %+v usable for alice", from, Usable(es))
		}
		wantQ := from == "alice@partner.example"
		if (len(es) == 1) != wantQ || (wantQ && es[0].QuarantineReason != reasonCertsOnly) {
			t.Errorf("From %s: alice's entries = %+v, want quarantined: %v", from, es, wantQ)
		}
		if ims, _ := st.Intermediates(); len(ims) != 0 {
			t.Errorf("From %s: a certs-only message stored intermediates", from)
		}
		if len(res.Report.Signatures) != 0 {
			t.Errorf("signatures = %+v", res.Report.Signatures)
		}
		st.Close()
	}
}

// plaintextHeader parses a plaintext's header with net/textproto, a
// parser of its own.
func plaintextHeader(t *testing.T, msg []byte) textproto.MIMEHeader {
	t.Helper()
	h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(msg))).ReadMIMEHeader()
	if err != nil {
		t.Fatalf("plaintext header: %v", err)
	}
	return h
}

// An encrypted message that cannot be decrypted, for any reason, is
// undecryptable with the reason: the inventory of mail the organisation
// cannot read (archive failed) must not miss a truncated one.
func TestUndecryptableReasons(t *testing.T) {
	testenv.NeedOpenSSL(t)
	dir := t.TempDir()
	plain := []byte("Content-Type: text/plain\r\n\r\nquarterly figures\r\n")
	der := testenv.OpenSSLInput(t, dir, plain, "cms", "-encrypt", "-aes256", "-outform", "DER", filepath.Join(testdataDir, "pki", "org-new.crt"))
	toBob := testenv.OpenSSLInput(t, dir, plain, "cms", "-encrypt", "-aes256", "-outform", "DER", filepath.Join(testdataDir, "pki", "bob.crt"))
	// The last bytes of the DER are the end of the ciphertext: flipping
	// one breaks its CBC padding or its content, never the structure.
	corrupt := bytes.Clone(der)
	corrupt[len(corrupt)-3] ^= 0xff
	msg := func(smimeType string, body []byte) []byte {
		ct := "application/pkcs7-mime; name=smime.p7m"
		if smimeType != "" {
			ct += "; smime-type=" + smimeType
		}
		return []byte("From: alice@partner.example\r\nMIME-Version: 1.0\r\nContent-Type: " + ct + "\r\nContent-Transfer-Encoding: base64\r\n\r\n" + wrapBase64(body))
	}
	eng := New(Options{Keys: keyList(orgKeys(t))})
	for _, tc := range []struct {
		name   string
		raw    []byte
		reason string
	}{
		{"truncated", msg("enveloped-data", der[:len(der)/2]), DecryptUnparsable},
		{"garbage", msg("enveloped-data", []byte("this is not CMS at all")), DecryptUnparsable},
		{"garbage without smime-type", msg("", []byte{0x30, 0x03, 0x02, 0x01}), DecryptUnparsable},
		{"not base64", []byte("From: a@b.example\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!\r\n"), DecryptUnparsable},
		{"to another key", msg("enveloped-data", toBob), DecryptNoKey},
		{"corrupt ciphertext", msg("enveloped-data", corrupt), DecryptCorrupt},
	} {
		res := process(t, eng, tc.raw)
		if d := res.Report.Decryption; d.Status != DecryptFailed || d.Reason != tc.reason || d.Error == "" {
			t.Errorf("%s: decryption = %+v, want failed, %s, with the error", tc.name, d, tc.reason)
		}
	}
	// A broken signed-data body is not encrypted mail.
	res := process(t, eng, msg("signed-data", der[:20]))
	if d := res.Report.Decryption; d.Status != DecryptNone {
		t.Errorf("broken signed-data: decryption = %+v, want none", d)
	}
}

// A mailing list wraps alice's opaque signed mail (Outlook's default) in a
// multipart/mixed with a footer: the signed part is unwrapped for the
// reader and judged, and the footer makes it partial.
func TestOpaqueSignedPartInWrapper(t *testing.T) {
	testenv.NeedOpenSSL(t)
	dir := t.TempDir()
	key := privateCopy(t, dir, "alice.key")
	opaque := testenv.OpenSSLInput(t, dir, []byte("Content-Type: text/plain\r\n\r\nMinutes of the meeting.\r\n"), "cms", "-sign", "-nodetach",
		"-signer", filepath.Join(testdataDir, "pki", "alice.crt"), "-inkey", key, "-certfile", filepath.Join(testdataDir, "pki", "intermediate.pem"))
	if !bytes.Contains(opaque, []byte("smime-type=signed-data")) {
		t.Fatalf("OpenSSL did not make opaque signed data:\n%s", opaque[:200])
	}
	header := "From: alice@partner.example\r\nTo: list@org.example\r\nSubject: minutes\r\nContent-Type: multipart/mixed; boundary=list\r\n\r\n"
	for _, tc := range []struct {
		name, footer, want string
	}{
		{"with a footer", "--list\r\nContent-Type: text/plain\r\n\r\nUnsubscribe: https://lists.example/\r\n", StatusPartial},
		{"alone", "", StatusValid},
	} {
		raw := []byte(header + "--list\r\n" + string(opaque) + "\r\n" + tc.footer + "--list--\r\n")
		res := process(t, New(Options{Roots: fixtureRoots(t)}), raw)
		if s := res.Report.Signatures; len(s) != 1 || s[0].Status != tc.want {
			t.Errorf("%s: signatures = %+v, want %s", tc.name, s, tc.want)
		}
		p := string(res.Plaintext)
		if !strings.Contains(p, "Minutes of the meeting.") || strings.Contains(p, "smime.p7m") || strings.Contains(p, "signed-data") {
			t.Errorf("%s: plaintext does not show the signed text in the clear:\n%s", tc.name, p)
		}
		if tc.footer != "" && !strings.Contains(p, "Unsubscribe: https://lists.example/") {
			t.Errorf("%s: the footer was lost:\n%s", tc.name, p)
		}
		// Another parser must see one multipart with the unwrapped part.
		hdr := plaintextHeader(t, res.Plaintext)
		if !strings.HasPrefix(hdr.Get("Content-Type"), "multipart/mixed") {
			t.Errorf("%s: Content-Type = %q", tc.name, hdr.Get("Content-Type"))
		}
	}
}

// thirdPart adds a part after the signature of an OpenSSL multipart/signed
// entity, before its close delimiter.
func thirdPart(t *testing.T, signed []byte, part string) []byte {
	t.Helper()
	m := regexp.MustCompile(`boundary="([^"]+)"`).FindSubmatch(signed)
	if m == nil {
		t.Fatalf("no boundary in OpenSSL's output:\n%s", signed)
	}
	closeDelim := "--" + string(m[1]) + "--"
	i := bytes.LastIndex(signed, []byte(closeDelim))
	if i < 0 {
		t.Fatalf("no close delimiter %q", closeDelim)
	}
	out := append([]byte{}, signed[:i]...)
	out = append(out, "--"+string(m[1])+"\r\n"+part+"\r\n"...)
	return append(out, signed[i:]...)
}
