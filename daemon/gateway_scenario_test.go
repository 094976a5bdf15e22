package daemon

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest"
)

// dovecotSink is the next hop of a test gateway: a go-smtp server that
// delivers every message into the Dovecot mailbox of each recipient's
// local part (doveadm save), and keeps what it received.
type dovecotSink struct {
	t    *testing.T
	d    *testenv.Dovecot
	addr string
	got  chan []byte
}

func startDovecotSink(t *testing.T, d *testenv.Dovecot) *dovecotSink {
	t.Helper()
	s := &dovecotSink{t: t, d: d, got: make(chan []byte, 10)}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }))
	srv.Domain = "sink.test"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

type sinkSession struct {
	s  *dovecotSink
	to []string
}

func (ss *sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}
func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	for _, to := range ss.to {
		if user, _, _ := strings.Cut(to, "@"); user != "" && ss.s.d != nil {
			if _, err := ss.s.d.DoveadmInput(b, "save", "-u", user, "-m", "INBOX"); err != nil {
				return fmt.Errorf("doveadm save: %w", err)
			}
		}
	}
	ss.s.got <- b
	return nil
}
func (ss *sinkSession) Reset()        { ss.to = nil }
func (ss *sinkSession) Logout() error { return nil }

// gatewayHead is the [gateway] and [[signing]] of the organisation's
// configuration in these tests: filter mode on a free port, ceo signs
// with org-new, escrow defaults to the first [[keys]] entry (org-new).
func gatewayHead(t *testing.T, relay, extra string) (head, listen string) {
	listen = testenv.FreeAddr(t)
	return fmt.Sprintf("[gateway]\nlisten = %q\nrelay = %q\ninternal_domains = [\"org.example\"]\nencrypt_trigger = \"[secure]\"\n%s\n"+
		"[[signing]]\naddresses = [\"ceo@org.example\"]\ncert_file = \"org-new.crt\"\nkey_file = \"org-new.key\"\n", listen, relay, extra), listen
}

// TestGatewayRoundTrip: the organisation's smimed runs the gateway and
// its incoming side on cfo's mailbox; a message from ceo to alice and cfo
// goes out signed and
// encrypted to alice's certificate (imported into the store) and the
// escrow key, into alice's Dovecot mailbox. The partner's own smimed
// (its own state_dir, alice's key, watching that mailbox) decrypts it,
// judges the signature valid and harvests ceo's certificate; our archive
// holds the outgoing record, our escrow key reads what was sent (openssl),
// and our incoming side reads cfo's copy through it: decrypted, valid.
func TestGatewayRoundTrip(t *testing.T) {
	t.Parallel()
	d := testenv.StartDovecot(t)
	sink := startDovecotSink(t, d)

	// Our side: the gateway, and the incoming side on cfo's mailbox.
	ours := t.TempDir()
	testenv.CopyPKI(t, ours, "org-new.crt", "org-new.key", "ca-bundle.pem")
	d.AddAccount(t, ours, "cfo")
	head, listen := gatewayHead(t, sink.addr, "")
	svc, logs := runConfig(t, ours, testenv.Config("state", head, []string{"org-new"}, testenv.Account("cfo", d.Addr(), "")))
	alice := testenv.ReadCert(t, testenv.TestdataPath(t, "pki", "alice.crt"))
	if _, err := svc.store.Import(alice, nil, []string{"alice@partner.example"}, "test", false); err != nil {
		t.Fatal(err)
	}

	// The partner's side.
	theirs := t.TempDir()
	testenv.CopyPKI(t, theirs, "alice.crt", "alice.key", "ca-bundle.pem")
	d.AddAccount(t, theirs, "alice")
	partner, plogs := runConfig(t, theirs, testenv.Config("state", "", []string{"alice"}, testenv.Account("alice", d.Addr(), "")))

	c, err := smtp.Dial(listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := "From: CEO <ceo@org.example>\r\nTo: Alice <alice@partner.example>\r\nSubject: [secure] the offer\r\nMessage-ID: <roundtrip@org.example>\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nOur offer: 42.\r\n"
	if err := testenv.SendSMTP(c, "ceo@org.example", []string{"alice@partner.example", "cfo@org.example"}, msg); err != nil {
		t.Fatalf("send: %v\n%s", err, logs.String())
	}
	var sent []byte
	select {
	case sent = <-sink.got:
	case <-time.After(30 * time.Second):
		t.Fatal("nothing reached the next hop")
	}
	if bytes.Contains(sent, []byte("Our offer")) {
		t.Fatal("plaintext left the gateway")
	}
	// Our escrow key reads it (openssl, not smimed).
	inner := testenv.OpenSSLInput(t, ours, sent, "cms", "-decrypt", "-recip", "org-new.crt", "-inkey", "org-new.key")
	content := testenv.OpenSSLInput(t, ours, inner, "cms", "-verify", "-CAfile", "ca-bundle.pem", "-purpose", "smimesign")
	if !bytes.Contains(content, []byte("Our offer: 42.")) {
		t.Fatalf("escrow reads %q", content)
	}

	// The partner's smimed: decrypted, valid, our certificate harvested.
	var rec *archive.Record
	waitUntil(t, "the partner archived the message", func() bool {
		n, _ := partner.arch.Count()
		if n == 0 {
			return false
		}
		rec, _ = partner.arch.Get(1)
		return rec != nil
	}, plogs.String)
	if rec.Decryption.Status != harvest.DecryptOK {
		t.Fatalf("partner's decryption = %+v", rec.Decryption)
	}
	if len(rec.Signatures) != 1 || rec.Signatures[0].Status != harvest.StatusValid {
		t.Fatalf("partner's signatures = %+v\n%s", rec.Signatures, plogs.String())
	}
	es, err := partner.store.ByEmail("ceo@org.example")
	if err != nil || len(es) == 0 {
		t.Fatalf("partner's store for ceo@org.example = %v, %v", es, err)
	}
	org := testenv.ReadCert(t, filepath.Join(ours, "org-new.crt"))
	if !slices.ContainsFunc(es, func(e harvest.Entry) bool { return e.Cert.Equal(org) && !e.Quarantined }) {
		t.Fatalf("partner did not harvest our certificate: %+v", es)
	}

	// Our archive: the outgoing record, signed and encrypted, to alice
	// and escrow; and cfo's copy, an internal recipient without a
	// certificate, read by our incoming side through the escrow key.
	var out, in []*archive.Record
	waitUntil(t, "our incoming side archived cfo's copy", func() bool {
		out, in = nil, nil
		svc.arch.List(archive.Query{}, func(r *archive.Record) error {
			if r.IsOutgoing() {
				out = append(out, r)
			} else {
				in = append(in, r)
			}
			return nil
		})
		return len(in) > 0
	}, logs.String)
	if len(in) != 1 || in[0].Account != "cfo" || in[0].Decryption.Status != harvest.DecryptOK ||
		len(in[0].Signatures) != 1 || in[0].Signatures[0].Status != harvest.StatusValid {
		t.Fatalf("cfo's copy = %+v", in[0])
	}
	if len(out) != 1 {
		t.Fatalf("our outgoing records = %+v", out)
	}
	o := out[0].Outgoing
	if !slices.Equal(o.Decision, []string{archive.DecisionSigned, archive.DecisionEncrypted}) || len(o.Recipients) != 2 {
		t.Fatalf("outgoing record = %+v", o)
	}
	if st, err := svc.Status(); err != nil || st.Gateway == nil || st.Gateway.Messages["signed_encrypted"] != 1 {
		t.Fatalf("status = %+v, %v", st, err)
	}
}

// TestGatewayReload: a SIGHUP's reload puts a new policy in force for the
// next message of a session that stays open, and a changed listener
// only warns; the metrics count what happened.
func TestGatewayReload(t *testing.T) {
	t.Parallel()
	sink := startDovecotSink(t, nil)
	dir := t.TempDir()
	testenv.CopyPKI(t, dir, "org-new.crt", "org-new.key", "ca-bundle.pem")
	cfgPath := filepath.Join(dir, "smimed.toml")
	head, listen := gatewayHead(t, sink.addr, "")
	write := func(head string) {
		if err := os.WriteFile(cfgPath, []byte(testenv.Config("state", head, []string{"org-new"})), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(head)
	logs := &testenv.LockedBuffer{}
	svc, _ := runService(t, cfgPath, logs)
	var c *smtp.Client
	waitUntil(t, "the gateway listens", func() bool {
		var err error
		c, err = smtp.Dial(listen)
		return err == nil
	}, logs.String)
	defer c.Close()
	msg := "From: ceo@org.example\r\nTo: carol@nocert.example\r\nSubject: hi\r\n\r\nhello\r\n"
	if err := testenv.SendSMTP(c, "ceo@org.example", []string{"carol@nocert.example"}, msg); err != nil {
		t.Fatalf("before the reload: %v", err)
	}
	<-sink.got
	// encrypt = always for nocert.example, and another listener.
	write(strings.Replace(head, listen, "127.0.0.1:1", 1) + "\n[[gateway.policy]]\nmatch = \"nocert.example\"\nencrypt = \"always\"\n")
	if err := svc.Reload(); err != nil {
		t.Fatalf("Reload() = %v", err)
	}
	err := testenv.SendSMTP(c, "ceo@org.example", []string{"carol@nocert.example"}, msg)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 554 || !strings.Contains(se.Message, "carol@nocert.example") {
		t.Fatalf("after the reload, on the same session: %v, want 554 naming carol", err)
	}
	if !strings.Contains(logs.String(), "gateway.listen changed; restart needed") {
		t.Fatalf("no warning for the listener:\n%s", logs.String())
	}
	rec := httptest.NewRecorder()
	svc.metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{`smimed_gateway_messages_total{outcome="signed"} 1`, `smimed_gateway_messages_total{outcome="refused"} 1`, "smimed_gateway_sessions 1"} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// upstreamSession is a submission server that takes ceo's login only.
type upstreamSession struct {
	sinkSession
	login string
}

func (u *upstreamSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (u *upstreamSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "ceo@org.example" || pass != "ceo-pw" {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "upstream: no"}
		}
		u.login = user
		return nil
	}), nil
}
func (u *upstreamSession) Mail(from string, o *smtp.MailOptions) error {
	if u.login == "" {
		return smtp.ErrAuthRequired
	}
	return nil
}

// TestGatewaySubmission: smimed run in submission mode with the TLS
// files of its configuration: STARTTLS on listen and implicit TLS on
// listen_tls, the client's login passed to the upstream (refused, then
// taken), the message signed and handed on through that login.
func TestGatewaySubmission(t *testing.T) {
	t.Parallel()
	s := &dovecotSink{t: t, got: make(chan []byte, 10)}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &upstreamSession{sinkSession: sinkSession{s: s}}, nil
	}))
	srv.AllowInsecureAuth = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	dir := t.TempDir()
	testenv.CopyPKI(t, dir, "org-new.crt", "org-new.key", "ca-bundle.pem")
	listenTLS := testenv.FreeAddr(t)
	head, listen := gatewayHead(t, ln.Addr().String(), fmt.Sprintf("mode = \"submission\"\nlisten_tls = %q\ntls_cert_file = \"org-new.crt\"\ntls_key_file = \"org-new.key\"\n", listenTLS))
	_, logs := runConfig(t, dir, testenv.Config("state", head, []string{"org-new"}))
	tc := &tls.Config{InsecureSkipVerify: true} // the test certificate names no host
	var c *smtp.Client
	waitUntil(t, "the gateway listens", func() bool {
		c, err = smtp.DialStartTLS(listen, tc)
		return err == nil
	}, logs.String)
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "ceo@org.example", "wrong")); err == nil || !strings.Contains(err.Error(), "upstream: no") {
		t.Fatalf("AUTH with a wrong password = %v, want the upstream's refusal", err)
	}
	c2, err := smtp.DialTLS(listenTLS, tc)
	if err != nil {
		t.Fatalf("implicit TLS: %v", err)
	}
	defer c2.Close()
	if err := c2.Auth(sasl.NewPlainClient("", "ceo@org.example", "ceo-pw")); err != nil {
		t.Fatal(err)
	}
	if err := testenv.SendSMTP(c2, "ceo@org.example", []string{"carol@nocert.example"}, "From: ceo@org.example\r\nTo: carol@nocert.example\r\nSubject: s\r\n\r\nsigned via the login\r\n"); err != nil {
		t.Fatal(err)
	}
	got := <-s.got
	content := testenv.OpenSSLInput(t, dir, got, "cms", "-verify", "-CAfile", "ca-bundle.pem", "-purpose", "smimesign")
	if !bytes.Contains(content, []byte("signed via the login")) {
		t.Fatalf("content = %q", content)
	}
	if strings.Contains(logs.String(), "ceo-pw") || strings.Contains(logs.String(), "wrong") {
		t.Fatal("a password is in the log")
	}
}
