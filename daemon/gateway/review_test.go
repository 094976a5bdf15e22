package gateway

import (
	"bufio"
	"bytes"
	"mime"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/daemon/testenv"
)

// The trigger typed into a Subject with a non-ASCII character reaches
// the gateway inside encoded words: the message must still be
// encrypted (OpenSSL decrypts it with the escrow key), the trigger
// gone, the rest of the Subject kept.
func TestTriggerInEncodedWords(t *testing.T) {
	for _, subject := range []string{
		"=?UTF-8?B?W3NlY3VyZV0gR2Vow6RsdGVy?=", // Outlook, Apple Mail
		"=?UTF-8?Q?[secure]_Geh=C3=A4lter?=",   // Thunderbird
	} {
		t.Run(subject, func(t *testing.T) { triggerInEncodedWords(t, subject) })
	}
}

func triggerInEncodedWords(t *testing.T, subject string) {
	e := startEnv(t, envOptions{})
	if err := e.send("ceo@org.example", []string{"cfo@org.example"}, message("ceo@org.example", "cfo@org.example", subject, "the list")); err != nil {
		t.Fatal(err)
	}
	m := e.only()
	if bytes.Contains(m.Data, []byte("the list")) {
		t.Fatal("the triggered message left in clear")
	}
	inner, err := e.decrypt(m.Data, "escrow")
	if err != nil {
		t.Fatalf("not encrypted to the escrow key: %v", err)
	}
	if !bytes.Contains(inner, []byte("the list")) {
		t.Fatalf("decrypted: %q", inner)
	}
	i := bytes.Index(m.Data, []byte("Subject: "))
	if i < 0 {
		t.Fatalf("no Subject: %q", m.Data[:200])
	}
	line, _, _ := bytes.Cut(m.Data[i+len("Subject: "):], []byte("\r\n"))
	if dec, err := new(mime.WordDecoder).DecodeHeader(string(line)); err != nil || dec != "Gehälter" {
		t.Fatalf("Subject %q decodes to %q (%v), want %q", line, dec, err, "Gehälter")
	}
}

// encrypt = "always" for partner.example: an internal sender who
// writes a foreign From, or mail with our From and a foreign envelope
// sender, must not reach the partner in clear.
func TestEncryptAlwaysNotEscapedByFrom(t *testing.T) {
	e := startEnv(t, envOptions{policy: func(p *Policy) {
		p.Rules = []config.GatewayPolicy{{Match: "partner.example", Encrypt: config.EncryptAlways}}
	}})
	for _, tc := range []struct{ mailFrom, from string }{
		{"ceo@org.example", "ceo@gmail.example"},
		{"ceo@org.example", "ceo@sales.org.example"},
		{"bounces@esp.example", "ceo@org.example"},
		{"", "ceo@org.example"},
	} {
		err := e.send(tc.mailFrom, []string{"carol@partner.example"}, message(tc.from, "carol@partner.example", "hello", "confidential"))
		if code, enh, _ := smtpCode(err); code != 550 || enh != (smtp.EnhancedCode{5, 7, 1}) {
			t.Errorf("MAIL FROM %q, From %q: %v, want 550 5.7.1", tc.mailFrom, tc.from, err)
		}
	}
	for _, m := range e.relay.messages() {
		if bytes.Contains(m.Data, []byte("confidential")) {
			t.Fatalf("sent in clear: MAIL FROM %q", m.From)
		}
	}
	// Neither ours: passed unchanged (foreign mail forwarded).
	if err := e.send("x@else.example", []string{"carol@partner.example"}, message("x@else.example", "carol@partner.example", "hi", "theirs")); err != nil {
		t.Fatalf("foreign mail: %v", err)
	}
}

// A recipient written with the trailing dot of a fully qualified domain
// is delivered to that domain: its policy applies.
func TestTrailingDotRecipient(t *testing.T) {
	e := startEnv(t, envOptions{policy: func(p *Policy) {
		p.Rules = []config.GatewayPolicy{{Match: "partner.example", Encrypt: config.EncryptAlways}}
	}})
	err := e.send("ceo@org.example", []string{"carol@partner.example."}, message("ceo@org.example", "carol@partner.example", "hello", "confidential"))
	if code, _, _ := smtpCode(err); code != 554 {
		t.Fatalf("to carol@partner.example. without certificate: %v, want 554", err)
	}
	if err := e.send("ceo@org.example", []string{"Alice@Partner.Example."}, message("ceo@org.example", "alice@partner.example", "hello", "confidential")); err != nil {
		t.Fatal(err)
	}
	m := e.only()
	if _, err := e.decrypt(m.Data, "alice"); err != nil {
		t.Fatalf("not encrypted to alice: %v", err)
	}
}

// Postfix checks a sender against the login at RCPT (smtpd_delay_reject,
// reject_sender_login_mismatch): a MAIL FROM it answered 250 is not an
// address the login may use. A client must not get to sign as it (or
// use it as From) by trying it first.
func TestSubmissionSenderRefusedAtRcpt(t *testing.T) {
	e := startEnv(t, envOptions{mode: config.ModeSubmission, relay: func(r *testRelay) {
		r.users = map[string]string{"intern@org.example": "pw"}
		r.rcptAllowed = func(login, from string) bool { return login == from }
	}})
	e.look.signers["intern@org.example"] = &Signer{Cert: e.p.cert(t, "ceo")}
	c := e.dial()
	defer c.Quit()
	if err := c.Auth(sasl.NewPlainClient("", "intern@org.example", "pw")); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("ceo@org.example", nil); err != nil {
		t.Fatalf("MAIL = %v (the upstream checks at RCPT)", err)
	}
	if err := c.Rcpt("alice@partner.example", nil); err == nil {
		t.Fatal("RCPT after a foreign MAIL FROM accepted")
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	err := testenv.SendSMTP(c, "intern@org.example", []string{"alice@partner.example"}, message("ceo@org.example", "alice@partner.example", "x", "as the ceo"))
	if code, enh, _ := smtpCode(err); code != 550 || enh != (smtp.EnhancedCode{5, 7, 1}) {
		t.Fatalf("From the address the upstream refused = %v, want 550 5.7.1", err)
	}
	if n := len(e.relay.messages()); n != 0 {
		t.Fatalf("%d messages relayed", n)
	}
}

// A refusal naming recipients with long addresses stays a permanent
// 554 5.7.5 (it was a slice out of range, recovered as a 451, so the
// MTA kept retrying).
func TestRefusalLongAddresses(t *testing.T) {
	e := startEnv(t, envOptions{policy: func(p *Policy) { p.Encrypt = config.EncryptAlways }})
	long := strings.Repeat("x", 300)
	to := []string{long + "1@nocert.example", long + "2@nocert.example"}
	err := e.send("ceo@org.example", to, message("ceo@org.example", to[0], "hi", "body"))
	if code, enh, text := smtpCode(err); code != 554 || enh != (smtp.EnhancedCode{5, 7, 5}) || !strings.Contains(text, "2 recipients") {
		t.Fatalf("refusal = %v, want 554 5.7.5 naming 2 recipients", err)
	}
}

// The trigger in mail with our From and a foreign envelope sender: the
// sender asked for encryption, so it must not leave in clear.
func TestTriggerWithForeignEnvelopeSender(t *testing.T) {
	e := startEnv(t, envOptions{})
	err := e.send("bounces@esp.example", []string{"alice@partner.example"}, message("ceo@org.example", "alice@partner.example", "[secure] salaries", "confidential"))
	if code, enh, _ := smtpCode(err); code != 550 || enh != (smtp.EnhancedCode{5, 7, 1}) {
		t.Fatalf("triggered, foreign envelope sender: %v, want 550 5.7.1", err)
	}
	if n := len(e.relay.messages()); n != 0 {
		t.Fatalf("%d messages relayed", n)
	}
	// Wholly foreign mail with the trigger text passes as it is.
	msg := message("x@else.example", "alice@partner.example", "[secure] theirs", "theirs")
	if err := e.send("x@else.example", []string{"alice@partner.example"}, msg); err != nil {
		t.Fatal(err)
	}
	if m := e.only(); string(m.Data) != msg {
		t.Fatalf("foreign mail changed: %q", m.Data)
	}
}

// max_sessions bounds connections: go-smtp opens a session only at
// EHLO, so clients that connect and say nothing were not counted and
// could hold any number of connections.
func TestMaxSessionsCountsSilentConnections(t *testing.T) {
	e := startEnv(t, envOptions{cfg: func(c *Config) { c.MaxSessions = 2 }})
	greeting := func() (net.Conn, string) {
		conn, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(conn).ReadString('\n')
		return conn, line
	}
	for i := range 2 {
		if _, line := greeting(); !strings.HasPrefix(line, "220 ") {
			t.Fatalf("connection %d greeted %q", i+1, line)
		}
	}
	third, line := greeting()
	if !strings.HasPrefix(line, "421 4.3.2") {
		t.Fatalf("third silent connection greeted %q, want 421 4.3.2", line)
	}
	third.Close()
	// A place given back is taken again.
	e2 := startEnv(t, envOptions{cfg: func(c *Config) { c.MaxSessions = 1 }})
	c := e2.dial()
	if err := c.Noop(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	var last string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		conn, err := net.Dial("tcp", e2.addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		last, _ = bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if strings.HasPrefix(last, "220 ") {
			return
		}
	}
	t.Fatalf("after the first session ended: greeted %q", last)
}
