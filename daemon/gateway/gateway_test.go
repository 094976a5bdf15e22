package gateway

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		os.RemoveAll(shared.ca.Dir)
	}
	os.Exit(code)
}

func newTestReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

// decrypt runs openssl cms -decrypt with name's key on msg.
func (e *env) decrypt(msg []byte, name string) ([]byte, error) {
	out, err := testenv.OpenSSLTry(e.t, "", msg, "cms", "-decrypt", "-recip", e.p.certs[name], "-inkey", e.p.keys[name])
	if err != nil {
		return nil, fmt.Errorf("openssl cms -decrypt (%s): %v: %s", name, err, out)
	}
	return out, nil
}

// verify runs openssl cms -verify with the test CA on msg and returns
// the signed content.
func (e *env) verify(msg []byte) ([]byte, error) {
	out, err := testenv.OpenSSLTry(e.t, "", msg, "cms", "-verify", "-CAfile", e.p.ca.Cert, "-purpose", "smimesign")
	if err != nil {
		return nil, fmt.Errorf("openssl cms -verify: %v: %s", err, out)
	}
	return out, nil
}

// open decrypts msg with name's key and verifies the signed message
// inside, failing the test when either fails: the decrypted message and
// the signed content.
func (e *env) open(msg []byte, name string) (inner, content []byte) {
	e.t.Helper()
	inner, err := e.decrypt(msg, name)
	if err != nil {
		e.t.Fatal(err)
	}
	content, err = e.verify(inner)
	if err != nil {
		e.t.Fatalf("%s: %v", name, err)
	}
	return inner, content
}

func (e *env) only() relayed {
	e.t.Helper()
	msgs := e.relay.messages()
	if len(msgs) != 1 {
		e.t.Fatalf("relay received %d messages, want 1", len(msgs))
	}
	return msgs[0]
}

func TestPassExternalSender(t *testing.T) {
	e := startEnv(t, envOptions{})
	msg := message("someone@else.example", "alice@partner.example", "hello", "just passing\r\nbare\nLF and a NUL \x00 and 8-bit \xe4")
	if err := e.send("someone@else.example", []string{"alice@partner.example"}, msg); err != nil {
		t.Fatalf("send = %v", err)
	}
	m := e.only()
	// The relay gets the bytes as sent (the SMTP client turns the bare
	// LF into CRLF on the wire).
	want := strings.ReplaceAll(msg, "bare\nLF", "bare\r\nLF")
	if string(m.Data) != want {
		t.Fatalf("relayed =\n%q\nwant\n%q", m.Data, want)
	}
	if len(e.arch.records()) != 0 {
		t.Fatal("passed message archived")
	}
	if e.mon.count(OutcomePassed) != 1 {
		t.Fatalf("passed count = %d", e.mon.count(OutcomePassed))
	}
}

func TestSignOnlyWithoutCertificate(t *testing.T) {
	e := startEnv(t, envOptions{})
	msg := message("ceo@org.example", "carol@nocert.example", "quarterly", "numbers inside")
	if err := e.send("ceo@org.example", []string{"carol@nocert.example"}, msg); err != nil {
		t.Fatalf("send = %v", err)
	}
	m := e.only()
	content, err := e.verify(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(content, []byte("numbers inside")) {
		t.Fatalf("signed content = %q", content)
	}
	if _, err := e.decrypt(m.Data, "escrow"); err == nil {
		t.Fatal("a sign-only message decrypts")
	}
	recs := e.arch.records()
	if len(recs) != 1 || !slices.Equal(recs[0].O.Decision, []string{archive.DecisionSigned, archive.DecisionUnencrypted}) || recs[0].O.Signer != harvest.Fingerprint(e.look.signers["ceo@org.example"].Cert) {
		t.Fatalf("archive = %+v", recs)
	}
	if !bytes.Equal(recs[0].Sent, m.Data) {
		t.Fatal("archived message differs from what the relay received")
	}
	if !strings.Contains(strings.Join(recs[0].O.Reasons, ";"), "carol@nocert.example") {
		t.Fatalf("reasons %q do not name the recipient without certificate", recs[0].O.Reasons)
	}
	if !strings.Contains(e.log(), "carol@nocert.example") {
		t.Fatal("the log does not name the recipient without a certificate")
	}
}

func TestSignEncryptForPartnerAndEscrow(t *testing.T) {
	e := startEnv(t, envOptions{})
	msg := message("ceo@org.example", "alice@partner.example, bob@partner.example", "contract", "the secret terms")
	if err := e.send("ceo@org.example", []string{"alice@partner.example", "bob@partner.example", "cfo@org.example"}, msg); err != nil {
		t.Fatalf("send = %v", err)
	}
	m := e.only()
	if bytes.Contains(m.Data, []byte("the secret terms")) {
		t.Fatal("plaintext left the gateway")
	}
	if len(m.To) != 3 {
		t.Fatalf("relay recipients = %v", m.To)
	}
	for _, who := range []string{"alice", "bob", "escrow"} {
		_, content := e.open(m.Data, who)
		if !bytes.Contains(content, []byte("the secret terms")) {
			t.Fatalf("%s: content = %q", who, content)
		}
	}
	recs := e.arch.records()
	if len(recs) != 1 || !slices.Equal(recs[0].O.Decision, []string{archive.DecisionSigned, archive.DecisionEncrypted}) || len(recs[0].O.Recipients) != 3 || !recs[0].O.Recipients[2].Escrow {
		t.Fatalf("archive = %+v", recs)
	}
	if !bytes.Equal(recs[0].Plaintext, []byte(msg)) {
		t.Fatal("archived plaintext differs from what was submitted")
	}
	if e.mon.count(OutcomeSignedEncrypted) != 1 {
		t.Fatal("not counted")
	}
}

func TestEncryptAlwaysRefusesNamingRecipients(t *testing.T) {
	e := startEnv(t, envOptions{policy: func(p *Policy) {
		p.Rules = []config.GatewayPolicy{{Match: "*.strict.example", Encrypt: config.EncryptAlways}}
	}})
	to := []string{"alice@partner.example", "x@a.strict.example", "y@b.strict.example"}
	err := e.send("ceo@org.example", to, message("ceo@org.example", "x@a.strict.example", "hi", "secret"))
	code, enh, text := smtpCode(err)
	if code != 554 || enh != (smtp.EnhancedCode{5, 7, 5}) {
		t.Fatalf("send = %v, want 554 5.7.5", err)
	}
	for _, r := range to[1:] {
		if !strings.Contains(text, r) {
			t.Errorf("refusal %q does not name %s", text, r)
		}
	}
	if strings.Contains(text, "alice@partner.example") {
		t.Errorf("refusal %q names a recipient who has a certificate", text)
	}
	if n := len(e.relay.messages()); n != 0 {
		t.Fatalf("relay received %d messages", n)
	}
	if len(e.arch.records()) != 0 {
		t.Fatal("refused message archived")
	}
}

func TestTrigger(t *testing.T) {
	e := startEnv(t, envOptions{})
	// No certificate: refused although the policy is if-possible.
	err := e.send("ceo@org.example", []string{"carol@nocert.example"}, message("ceo@org.example", "carol@nocert.example", "[SECURE] salaries", "x"))
	if code, _, _ := smtpCode(err); code != 554 {
		t.Fatalf("triggered to a recipient without certificate: %v, want 554", err)
	}
	// With a certificate: encrypted, the trigger gone from the Subject.
	if err := e.send("ceo@org.example", []string{"cfo@org.example"}, message("ceo@org.example", "cfo@org.example", "salaries [secure]   2026", "the list")); err != nil {
		t.Fatal(err)
	}
	m := e.only()
	if bytes.Contains(m.Data, []byte("[secure]")) {
		t.Fatal("trigger left in the message")
	}
	if !bytes.Contains(m.Data, []byte("Subject: salaries 2026\r\n")) {
		t.Fatalf("subject not rewritten: %q", m.Data[:200])
	}
	e.open(m.Data, "escrow")
}

func TestPolicyNeverAndPerRecipient(t *testing.T) {
	e := startEnv(t, envOptions{policy: func(p *Policy) {
		p.Rules = []config.GatewayPolicy{
			{Match: "partner.example", Encrypt: config.EncryptNever, Sign: config.SignNever},
			{Match: "alice@partner.example", Encrypt: config.EncryptIfPossible},
		}
	}})
	// bob: domain rule never/never → passes as sent.
	msg := message("ceo@org.example", "bob@partner.example", "hi", "plain for bob")
	if err := e.send("ceo@org.example", []string{"bob@partner.example"}, msg); err != nil {
		t.Fatal(err)
	}
	// alice: the address rule wins for encrypt; sign comes from the domain rule (never).
	if err := e.send("ceo@org.example", []string{"alice@partner.example"}, message("ceo@org.example", "alice@partner.example", "hi", "for alice")); err != nil {
		t.Fatal(err)
	}
	msgs := e.relay.messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages", len(msgs))
	}
	if string(msgs[0].Data) != msg {
		t.Fatalf("bob's message changed: %q", msgs[0].Data)
	}
	inner, err := e.decrypt(msgs[1].Data, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(inner, []byte("for alice")) || bytes.Contains(inner, []byte("application/pkcs7-signature")) {
		t.Fatalf("alice's message: want encrypted, not signed: %q", inner)
	}
}

func TestRelayDown(t *testing.T) {
	e := startEnv(t, envOptions{noRelay: true})
	c := e.dial()
	err := c.Mail("ceo@org.example", nil)
	if code, enh, _ := smtpCode(err); code != 451 || enh != (smtp.EnhancedCode{4, 4, 1}) {
		t.Fatalf("MAIL with the relay down = %v, want 451 4.4.1", err)
	}
	if e.mon.relayErr == 0 {
		t.Fatal("relay error not counted")
	}
}

// TestRelayRedialAfterIdle: the next hop ends the session the gateway
// kept after a client's transaction (its idle timeout, as Postfix's
// smtpd_timeout does); the client's next transaction on the same session
// goes through on a new one instead of failing with 451.
func TestRelayRedialAfterIdle(t *testing.T) {
	e := startEnv(t, envOptions{relay: func(r *testRelay) { r.idleTimeout = 300 * time.Millisecond }})
	c := e.dial()
	for i := range 2 {
		if i == 1 {
			time.Sleep(time.Second) // the relay ends the idle session
		}
		if err := testenv.SendSMTP(c, "someone@else.example", []string{"alice@partner.example"}, message("someone@else.example", "alice@partner.example", "x", "y")); err != nil {
			t.Fatalf("transaction %d: %v", i+1, err)
		}
	}
	e.relay.mu.Lock()
	sessions := e.relay.sessions
	e.relay.mu.Unlock()
	if n := len(e.relay.messages()); n != 2 || sessions != 2 {
		t.Fatalf("relay took %d messages in %d sessions, want 2 in 2", n, sessions)
	}
	if e.mon.relayErr != 0 {
		t.Fatalf("%d relay errors counted, want none", e.mon.relayErr)
	}
}

func TestRelayRefusals(t *testing.T) {
	e := startEnv(t, envOptions{relay: func(r *testRelay) {
		r.refuseRcpt = func(to string) error {
			if strings.HasPrefix(to, "nobody@") {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
			}
			return nil
		}
	}})
	c := e.dial()
	if err := c.Mail("ceo@org.example", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("nobody@partner.example", nil); err == nil {
		t.Fatal("refused recipient accepted")
	} else if code, enh, _ := smtpCode(err); code != 550 || enh != (smtp.EnhancedCode{5, 1, 1}) {
		t.Fatalf("RCPT = %v, want the relay's 550 5.1.1", err)
	}
	if err := c.Rcpt("alice@partner.example", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(message("ceo@org.example", "alice@partner.example", "x", "y")))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if m := e.only(); len(m.To) != 1 || m.To[0] != "alice@partner.example" {
		t.Fatalf("relay recipients = %v", m.To)
	}
}

func TestRelayRefusesData(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  *smtp.SMTPError
	}{
		{"temporary", &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "queue full"}},
		{"permanent", &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "content refused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startEnv(t, envOptions{relay: func(r *testRelay) { r.dataErr = tc.err }})
			err := e.send("ceo@org.example", []string{"alice@partner.example"}, message("ceo@org.example", "alice@partner.example", "x", "y"))
			code, enh, _ := smtpCode(err)
			if code != tc.err.Code || enh != tc.err.EnhancedCode {
				t.Fatalf("send = %v, want the relay's %d", err, tc.err.Code)
			}
			if len(e.arch.records()) != 0 {
				t.Fatal("a message the relay refused was archived as sent")
			}
		})
	}
}

func TestComposeFailsClosed(t *testing.T) {
	e := startEnv(t, envOptions{composer: failingComposer{}})
	err := e.send("ceo@org.example", []string{"alice@partner.example"}, message("ceo@org.example", "alice@partner.example", "x", "secret"))
	if code, enh, _ := smtpCode(err); code != 451 || enh != (smtp.EnhancedCode{4, 3, 0}) {
		t.Fatalf("send = %v, want 451 4.3.0", err)
	}
	if n := len(e.relay.messages()); n != 0 {
		t.Fatal("something left after a failed build")
	}
}

func TestLookupErrorFailsClosed(t *testing.T) {
	e := startEnv(t, envOptions{})
	e.look.err = errors.New("store unreadable")
	err := e.send("ceo@org.example", []string{"alice@partner.example"}, message("ceo@org.example", "alice@partner.example", "x", "secret"))
	if code, _, _ := smtpCode(err); code != 451 {
		t.Fatalf("send = %v, want 451", err)
	}
	if n := len(e.relay.messages()); n != 0 {
		t.Fatal("something left")
	}
}

func TestArchiveFailureKeepsFiles(t *testing.T) {
	e := startEnv(t, envOptions{})
	e.arch.err = errors.New("disk full")
	if err := e.send("ceo@org.example", []string{"alice@partner.example"}, message("ceo@org.example", "alice@partner.example", "x", "secret")); err != nil {
		t.Fatalf("send = %v: the relay took it, the client must not send it again", err)
	}
	kept, _ := filepath.Glob(filepath.Join(filepath.Dir(e.gw.cfg.TempDir), "gateway-unarchived", "*", "sent.eml"))
	if len(kept) != 1 {
		t.Fatalf("kept = %v", kept)
	}
	sent, _ := os.ReadFile(kept[0])
	if !bytes.Equal(sent, e.only().Data) {
		t.Fatal("kept message differs from the one sent")
	}
	// Archived later, with its facts, and removed.
	e.arch.err = nil
	dir := filepath.Join(filepath.Dir(e.gw.cfg.TempDir), UnarchivedDir)
	n, err := ArchiveKept(dir, e.arch, e.gw.log)
	if err != nil || n != 1 {
		t.Fatalf("ArchiveKept() = %d, %v", n, err)
	}
	recs := e.arch.records()
	if len(recs) != 1 || !bytes.Equal(recs[0].Sent, sent) || recs[0].O.MailFrom != "ceo@org.example" || len(recs[0].O.Recipients) != 2 {
		t.Fatalf("archived later: %+v", recs)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
}

func TestSizeLimits(t *testing.T) {
	e := startEnv(t, envOptions{cfg: func(c *Config) { c.MaxMessageSize = 4096 }})
	c := e.dial()
	err := c.Mail("ceo@org.example", &smtp.MailOptions{Size: 5000})
	if code, enh, _ := smtpCode(err); code != 552 || enh != (smtp.EnhancedCode{5, 3, 4}) {
		t.Fatalf("MAIL SIZE=5000 = %v, want 552 5.3.4", err)
	}
	c.Reset()
	big := message("ceo@org.example", "alice@partner.example", "x", strings.Repeat("0123456789abcdef\r\n", 400))
	err = testenv.SendSMTP(c, "ceo@org.example", []string{"alice@partner.example"}, big)
	if code, enh, _ := smtpCode(err); code != 552 || enh != (smtp.EnhancedCode{5, 3, 4}) {
		t.Fatalf("DATA over the limit = %v, want 552 5.3.4", err)
	}
	if n := len(e.relay.messages()); n != 0 {
		t.Fatal("too large a message relayed")
	}
	// The session goes on.
	if err := testenv.SendSMTP(c, "ceo@org.example", []string{"alice@partner.example"}, message("ceo@org.example", "alice@partner.example", "x", "small")); err != nil {
		t.Fatalf("next message = %v", err)
	}
}

func TestStalledClient(t *testing.T) {
	e := startEnv(t, envOptions{cfg: func(c *Config) { c.CommandTimeout = 300 * time.Millisecond; c.DataTimeout = 300 * time.Millisecond }})
	// A command that never comes.
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	br.ReadString('\n') // greeting
	start := time.Now()
	if _, err := br.ReadString('\n'); err == nil {
		// go-smtp may say goodbye; either way the connection ends.
		br.ReadString('\n')
	}
	if time.Since(start) > 4*time.Second {
		t.Fatal("stalled session not ended")
	}
	// Data that stops in the middle.
	c := e.dial()
	if err := c.Mail("ceo@org.example", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("alice@partner.example", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("From: ceo@org.example\r\nSubject: half"))
	time.Sleep(time.Second)
	if n := len(e.relay.messages()); n != 0 {
		t.Fatal("a half message was relayed")
	}
	// The gateway still serves.
	if err := e.send("ceo@org.example", []string{"alice@partner.example"}, message("ceo@org.example", "alice@partner.example", "x", "y")); err != nil {
		t.Fatalf("after a stalled client: %v", err)
	}
}

func TestHostileContent(t *testing.T) {
	e := startEnv(t, envOptions{})
	cases := map[string]string{
		"bare LF":       "From: ceo@org.example\nTo: carol@nocert.example\nSubject: lf\n\nline\nline\n",
		"NUL":           "From: ceo@org.example\r\nSubject: nul\x00\r\n\r\nbody\x00\r\n",
		"8-bit header":  "From: \"J\xf6rg\" <ceo@org.example>\r\nSubject: \xe4\xf6\xfc\r\n\r\n8-bit \xe4\r\n",
		"no header end": "From: ceo@org.example\r\nSubject: x",
		"no From":       "Subject: anonymous\r\n\r\nbody\r\n",
		"two From":      "From: ceo@org.example\r\nFrom: other@else.example\r\n\r\nbody\r\n",
		"garbage From":  "From: <<<@@@>>>\r\n\r\nbody\r\n",
		"long header":   "From: ceo@org.example\r\nX-Long: " + strings.Repeat("a", 3000) + "\r\n\r\nbody\r\n",
	}
	for name, msg := range cases {
		err := e.send("ceo@org.example", []string{"carol@nocert.example"}, msg)
		if err != nil {
			t.Errorf("%s: send = %v", name, err)
		}
	}
	if n := len(e.relay.messages()); n != len(cases) {
		t.Fatalf("relay received %d of %d", n, len(cases))
	}
	// A line over 64 KiB: refused for good, the session goes on.
	err := e.send("ceo@org.example", []string{"carol@nocert.example"}, "From: ceo@org.example\r\n\r\n"+strings.Repeat("x", 70000)+"\r\n")
	if code, enh, _ := smtpCode(err); code != 554 || enh != (smtp.EnhancedCode{5, 6, 0}) {
		t.Fatalf("70000-octet line: %v, want 554 5.6.0", err)
	}
	// The 8-bit display name still gives the address: signed.
	for _, m := range e.relay.messages() {
		if bytes.Contains(m.Data, []byte("8-bit \xe4")) && !bytes.Contains(m.Data, []byte("pkcs7-signature")) {
			t.Fatal("message with an 8-bit display name not signed")
		}
	}
}

func TestUnreadableFromMustNotLeaveUnencrypted(t *testing.T) {
	e := startEnv(t, envOptions{policy: func(p *Policy) { p.Encrypt = config.EncryptAlways }})
	err := e.send("ceo@org.example", []string{"carol@nocert.example"}, "From: <<<@@@>>>\r\n\r\nsecret\r\n")
	if code, _, _ := smtpCode(err); code != 550 {
		t.Fatalf("send = %v, want 550", err)
	}
	if len(e.relay.messages()) != 0 {
		t.Fatal("relayed")
	}
}

func TestSMTPUTF8(t *testing.T) {
	e := startEnv(t, envOptions{})
	c := e.dial()
	if err := c.Mail("jörg@org.example", &smtp.MailOptions{UTF8: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("zoë@partner.example", nil); err != nil {
		t.Fatal(err)
	}
	w, _ := c.Data()
	w.Write([]byte("From: Jörg <jörg@org.example>\r\nTo: zoë@partner.example\r\nSubject: grüße\r\n\r\nhallo\r\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	m := e.only()
	if !m.UTF8 || m.From != "jörg@org.example" {
		t.Fatalf("relayed from %q utf8 %v", m.From, m.UTF8)
	}
}

func TestHundredsOfRecipients(t *testing.T) {
	e := startEnv(t, envOptions{})
	var to []string
	for i := range 300 {
		to = append(to, fmt.Sprintf("user%d@nocert.example", i))
	}
	if err := e.send("ceo@org.example", to, message("ceo@org.example", "list@nocert.example", "many", "hello all")); err != nil {
		t.Fatal(err)
	}
	m := e.only()
	if len(m.To) != 300 {
		t.Fatalf("relay recipients = %d", len(m.To))
	}
	if _, err := e.verify(m.Data); err != nil {
		t.Fatal(err)
	}
	// The same to 300 that must be encrypted: one refusal, shortened.
	rt := *e.gw.rt.Load()
	pol := *rt.Policy
	pol.Encrypt = config.EncryptAlways
	rt.Policy = &pol
	e.gw.SetRuntime(&rt)
	err := e.send("ceo@org.example", to, message("ceo@org.example", "list@nocert.example", "many", "hello all"))
	code, _, text := smtpCode(err)
	if code != 554 || !strings.Contains(text, "300 recipients") || len(text) > 500 {
		t.Fatalf("send = %v", err)
	}
}

func TestMaxSessions(t *testing.T) {
	e := startEnv(t, envOptions{cfg: func(c *Config) { c.MaxSessions = 1 }})
	first := e.dial()
	if err := first.Noop(); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(conn).ReadString('\n')
	if !strings.HasPrefix(line, "421 4.3.2") {
		t.Fatalf("second session greeted %q, want 421 4.3.2", line)
	}
}

// submission: the relay wants AUTH; users may send as their own address.
func submissionRelay(r *testRelay) {
	r.users = map[string]string{"ceo@org.example": "s3cret"}
	r.mailAllowed = func(login, from string) bool { return login == from }
}

func TestSubmissionAuthPassThrough(t *testing.T) {
	e := startEnv(t, envOptions{mode: config.ModeSubmission, relay: submissionRelay})
	c := e.dial()
	if err := c.Mail("ceo@org.example", nil); err == nil {
		t.Fatal("MAIL before AUTH accepted")
	} else if code, enh, _ := smtpCode(err); code != 530 || enh != (smtp.EnhancedCode{5, 7, 0}) {
		t.Fatalf("MAIL before AUTH = %v, want 530 5.7.0", err)
	}
	err := c.Auth(sasl.NewPlainClient("", "ceo@org.example", "wrong"))
	if code, enh, text := smtpCode(err); code != 535 || enh != (smtp.EnhancedCode{5, 7, 8}) || !strings.Contains(text, "upstream says") {
		t.Fatalf("AUTH with a wrong password = %v, want the upstream's 535 5.7.8", err)
	}
	c2 := e.dial()
	if err := c2.Auth(sasl.NewLoginClient("ceo@org.example", "s3cret")); err != nil {
		t.Fatalf("AUTH LOGIN = %v", err)
	}
	// The upstream refuses another sender for this login.
	if err := c2.Mail("other@org.example", nil); err == nil {
		t.Fatal("foreign MAIL FROM accepted")
	} else if code, _, text := smtpCode(err); code != 553 || !strings.Contains(text, "upstream says") {
		t.Fatalf("MAIL = %v, want the upstream's 553", err)
	}
	c2.Reset()
	// From someone else than the login's address: refused.
	err = testenv.SendSMTP(c2, "ceo@org.example", []string{"alice@partner.example"}, message("cfo@org.example", "alice@partner.example", "x", "y"))
	if code, enh, _ := smtpCode(err); code != 550 || enh != (smtp.EnhancedCode{5, 7, 1}) {
		t.Fatalf("From another address = %v, want 550 5.7.1", err)
	}
	if err := testenv.SendSMTP(c2, "ceo@org.example", []string{"alice@partner.example"}, message("ceo@org.example", "alice@partner.example", "x", "via the login")); err != nil {
		t.Fatal(err)
	}
	m := e.only()
	if m.Login != "ceo@org.example" {
		t.Fatalf("relayed through login %q", m.Login)
	}
	if _, err := e.decrypt(m.Data, "alice"); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(e.log(), "s3cret") || strings.Contains(e.log(), "wrong") {
		t.Fatal("a password is in the log")
	}
	recs := e.arch.records()
	if len(recs) != 1 || !slices.Contains(recs[0].O.Reasons, "submitted with the login ceo@org.example") {
		t.Fatalf("archive = %+v", recs)
	}
}

func TestSubmissionTLS(t *testing.T) {
	p := testPKI(t)
	cert, err := tls.LoadX509KeyPair(p.certs["ceo"], p.keys["ceo"])
	if err != nil {
		t.Fatal(err)
	}
	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := startEnv(t, envOptions{mode: config.ModeSubmission, relay: submissionRelay, cfg: func(c *Config) {
		c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		c.ListenTLS = tlsLn
		c.AllowInsecureAuth = false
	}})
	roots := x509.NewCertPool()
	roots.AddCert(testenv.ReadCert(t, p.ca.Cert))
	tc := &tls.Config{RootCAs: roots, ServerName: "ceo"}
	// Plain: AUTH needs TLS first.
	plain := e.dial()
	if err := plain.Auth(sasl.NewPlainClient("", "ceo@org.example", "s3cret")); err == nil {
		t.Fatal("AUTH without TLS accepted")
	}
	tc.InsecureSkipVerify = true // the test certificate names no host
	st, err := smtp.DialStartTLS(e.addr, tc)
	if err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	defer st.Close()
	if err := st.Auth(sasl.NewPlainClient("", "ceo@org.example", "s3cret")); err != nil {
		t.Fatalf("AUTH after STARTTLS: %v", err)
	}
	if err := testenv.SendSMTP(st, "ceo@org.example", []string{"carol@nocert.example"}, message("ceo@org.example", "carol@nocert.example", "x", "starttls")); err != nil {
		t.Fatal(err)
	}
	im, err := smtp.DialTLS(e.tlsAddr, tc)
	if err != nil {
		t.Fatalf("implicit TLS: %v", err)
	}
	defer im.Close()
	if err := im.Auth(sasl.NewPlainClient("", "ceo@org.example", "s3cret")); err != nil {
		t.Fatalf("AUTH on implicit TLS: %v", err)
	}
	if err := testenv.SendSMTP(im, "ceo@org.example", []string{"carol@nocert.example"}, message("ceo@org.example", "carol@nocert.example", "x", "implicit")); err != nil {
		t.Fatal(err)
	}
	if n := len(e.relay.messages()); n != 2 {
		t.Fatalf("relay received %d", n)
	}
}

func TestFilterOffersNoAuth(t *testing.T) {
	e := startEnv(t, envOptions{})
	c := e.dial()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Fatal("filter mode offers AUTH")
	}
}

// panicComposer panics, as a bug on a hostile message would.
type panicComposer struct{ failingComposer }

func (panicComposer) Sign(io.Writer, io.Reader, *Signer, ComposeOptions) error { panic("boom") }

func TestPanicIsContained(t *testing.T) {
	e := startEnv(t, envOptions{composer: panicComposer{}})
	err := e.send("ceo@org.example", []string{"carol@nocert.example"}, message("ceo@org.example", "carol@nocert.example", "x", "y"))
	if code, _, _ := smtpCode(err); code != 451 {
		t.Fatalf("send = %v, want 451", err)
	}
	// The gateway still serves: a message that passes.
	if err := e.send("x@else.example", []string{"carol@nocert.example"}, message("x@else.example", "carol@nocert.example", "x", "y")); err != nil {
		t.Fatalf("after the panic: %v", err)
	}
	if n := len(e.relay.messages()); n != 1 {
		t.Fatalf("relay received %d", n)
	}
}
