package gateway

import (
	"bytes"
	"strings"
	"testing"

	"github.com/smimed/smimed/daemon/testenv"
)

// startComposeEnv is a gateway with harvest/compose and a signer with its
// private key.
func startComposeEnv(t testing.TB, o envOptions) *env {
	o.composer = Compose{}
	e := startEnv(t, o)
	s := e.look.signers["ceo@org.example"]
	s.Key = testenv.ReadKey(t, e.p.keys["ceo"])
	return e
}

// TestComposedOutput: what the gateway hands on, built by
// harvest/compose, decrypts with the partner's key and with the escrow
// key (openssl cms -decrypt), and its signature verifies with the CA
// (openssl cms -verify); the Subject trigger is gone inside and out.
func TestComposedOutput(t *testing.T) {
	e := startComposeEnv(t, envOptions{})
	body := "8-bit caf\xc3\xa9 and a long line " + strings.Repeat("x", 1200)
	msg := "From: CEO <ceo@org.example>\r\nTo: alice@partner.example\r\nSubject: [secure] terms\r\nMessage-ID: <c1@org.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body + "\r\n"
	if err := e.send("ceo@org.example", []string{"alice@partner.example", "cfo@org.example"}, msg); err != nil {
		t.Fatal(err)
	}
	m := e.only()
	if bytes.Contains(m.Data, []byte("terms\r\n")) && bytes.Contains(m.Data, []byte("caf")) {
		t.Fatal("plaintext left")
	}
	for _, who := range []string{"alice", "escrow"} {
		inner, content := e.open(m.Data, who)
		if !bytes.Contains(content, []byte("caf=C3=A9")) && !bytes.Contains(content, []byte("caf\xc3\xa9")) {
			t.Fatalf("%s: content lost the body: %q", who, content[:min(300, len(content))])
		}
		if bytes.Contains(inner, []byte("[secure]")) {
			t.Fatal("trigger inside")
		}
	}
	if _, err := e.decrypt(m.Data, "bob"); err == nil {
		t.Fatal("bob, not a recipient, decrypts")
	}
	recs := e.arch.records()
	if len(recs) != 1 || recs[0].O.ContentCipher == "" || len(recs[0].O.Recipients) != 2 || recs[0].O.Recipients[0].KeyManagement == "" {
		t.Fatalf("archive = %+v", recs)
	}
	if !bytes.Equal(recs[0].Sent, m.Data) {
		t.Fatal("archived message is not what the relay received")
	}
}

// TestComposedSignOnly: signed for a partner without certificate,
// verified by openssl.
func TestComposedSignOnly(t *testing.T) {
	e := startComposeEnv(t, envOptions{})
	msg := "From: ceo@org.example\nTo: carol@nocert.example\nSubject: bare LF\n\nline one\nline two\n"
	if err := e.send("ceo@org.example", []string{"carol@nocert.example"}, msg); err != nil {
		t.Fatal(err)
	}
	content, err := e.verify(e.only().Data)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(content, []byte("line one\r\nline two")) {
		t.Fatalf("content = %q", content)
	}
}

// TestComposedProtectHeaders: with protect_headers the Subject the
// partner decrypts is the real one and the one outside is not.
func TestComposedProtectHeaders(t *testing.T) {
	e := startComposeEnv(t, envOptions{policy: func(p *Policy) { p.ProtectHeaders = true }})
	msg := "From: ceo@org.example\r\nTo: alice@partner.example\r\nSubject: the merger\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nsecret\r\n"
	if err := e.send("ceo@org.example", []string{"alice@partner.example"}, msg); err != nil {
		t.Fatal(err)
	}
	m := e.only()
	outer, _, _ := bytes.Cut(m.Data, []byte("\r\n\r\n"))
	if bytes.Contains(outer, []byte("merger")) {
		t.Fatalf("the real Subject is outside: %q", outer)
	}
	inner, err := e.decrypt(m.Data, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(inner, []byte("Subject: the merger")) {
		t.Fatalf("the real Subject is not inside: %q", inner)
	}
}

// TestComposedGCM: a partner who announced AES-GCM and RSA-OAEP gets
// AuthEnvelopedData (the escrow, smimed itself, does not hold it back),
// and both decrypt it with openssl.
func TestComposedGCM(t *testing.T) {
	e := startComposeEnv(t, envOptions{})
	e.look.certs["alice@partner.example"].Capabilities = []string{"aes-256-gcm", "rsaes-oaep"}
	rt := *e.gw.rt.Load()
	rt.Escrow = []Recipient{Escrow(rt.Escrow[0].Cert)}
	e.gw.SetRuntime(&rt)
	if err := e.send("ceo@org.example", []string{"alice@partner.example"}, message("ceo@org.example", "alice@partner.example", "gcm", "sealed with GCM")); err != nil {
		t.Fatal(err)
	}
	m := e.only()
	if !bytes.Contains(m.Data, []byte("authEnveloped-data")) {
		t.Fatalf("not AuthEnvelopedData:\n%s", m.Data[:min(400, len(m.Data))])
	}
	for _, who := range []string{"alice", "escrow"} {
		if _, content := e.open(m.Data, who); !bytes.Contains(content, []byte("sealed with GCM")) {
			t.Fatalf("%s: %q", who, content)
		}
	}
	if r := e.arch.records(); len(r) != 1 || r[0].O.ContentCipher != "aes-256-gcm" {
		t.Fatalf("archive = %+v", r)
	}
}
