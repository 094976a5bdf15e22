package gateway

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// FuzzHeader: a stranger's header is read, its From taken apart and its
// trigger removed without a panic, and the rewritten header is again
// one that reads back to the same fields but the Subject.
func FuzzHeader(f *testing.F) {
	for _, s := range []string{
		"From: a@org.example\r\nSubject: [secure] x\r\n\r\nbody",
		"From: \"J\xf6rg\" <j@org.example>\nSubject: =?utf-8?q?x?= [SECURE]\n\tmore\n\n",
		"Subject: [secure]\r\n",
		"no colon line\r\nFrom: x\r\n",
		": empty name\r\n\r\n",
		"From: <<<@>>>, (comment) a@b\r\n\r\n",
	} {
		f.Add([]byte(s), "[secure]")
	}
	f.Fuzz(func(t *testing.T, in []byte, trigger string) {
		h, err := readHeader(bufio.NewReaderSize(bytes.NewReader(in), 16))
		if err != nil {
			return
		}
		if !bytes.HasPrefix(in, h.raw) {
			t.Fatalf("raw header %q is not a prefix of the input", h.raw)
		}
		h.fromAddresses()
		out, ok := h.removeTrigger(trigger)
		if !ok {
			if !bytes.Equal(out, h.raw) {
				t.Fatal("header changed without a trigger")
			}
			return
		}
		h2, err := readHeader(bufio.NewReader(bytes.NewReader(out)))
		if err != nil {
			t.Fatal(err)
		}
		if len(h2.fields) != len(h.fields) {
			t.Fatalf("fields %d, want %d: %q", len(h2.fields), len(h.fields), out)
		}
		if subj := h2.get("Subject"); strings.Contains(strings.ToLower(subj), strings.ToLower(trigger)) && !strings.Contains(strings.ToLower(strings.Replace(strings.ToLower(h.get("Subject")), strings.ToLower(trigger), "", 1)), strings.ToLower(trigger)) {
			t.Fatalf("trigger %q still in %q", trigger, subj)
		}
	})
}

// FuzzLogin: the SASL LOGIN exchange never panics and calls the
// authenticator at most once.
func FuzzLogin(f *testing.F) {
	f.Add([]byte("user"), []byte("pass"), []byte("extra"), true)
	f.Fuzz(func(t *testing.T, a, b, c []byte, initial bool) {
		calls := 0
		s := newLoginServer(func(u, p string) error { calls++; return nil })
		first := a
		if !initial {
			first = nil
		}
		for _, r := range [][]byte{first, b, c, a} {
			if _, done, err := s.Next(r); done || err != nil {
				break
			}
		}
		if calls > 1 {
			t.Fatal("authenticated twice")
		}
	})
}
