package harvest

import (
	"bytes"
	"testing"
)

// TestBuildPlaintextInScratch: a plaintext built in the room before the
// inner body (scratch) is byte for byte the one built in a new buffer,
// leaves what follows the body alone, and a plaintext whose header does
// not fit is built in a new buffer.
func TestBuildPlaintextInScratch(t *testing.T) {
	outer := []byte("From: alice@partner.example\nTo: ceo@org.example\r\nSubject: hi\r\n" +
		"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n")
	inner := []byte("Content-Type: text/plain\r\nX-Inner: dropped\r\n\r\nthe body\r\n")
	unprotected := []HeaderField{{Name: "Subject", Value: "outer"}}
	protected := &protectedHeader{raw: []byte("Subject: inner\r\n")}
	if got := string(buildPlaintext(outer, inner, nil, nil, nil)); got != "From: alice@partner.example\r\nTo: ceo@org.example\r\nSubject: hi\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nthe body\r\n" {
		t.Fatalf("buildPlaintext() = %q", got)
	}
	want := string(buildPlaintext(outer, inner, protected, unprotected, nil))
	for _, room := range []int{0, 10, 200} {
		tail := []byte("after the content")
		scratch := append(append(make([]byte, room), inner...), tail...)
		in := scratch[room : room+len(inner)]
		got := buildPlaintext(outer, in, protected, unprotected, scratch)
		if string(got) != want {
			t.Fatalf("room %d: buildPlaintext(scratch) = %q, want %q", room, got, want)
		}
		// Built in place, the plaintext ends where the body ends in scratch.
		if inPlace := &got[len(got)-1] == &scratch[room+len(inner)-1]; inPlace != (room == 200) {
			t.Errorf("room %d: plaintext built in scratch: %v", room, inPlace)
		}
		if cap(got) != len(got) {
			t.Errorf("room %d: the plaintext reaches %d bytes beyond its end", room, cap(got)-len(got))
		}
		if !bytes.HasSuffix(scratch, tail) {
			t.Errorf("room %d: the bytes after the body changed", room)
		}
	}
	// An inner entity outside scratch is copied.
	if got := buildPlaintext(outer, bytes.Clone(inner), protected, unprotected, make([]byte, 500)); string(got) != want {
		t.Fatalf("buildPlaintext(other buffer) = %q", got)
	}
}

func TestOffsetIn(t *testing.T) {
	buf := make([]byte, 10, 20)
	for _, c := range []struct {
		s    []byte
		off  int
		want bool
	}{
		{buf[3:7], 3, true},
		{buf[0:10], 0, true},
		{buf[9:10], 9, true},
		{buf[8:12], 0, false}, // runs past len(buf)
		{buf[10:12], 0, false},
		{buf[3:3], 0, false},
		{buf[2:5:5], 0, false}, // capacity cut: not told apart, so refused
		{make([]byte, 4), 0, false},
	} {
		off, ok := offsetIn(buf, c.s)
		if ok != c.want || (ok && off != c.off) {
			t.Errorf("offsetIn(buf, s) = %d, %v; want %d, %v", off, ok, c.off, c.want)
		}
	}
}
