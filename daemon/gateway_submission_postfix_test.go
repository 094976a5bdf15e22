package daemon

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/smimed/smimed/daemon/testenv"
)

// TestGatewaySubmissionPostfix: smimed's gateway in submission mode in
// front of a real submission server, Debian's Postfix, which checks the
// logins through Dovecot's auth service (smtpd_sasl_type = dovecot over
// TCP) and lets a login send only as its own addresses
// (smtpd_sender_login_maps + reject_sender_login_mismatch, refused at
// RCPT as Postfix does by default), delivering to an SMTP sink. The
// client talks STARTTLS to smimed, smimed STARTTLS to Postfix
// (relay_tls = "starttls", Postfix's certificate checked against
// relay_tls_ca_file; Postfix offers AUTH only after STARTTLS). Every verdict is Postfix's or Dovecot's
// (their replies and logs) or OpenSSL's (what reached the sink).
func TestGatewaySubmissionPostfix(t *testing.T) {
	const (
		ceoPass   = "ceo-Secret-4711"
		cfoPass   = "cfo-Secret-0815"
		wrongPass = "not-the-Password-9931"
	)
	sink := testenv.StartSMTPSink(t, testenv.SinkOptions{})
	d := testenv.StartDovecotWith(t, testenv.DovecotOptions{AuthInet: true})
	d.AddUser(t, "ceo", ceoPass)
	d.AddUser(t, "cfo", cfoPass)
	dir := t.TempDir()
	pfCert, pfKey := loopbackServerCert(t)
	if err := os.WriteFile(filepath.Join(dir, "postfix-ca.pem"), pfCert, 0o600); err != nil {
		t.Fatal(err)
	}
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{
		NextHop:  sink.Addr(),
		SASLAuth: d.AuthAddr(),
		TLSCert:  pfCert,
		TLSKey:   pfKey,
		SenderLogins: map[string]string{
			"ceo@org.example": "ceo",
			"cfo@org.example": "cfo",
		},
	})

	testenv.CopyPKI(t, dir, "org-new.crt", "org-new.key", "ca-bundle.pem", "alice.crt", "alice.key")
	listen := testenv.FreeAddr(t)
	// One identity for the whole domain: it would sign for cfo too, so
	// only the upstream's word keeps ceo from signing as cfo.
	head := "[gateway]\nlisten = \"" + listen + "\"\nmode = \"submission\"\nrelay = \"" + pf.Addr() + "\"\nrelay_tls = \"starttls\"\nrelay_tls_ca_file = \"postfix-ca.pem\"\n" +
		"tls_cert_file = \"org-new.crt\"\ntls_key_file = \"org-new.key\"\ninternal_domains = [\"org.example\"]\n" +
		"[[signing]]\ndomains = [\"org.example\"]\ncert_file = \"org-new.crt\"\nkey_file = \"org-new.key\"\n"
	logs := startGatewayForAlice(t, dir, head)

	tc := &tls.Config{InsecureSkipVerify: true} // the test certificate names no host
	dial := func(t *testing.T) *smtp.Client {
		t.Helper()
		var c *smtp.Client
		waitUntil(t, "the gateway listens", func() bool {
			var err error
			c, err = smtp.DialStartTLS(listen, tc)
			return err == nil
		}, logs.String)
		t.Cleanup(func() { c.Close() })
		return c
	}
	msg := func(from, n string) string {
		return "From: " + from + "\r\nTo: alice@partner.example\r\nSubject: offer " + n + "\r\nMessage-ID: <sub-" + n + "@org.example>\r\n\r\nThe offer " + n + ".\r\n"
	}
	const within = time.Minute
	delivered := 0
	nothingMore := func(t *testing.T) {
		t.Helper()
		// Postfix hands on at once; give a wrongly accepted message time
		// to show up at the sink.
		pf.WaitEmpty(t, within)
		if got := sink.Messages(); len(got) != delivered {
			t.Fatalf("the sink has %d messages, want %d; the last:\n%s", len(got), delivered, got[len(got)-1].Data)
		}
	}

	t.Run("login", func(t *testing.T) {
		c := dial(t)
		if err := c.Auth(sasl.NewPlainClient("", "ceo", ceoPass)); err != nil {
			t.Fatalf("AUTH PLAIN with ceo's password = %v\nPostfix:\n%s\nDovecot:\n%s", err, pf.Log(), d.Log())
		}
		if err := testenv.SendSMTP(c, "ceo@org.example", []string{"alice@partner.example"}, msg("ceo@org.example", "1")); err != nil {
			t.Fatalf("send: %v\n%s\nPostfix:\n%s", err, logs.String(), pf.Log())
		}
		delivered++
		got := sink.WaitMessages(t, delivered, within)[delivered-1]
		if got.From != "ceo@org.example" || len(got.To) != 1 || got.To[0] != "alice@partner.example" {
			t.Fatalf("envelope at the sink: %s -> %v", got.From, got.To)
		}
		if bytes.Contains(got.Data, []byte("The offer 1")) {
			t.Fatalf("plaintext reached the sink:\n%s", got.Data)
		}
		inner := testenv.OpenSSLInput(t, dir, got.Data, "cms", "-decrypt", "-recip", "alice.crt", "-inkey", "alice.key")
		content := testenv.OpenSSLInput(t, dir, inner, "cms", "-verify", "-CAfile", "ca-bundle.pem", "-purpose", "smimesign")
		if !bytes.Contains(content, []byte("The offer 1.")) {
			t.Fatalf("alice decrypts %q", content)
		}
		// Postfix relayed it for the login Dovecot checked, under TLS
		// (its summary of the session, logged when smimed ends it).
		if err := c.Quit(); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "Postfix logs a login ceo under STARTTLS", func() bool {
			log := pf.Log()
			return strings.Contains(log, "sasl_method=PLAIN, sasl_username=ceo") && strings.Contains(log, "starttls=1 auth=1 mail=1 rcpt=1 data=1")
		}, pf.Log)
	})

	t.Run("wrong-password", func(t *testing.T) {
		c := dial(t)
		err := c.Auth(sasl.NewPlainClient("", "ceo", wrongPass))
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 535 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 8}) || !strings.Contains(se.Message, "authentication failed") {
			t.Fatalf("AUTH with a wrong password = %v, want Postfix's 535 5.7.8", err)
		}
		if !strings.Contains(pf.Log(), "SASL PLAIN authentication failed") {
			t.Fatalf("Postfix did not refuse the login itself:\n%s", pf.Log())
		}
		err = testenv.SendSMTP(c, "ceo@org.example", []string{"alice@partner.example"}, msg("ceo@org.example", "2"))
		if !errors.As(err, &se) || se.Code != 530 {
			t.Fatalf("MAIL after a refused login = %v, want 530", err)
		}
		nothingMore(t)
		for _, pw := range []string{wrongPass, ceoPass, cfoPass} {
			if strings.Contains(logs.String(), pw) {
				t.Fatalf("a password is in smimed's log:\n%s", logs.String())
			}
		}
	})

	t.Run("sender-login-mismatch", func(t *testing.T) {
		c := dial(t)
		if err := c.Auth(sasl.NewLoginClient("ceo", ceoPass)); err != nil {
			t.Fatalf("AUTH LOGIN = %v", err)
		}
		// Postfix refuses cfo's address for ceo's login (at RCPT).
		err := testenv.SendSMTP(c, "cfo@org.example", []string{"alice@partner.example"}, msg("cfo@org.example", "3"))
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 553 || !strings.Contains(se.Message, "not owned by user ceo") {
			t.Fatalf("MAIL FROM cfo's address as ceo = %v, want Postfix's 553 (reject_sender_login_mismatch)", err)
		}
		if err := c.Reset(); err != nil {
			t.Fatal(err)
		}
		// Nor may ceo put cfo's address into From under its own
		// envelope: the upstream never accepted it for this login.
		err = testenv.SendSMTP(c, "ceo@org.example", []string{"alice@partner.example"}, msg("cfo@org.example", "4"))
		if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
			t.Fatalf("From cfo under ceo's envelope = %v, want 550 5.7.1", err)
		}
		nothingMore(t)
		// The session goes on for ceo's own address.
		if err := testenv.SendSMTP(c, "ceo@org.example", []string{"alice@partner.example"}, msg("ceo@org.example", "5")); err != nil {
			t.Fatalf("send as ceo after the refusals: %v", err)
		}
		delivered++
		got := sink.WaitMessages(t, delivered, within)[delivered-1]
		if !bytes.Contains(got.Data, []byte("<sub-5@org.example>")) {
			t.Fatalf("message 5 at the sink:\n%s", got.Data)
		}
	})

	t.Run("no-tls-no-auth", func(t *testing.T) {
		// Postfix itself offers AUTH only under TLS: smimed's login
		// really went through STARTTLS.
		c, err := smtp.Dial(pf.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Hello("client.test"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := c.Extension("AUTH"); ok {
			t.Fatal("Postfix offers AUTH without TLS")
		}
		if ok, _ := c.Extension("STARTTLS"); !ok {
			t.Fatal("Postfix offers no STARTTLS")
		}
	})

	t.Run("upstream-down", func(t *testing.T) {
		pf.Stop()
		c := dial(t)
		err := c.Auth(sasl.NewPlainClient("", "ceo", ceoPass))
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 4, 1}) {
			t.Fatalf("AUTH with the upstream down = %v, want 451 4.4.1", err)
		}
		err = testenv.SendSMTP(c, "ceo@org.example", []string{"alice@partner.example"}, msg("ceo@org.example", "6"))
		if !errors.As(err, &se) || se.Code != 530 {
			t.Fatalf("MAIL after the failed login = %v, want 530", err)
		}
		if got := sink.Messages(); len(got) != delivered {
			t.Fatalf("the sink has %d messages, want %d", len(got), delivered)
		}
		if strings.Contains(logs.String(), ceoPass) {
			t.Fatal("the password is in smimed's log")
		}
	})
}

// loopbackServerCert is a self-signed ECDSA certificate for 127.0.0.1
// (the address smimed dials, so the name it checks) and its key, PEM.
func loopbackServerCert(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "postfix.test.smimed.example"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}
