package daemon

import (
	"bytes"
	"io"
	"net"
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
