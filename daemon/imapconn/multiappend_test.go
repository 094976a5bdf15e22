package imapconn

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/smimed/smimed/daemon/imapconn/servertest"
)

// hostileCopy is a message whose body has lines that look like the
// answers a MULTIAPPEND waits for: they are inside a literal, and must
// neither end the command early nor reach go-imap as responses.
func hostileCopy(id string) []byte {
	return []byte("From: smimed@org.example\r\nSubject: copy " + id + "\r\nX-Smimed-Source: <" + id + "@test.smimed.example>\r\n\r\n" +
		"M1 OK [APPENDUID 1 1:3] forged\r\nM2 NO forged\r\n* BYE forged\r\n* 99 EXISTS\r\n{5}\r\nthe copy " + id + "\r\n")
}

// TestServersAppendMany: MULTIAPPEND (RFC 3502) stores the messages in
// their order with their dates on each server that offers it, the UIDs
// returned are the ones the server lists (its own client), and the
// connection goes on working through go-imap afterwards. A server without
// it (Courier) gets nothing sent.
func TestServersAppendMany(t *testing.T) {
	eachServer(t, func(t *testing.T, s *servertest.Server) {
		ctx := context.Background()
		c := dialServer(t, s, testLogger(t))
		ids := []string{"m1", "m2", "m3"}
		var msgs [][]byte
		var dates []time.Time
		for i, id := range ids {
			msgs = append(msgs, hostileCopy(id))
			dates = append(dates, time.Date(2023, 5, 6+i, 7, 8, 9, 0, time.UTC))
		}
		can := c.CanAppendMany("Decrypted")
		t.Logf("%s: MULTIAPPEND %v", s.Kind(), can)
		if s.Kind() == servertest.Dovecot && !can {
			t.Fatal("CanAppendMany = false on Dovecot, which offers MULTIAPPEND and LITERAL+")
		}
		uids, err := c.AppendMany(ctx, "Decrypted", msgs, dates)
		if !can {
			if !errors.Is(err, ErrNoMultiAppend) || !errors.Is(err, errors.ErrUnsupported) {
				t.Fatalf("AppendMany without MULTIAPPEND = %v, want ErrNoMultiAppend", err)
			}
			if n := count(t, s, personalPrefix[s.Kind()]+"Decrypted"); n > 0 {
				t.Fatalf("AppendMany refused, yet the folder holds %d messages", n)
			}
			return
		}
		if err != nil {
			t.Fatalf("AppendMany() = %v\nserver log:\n%s", err, s.Log())
		}
		got, ok := s.Messages(t, "ceo", personalPrefix[s.Kind()]+"Decrypted", "X-Smimed-Source")
		if !ok || len(got) != len(ids) {
			t.Fatalf("folder holds %v, want %d messages", got, len(ids))
		}
		var listed []uint32
		for i, m := range got {
			listed = append(listed, m.UID)
			if want := "<" + ids[i] + "@test.smimed.example>"; m.Fields["x-smimed-source"] != want {
				t.Errorf("message %d is %q, want %q (stored out of order?)", i, m.Fields["x-smimed-source"], want)
			}
			if strings.Contains(m.Flags, `\Seen`) {
				t.Errorf("message %d flags %s, want unread", i, m.Flags)
			}
		}
		if uids == nil && c.caps.Has(imap.CapUIDPlus) {
			t.Fatalf("AppendMany() returned no UIDs from a server with UIDPLUS")
		}
		if uids != nil && !slices.Equal(uids, listed) {
			t.Fatalf("AppendMany() = UIDs %v, the server lists %v", uids, listed)
		}
		// go-imap saw none of it: the connection works on.
		if err := c.Noop(ctx, 0); err != nil {
			t.Fatalf("Noop after AppendMany = %v", err)
		}
		path, want := tempMessage(t, "single")
		if _, err := c.Append(ctx, "Decrypted", path, time.Now()); err != nil {
			t.Fatalf("Append after AppendMany = %v", err)
		}
		if found, err := c.FindCopies(ctx, "Decrypted", want); err != nil || len(found) != 1 {
			t.Fatalf("FindCopies after AppendMany = %v, %v", found, err)
		}
		// A second MULTIAPPEND on the same connection: its own tag.
		if _, err := c.AppendMany(ctx, "Decrypted", msgs[:2], dates[:2]); err != nil {
			t.Fatalf("second AppendMany() = %v", err)
		}
		if n := count(t, s, personalPrefix[s.Kind()]+"Decrypted"); n != 6 {
			t.Fatalf("folder holds %d messages, want 6", n)
		}
	})
}

// TestAppendManyRefused: Dovecot refuses a zero-byte message; MULTIAPPEND
// is all or none, so the good message beside it is not stored either, the
// error is a refusal, and the connection is closed (the server may have
// stopped reading the command midway).
func TestAppendManyRefused(t *testing.T) {
	s := servertest.Start(t, servertest.Dovecot, servertest.Options{Users: map[string]string{"ceo": "pw-ceo"}})
	ctx := context.Background()
	c := dialServer(t, s, testLogger(t))
	now := time.Now()
	_, err := c.AppendMany(ctx, "Decrypted", [][]byte{hostileCopy("good"), {}}, []time.Time{now, now})
	if err == nil || !IsRefusal(err) {
		t.Fatalf("AppendMany(with an empty message) = %v, want the server's NO", err)
	}
	if n := count(t, s, "Decrypted"); n != 0 {
		t.Fatalf("refused MULTIAPPEND left %d messages, want none (all or none)", n)
	}
	if err := c.Noop(ctx, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Noop after a refused MULTIAPPEND = %v, want ErrClosed", err)
	}
}

// TestDivertSplit: the diverted answer is found however the server's
// bytes are split into reads, and only it is kept from go-imap; a line
// inside a literal that looks like it is passed on.
func TestDivertSplit(t *testing.T) {
	stream := "* 3 EXISTS\r\n* 1 FETCH (BODY[] {24}\r\nM7 OK inside a literal\r\n)\r\nM7x NO not ours\r\nM7 OK [APPENDUID 9 4:6] done\r\nT5 OK later\r\n"
	wantOut := strings.Replace(stream, "M7 OK [APPENDUID 9 4:6] done\r\n", "", 1)
	for split := 1; split <= len(stream); split++ {
		var scan byeScanner
		result := make(chan divertResult, 1)
		d := diverter{tag: "M7", result: result}
		var out []byte
		for i := 0; i < len(stream); i += split {
			out = d.filter(&scan, []byte(stream[i:min(i+split, len(stream))]), out)
		}
		if string(out) != wantOut {
			t.Fatalf("split %d: go-imap got %q, want %q", split, out, wantOut)
		}
		select {
		case r := <-result:
			if r.line != "OK [APPENDUID 9 4:6] done" || r.err != nil {
				t.Fatalf("split %d: diverted %q, %v", split, r.line, r.err)
			}
		default:
			t.Fatalf("split %d: nothing diverted", split)
		}
		if d.active() {
			t.Fatalf("split %d: still diverting after the answer", split)
		}
	}
}

func TestAppendUIDs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want []uint32
	}{
		{"[APPENDUID 38505 3955] done", 1, []uint32{3955}},
		{"[APPENDUID 1 4:6] done", 3, []uint32{4, 5, 6}},
		{"[APPENDUID 1 4,7:8] done", 3, []uint32{4, 7, 8}},
		{"[APPENDUID 1 8:6] done", 3, []uint32{8, 7, 6}},
		{"[appenduid 1 4:5]", 2, []uint32{4, 5}},
		{"[APPENDUID 1 4:6] done", 2, nil},          // more UIDs than messages
		{"[APPENDUID 1 1:4294967295] done", 3, nil}, // a huge range is not expanded
		{"[APPENDUID 1 4] done", 2, nil},
		{"[APPENDUID 1 0:2] done", 3, nil},
		{"[APPENDUID 1 x] done", 1, nil},
		{"Append completed", 1, nil},
		{"[APPENDUID 1 4", 1, nil},
	} {
		if got := appendUIDs(tc.in, tc.n); !slices.Equal(got, tc.want) {
			t.Errorf("appendUIDs(%q, %d) = %v, want %v", tc.in, tc.n, got, tc.want)
		}
	}
}
