package daemon

import (
	"bytes"
	"io"
	"net"
	"net/textproto"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
)

// switchable forwards 127.0.0.1:port to target while it is up; down
// closes the listener and every connection (a reinjection port that
// went away), up listens again on the same port.
type switchable struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        []net.Conn
}

func startSwitchable(t *testing.T, target string) *switchable {
	s := &switchable{addr: testenv.FreeAddr(t), target: target}
	s.up(t)
	t.Cleanup(s.down)
	return s
}

func (s *switchable) up(t *testing.T) {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", s.target)
			if err != nil {
				c.Close()
				continue
			}
			s.mu.Lock()
			s.conns = append(s.conns, c, u)
			s.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
}

func (s *switchable) down() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

// startGatewayForAlice runs smimed in dir (with org-new's and alice's
// PKI files there) with the configuration head, its store holding alice's
// certificate for alice@partner.example; it returns smimed's log.
func startGatewayForAlice(t *testing.T, dir, head string) *testenv.LockedBuffer {
	t.Helper()
	svc, logs := runConfig(t, dir, testenv.Config("state", head, []string{"org-new"}))
	alice := testenv.ReadCert(t, filepath.Join(dir, "alice.crt"))
	if _, err := svc.store.Import(alice, nil, []string{"alice@partner.example"}, "test", false); err != nil {
		t.Fatal(err)
	}
	return logs
}

// TestGatewayPostfix: a real Postfix with docs/gateway.md's filter lines
// hands submitted mail to smimed's gateway (filter mode), smimed hands
// it back on the reinjection port and Postfix delivers it to the next
// hop: encrypted to the partner (openssl decrypts it with the partner's
// key and verifies our signature). With the reinjection port down smimed
// answers 4xx and the mail waits in Postfix's deferred queue (postqueue
// -j), then goes out after a flush; with the next hop down it waits
// there after smimed. A policy refusal (5xx) becomes Postfix's bounce.
func TestGatewayPostfix(t *testing.T) {
	sink := testenv.StartSMTPSink(t, testenv.SinkOptions{})
	filter := testenv.FreeAddr(t)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{FilterAddr: filter, NextHop: sink.Addr()})
	reinject := startSwitchable(t, pf.ReinjectAddr())

	dir := t.TempDir()
	testenv.CopyPKI(t, dir, "org-new.crt", "org-new.key", "ca-bundle.pem", "alice.crt", "alice.key")
	head := "[gateway]\nlisten = \"" + filter + "\"\nmode = \"filter\"\nrelay = \"" + reinject.addr + "\"\ninternal_domains = [\"org.example\"]\n" +
		"[[gateway.policy]]\nmatch = \"strict.example\"\nencrypt = \"always\"\n" +
		"[[signing]]\naddresses = [\"ceo@org.example\"]\ncert_file = \"org-new.crt\"\nkey_file = \"org-new.key\"\n"
	startGatewayForAlice(t, dir, head)
	const within = 2 * time.Minute
	msg := func(n string) []byte {
		return []byte("From: ceo@org.example\r\nTo: alice@partner.example\r\nSubject: offer " + n + "\r\nMessage-ID: <pf-" + n + "@org.example>\r\n\r\nThe offer " + n + ".\r\n")
	}
	delivered := 0
	expectEncrypted := func(t *testing.T, n string) {
		t.Helper()
		delivered++
		got := sink.WaitMessages(t, delivered, within)[delivered-1]
		if bytes.Contains(got.Data, []byte("The offer")) || !bytes.Contains(got.Data, []byte("Message-ID: <pf-"+n+"@org.example>")) {
			t.Fatalf("message %s at the next hop:\n%s", n, got.Data)
		}
		inner := testenv.OpenSSLInput(t, dir, got.Data, "cms", "-decrypt", "-recip", "alice.crt", "-inkey", "alice.key")
		content := testenv.OpenSSLInput(t, dir, inner, "cms", "-verify", "-CAfile", "ca-bundle.pem", "-purpose", "smimesign")
		if !bytes.Contains(content, []byte("The offer "+n+".")) {
			t.Fatalf("message %s decrypts to %q", n, content)
		}
		pf.WaitEmpty(t, within)
	}

	t.Run("through", func(t *testing.T) {
		if err := pf.Submit("ceo@org.example", []string{"alice@partner.example"}, msg("1")); err != nil {
			t.Fatal(err)
		}
		expectEncrypted(t, "1")
	})
	t.Run("reinjection-down", func(t *testing.T) {
		reinject.down()
		if err := pf.Submit("ceo@org.example", []string{"alice@partner.example"}, msg("2")); err != nil {
			t.Fatal(err)
		}
		q := pf.WaitDeferred(t, 1, within)
		if r := q[0].Recipients[0].DelayReason; !strings.Contains(r, "451 4.4.1") {
			t.Fatalf("deferred because %q, want smimed's 451 4.4.1", r)
		}
		if n := len(sink.Messages()); n != delivered {
			t.Fatalf("the next hop has %d messages, want %d", n, delivered)
		}
		reinject.up(t)
		pf.Flush(t)
		expectEncrypted(t, "2")
	})
	t.Run("next-hop-down", func(t *testing.T) {
		sink.Down()
		if err := pf.Submit("ceo@org.example", []string{"alice@partner.example"}, msg("3")); err != nil {
			t.Fatal(err)
		}
		pf.WaitDeferred(t, 1, within)
		sink.Up(t)
		pf.Flush(t)
		expectEncrypted(t, "3")
	})
	t.Run("dsn", func(t *testing.T) {
		// A DSN request (RFC 3461) survives the gateway: Postfix hands
		// NOTIFY, ORCPT and ENVID to smimed, smimed to the reinjection
		// port, and the Postfix there, relaying to a next hop without
		// DSN, reports "relayed" to the sender (through the gateway
		// again). Had smimed dropped them, no success report would come;
		// had it not announced DSN, the report would name smimed's
		// answer ("queued as"), not the next hop's.
		submitDSN(t, pf.Addr(), "ceo@org.example", "alice@partner.example", "smimed-dsn-4", msg("4"))
		expectEncrypted(t, "4")
		delivered++
		got := sink.WaitMessages(t, delivered, within)[delivered-1]
		report := string(got.Data)
		for _, want := range []string{
			"multipart/report", "report-type=delivery-status",
			"Original-Envelope-Id: smimed-dsn-4",
			"Original-Recipient: rfc822;alice@partner.example", // the address type is case-insensitive
			"Action: relayed",
			"Diagnostic-Code: smtp; 250 2.0.0 ok: queued",
			"Content-Type: text/rfc822-headers", // RET=HDRS
		} {
			if !strings.Contains(strings.ToLower(report), strings.ToLower(want)) {
				t.Errorf("the report lacks %q", want)
			}
		}
		if got.From != "" || len(got.To) != 1 || got.To[0] != "ceo@org.example" || strings.Contains(report, "queued as") || t.Failed() {
			t.Fatalf("report %s -> %v:\n%s", got.From, got.To, report)
		}
		pf.WaitEmpty(t, within)
	})
	t.Run("refused", func(t *testing.T) {
		if err := pf.Submit("ceo@org.example", []string{"bob@strict.example"}, []byte("From: ceo@org.example\r\nTo: bob@strict.example\r\nSubject: secret\r\n\r\nsecret\r\n")); err != nil {
			t.Fatal(err)
		}
		// Postfix bounces it to ceo with smimed's reason; the bounce
		// (from the null sender) passes the gateway unchanged.
		delivered++
		got := sink.WaitMessages(t, delivered, within)[delivered-1]
		if got.From != "" || len(got.To) != 1 || got.To[0] != "ceo@org.example" || !bytes.Contains(got.Data, []byte("5.7.5")) || !bytes.Contains(got.Data, []byte("bob@strict.example")) {
			t.Fatalf("bounce = %s -> %v:\n%s", got.From, got.To, got.Data)
		}
		for _, m := range sink.Messages() {
			if len(m.To) == 1 && m.To[0] == "bob@strict.example" {
				t.Fatal("the refused message reached the next hop")
			}
		}
	})
}

// submitDSN submits msg to the SMTP server at addr in a raw session, with
// the DSN parameters RET=HDRS and ENVID=envid on MAIL and NOTIFY=SUCCESS,
// FAILURE and ORCPT on RCPT, and fails t unless the server accepts it.
func submitDSN(t *testing.T, addr, from, to, envid string, msg []byte) {
	t.Helper()
	c, err := textproto.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	step := func(code int, format string, args ...any) {
		t.Helper()
		if format != "" {
			if err := c.PrintfLine(format, args...); err != nil {
				t.Fatal(err)
			}
		}
		if _, msg, err := c.ReadResponse(code); err != nil {
			t.Fatalf("%s: %v %s", strings.Fields(format + " greeting")[0], err, msg)
		}
	}
	step(220, "")
	step(250, "EHLO client.org.example")
	step(250, "MAIL FROM:<%s> RET=HDRS ENVID=%s", from, envid)
	step(250, "RCPT TO:<%s> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;%s", to, to)
	step(354, "DATA")
	w := c.DotWriter()
	if _, err := w.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	step(250, "")
	c.PrintfLine("QUIT")
}
