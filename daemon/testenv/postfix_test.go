package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const filterHeader = "X-Testenv-Filter: passed"

// standInFilter is a content filter in place of smimed's gateway: it
// passes every message unchanged but for one header on top to *next over
// SMTP, and answers DATA with next's answer (proxy semantics: nothing is
// accepted that was not handed on).
func standInFilter(t *testing.T, next *string) *SMTPSink {
	return StartSMTPSink(t, SinkOptions{Handler: func(m SinkMessage) string {
		data := append([]byte(filterHeader+"\r\n"), m.Data...)
		err := smtp.SendMail(*next, nil, m.From, m.To, data)
		var te *textproto.Error
		switch {
		case err == nil:
			return ""
		case errors.As(err, &te):
			return fmt.Sprintf("%d %s", te.Code, strings.ReplaceAll(te.Msg, "\n", " "))
		default:
			return "451 4.4.1 next hop: " + err.Error()
		}
	}})
}

func testMessage(n int) []byte {
	return fmt.Appendf(nil, "From: <ceo@org.example>\r\nTo: <partner@partner.example>\r\nSubject: test %d\r\nMessage-ID: <pf-%d@org.example>\r\n\r\nbody %d\r\n", n, n, n)
}

// TestPostfixFilter runs Postfix with docs/gateway.md's filter lines and a
// stand-in filter: mail goes submission -> filter -> reinjection -> next
// hop; with the filter or the next hop down or answering 4xx it stays in
// Postfix's deferred queue, and goes out after they are back and the queue
// is flushed. The expected values come from the sink (what arrived) and
// postqueue -j (what Postfix holds), never from the harness's own state.
func TestPostfixFilter(t *testing.T) {
	sink := StartSMTPSink(t, SinkOptions{})
	var reinject string
	filter := standInFilter(t, &reinject)
	pf := StartPostfix(t, PostfixOptions{FilterAddr: filter.Addr(), NextHop: sink.Addr()})
	reinject = pf.ReinjectAddr()
	t.Logf("Postfix %s: submission %s, filter %s, reinjection %s, next hop %s", pf.Version(), pf.Addr(), filter.Addr(), reinject, sink.Addr())

	from, to := "ceo@org.example", []string{"partner@partner.example", "other@partner.example"}
	const within = 2 * time.Minute
	delivered := 0
	// expectDelivered waits for message n at the sink, with the filter's
	// header and the envelope as submitted, and an empty queue.
	expectDelivered := func(t *testing.T, n int) {
		t.Helper()
		delivered++
		got := sink.WaitMessages(t, delivered, within)[delivered-1]
		// Postfix may reorder the recipients.
		if got.From != from || !slices.Equal(slices.Sorted(slices.Values(got.To)), slices.Sorted(slices.Values(to))) {
			t.Errorf("envelope at the next hop = %s -> %v, want %s -> %v", got.From, got.To, from, to)
		}
		if !bytes.Contains(got.Data, []byte(fmt.Sprintf("Message-ID: <pf-%d@org.example>", n))) {
			t.Errorf("message %d: the next hop got another message:\n%s", n, got.Data)
		}
		// Once: the reinjected mail must not go through the filter again.
		if c := bytes.Count(got.Data, []byte(filterHeader)); c != 1 {
			t.Errorf("message %d passed the filter %d times, want once:\n%s", n, c, got.Data)
		}
		pf.WaitEmpty(t, within)
	}
	// expectDeferred waits for the one message in the deferred queue and
	// checks that Postfix's reason for every recipient contains want.
	expectDeferred := func(t *testing.T, want string) {
		t.Helper()
		q := pf.WaitDeferred(t, 1, within)
		if q[0].Sender != from || len(q[0].Recipients) != len(to) {
			t.Errorf("deferred: %+v, want from %s to %v", q[0], from, to)
		}
		for _, r := range q[0].Recipients {
			if !strings.Contains(r.DelayReason, want) {
				t.Errorf("deferred for %s because %q, want %q in it", r.Address, r.DelayReason, want)
			}
		}
		if n := len(sink.Messages()); n != delivered {
			t.Errorf("the next hop has %d messages, want %d: the deferred one arrived", n, delivered)
		}
	}

	t.Run("through", func(t *testing.T) {
		if err := pf.Submit(from, to, testMessage(1)); err != nil {
			t.Fatalf("Submit() = %v", err)
		}
		expectDelivered(t, 1)
		if len(filter.Messages()) != 1 {
			t.Errorf("the filter saw %d messages, want 1", len(filter.Messages()))
		}
	})
	t.Run("filter-down", func(t *testing.T) {
		filter.Down()
		if err := pf.Submit(from, to, testMessage(2)); err != nil {
			t.Fatalf("Submit() = %v", err)
		}
		_, port, _ := strings.Cut(filter.Addr(), ":")
		expectDeferred(t, ":"+port+": Connection refused")
		filter.Up(t)
		pf.Flush(t)
		expectDelivered(t, 2)
	})
	t.Run("filter-4xx", func(t *testing.T) {
		filter.SetReply(SinkData, "451 4.3.0 gateway busy")
		if err := pf.Submit(from, to, testMessage(3)); err != nil {
			t.Fatalf("Submit() = %v", err)
		}
		expectDeferred(t, "451 4.3.0 gateway busy")
		filter.SetReply(SinkData, "")
		pf.Flush(t)
		expectDelivered(t, 3)
	})
	t.Run("next-hop-down", func(t *testing.T) {
		sink.Down()
		if err := pf.Submit(from, to, testMessage(4)); err != nil {
			t.Fatalf("Submit() = %v", err)
		}
		_, port, _ := strings.Cut(sink.Addr(), ":")
		expectDeferred(t, ":"+port+": Connection refused")
		sink.Up(t)
		pf.Flush(t)
		expectDelivered(t, 4)
	})
	t.Run("restart", func(t *testing.T) {
		// A message deferred before the restart is still there after it.
		filter.Down()
		if err := pf.Submit(from, to, testMessage(6)); err != nil {
			t.Fatalf("Submit() = %v", err)
		}
		pf.WaitDeferred(t, 1, within)
		pf.Stop()
		if err := pf.Submit(from, to, testMessage(7)); err == nil {
			t.Error("Submit() to a stopped Postfix = nil error")
		}
		pf.Restart(t)
		if q := pf.Queue(t); len(q) != 1 || q[0].Sender != from {
			t.Errorf("queue after the restart = %+v, want the deferred message", q)
		}
		filter.Up(t)
		pf.Flush(t)
		expectDelivered(t, 6)
	})
	t.Run("next-hop-4xx", func(t *testing.T) {
		sink.SetReply(SinkRcpt, "452 4.2.2 mailbox full")
		if err := pf.Submit(from, to, testMessage(5)); err != nil {
			t.Fatalf("Submit() = %v", err)
		}
		expectDeferred(t, "452 4.2.2 mailbox full")
		sink.SetReply(SinkRcpt, "")
		pf.Flush(t)
		expectDelivered(t, 5)
	})
}

// TestPostfixFilterLinesDocumented checks that docs/gateway.md holds the
// blocks StartPostfix takes, with the standard ports it replaces.
func TestPostfixFilterLinesDocumented(t *testing.T) {
	mainCF, masterCF := PostfixFilterLines(t)
	if !strings.Contains(mainCF, "content_filter = smimed:"+docFilterAddr) {
		t.Errorf("main.cf block = %q, want the content_filter line with %s", mainCF, docFilterAddr)
	}
	if !strings.Contains(masterCF, docReinjectAddr+" inet") || !strings.Contains(masterCF, "smimed    unix") {
		t.Errorf("master.cf block = %q, want the smimed transport and the %s listener", masterCF, docReinjectAddr)
	}
}

// TestPostfixFilterLinesInREADME: the README shows the same main.cf and
// master.cf lines as docs/gateway.md, whose lines the Postfix tests run.
func TestPostfixFilterLinesInREADME(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(RepoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	mainCF, masterCF := PostfixFilterLines(t)
	for _, c := range []struct{ marker, want string }{{docMainMarker, mainCF}, {docMasterMarker, masterCF}} {
		got, err := fencedAfter(readme, c.marker)
		if err != nil {
			t.Fatalf("README.md: %v", err)
		}
		if got != c.want {
			t.Errorf("README.md's %s block differs from docs/gateway.md's:\n%s\nwant\n%s", c.marker, got, c.want)
		}
	}
}

func TestFencedAfter(t *testing.T) {
	doc := []byte("x\n<!-- m -->\n\n```\na\nb\n```\n")
	if got, err := fencedAfter(doc, "<!-- m -->"); err != nil || got != "a\nb\n" {
		t.Errorf("fencedAfter() = %q, %v, want \"a\\nb\\n\"", got, err)
	}
	for _, bad := range []string{"no marker", "<!-- m -->\ntext\n```\na\n```\n", "<!-- m -->\n```\na\n"} {
		if _, err := fencedAfter([]byte(bad), "<!-- m -->"); err == nil {
			t.Errorf("fencedAfter(%q) = nil error, want one", bad)
		}
	}
}

// TestPostfixFilterToDovecotLMTP delivers through the filter to Dovecot
// over LMTP, as the gateway's integration tests do: Dovecot's own view
// (doveadm) must show the message with the filter's header.
func TestPostfixFilterToDovecotLMTP(t *testing.T) {
	d := StartDovecotWith(t, DovecotOptions{LMTP: true})
	d.AddUser(t, "partner", "pw")
	var reinject string
	filter := standInFilter(t, &reinject)
	pf := StartPostfix(t, PostfixOptions{FilterAddr: filter.Addr(), NextHop: d.LMTPAddr(), LMTP: true})
	reinject = pf.ReinjectAddr()

	if err := pf.Submit("ceo@org.example", []string{"partner@partner.example"}, testMessage(1)); err != nil {
		t.Fatalf("Submit() = %v", err)
	}
	uids := d.WaitUIDs(t, "partner", "INBOX", 1, 2*time.Minute)
	pf.WaitEmpty(t, time.Minute)
	text := d.Doveadm(t, "fetch", "-u", "partner", "text", "mailbox", "INBOX", "uid", fmt.Sprint(uids[0]))
	for _, want := range []string{filterHeader, "Message-ID: <pf-1@org.example>", "body 1"} {
		if !strings.Contains(text, want) {
			t.Errorf("Dovecot's copy lacks %q:\n%s", want, text)
		}
	}
	if len(uids) != 1 {
		t.Errorf("INBOX has %d messages, want 1", len(uids))
	}
}

// TestPostfixSubmission: with SASLAuth and SenderLogins the test's smtpd
// is a submission server whose logins Dovecot checks: no relaying
// without a login, Dovecot's refusal of a wrong password, a login's own
// address delivered to the next hop, another login's address refused.
// The verdicts are Postfix's replies and what reaches the sink.
func TestPostfixSubmission(t *testing.T) {
	sink := StartSMTPSink(t, SinkOptions{})
	d := StartDovecotWith(t, DovecotOptions{AuthInet: true})
	d.AddUser(t, "ceo", "ceo-pw")
	d.AddUser(t, "cfo", "cfo-pw")
	pf := StartPostfix(t, PostfixOptions{NextHop: sink.Addr(), SASLAuth: d.AuthAddr(),
		SenderLogins: map[string]string{"ceo@org.example": "ceo", "cfo@org.example": "cfo"}})
	to := []string{"partner@partner.example"}
	code := func(err error) int {
		var te *textproto.Error
		if errors.As(err, &te) {
			return te.Code
		}
		return 0
	}
	// net/smtp sends PLAIN without TLS to 127.0.0.1 only.
	login := func(user, pw string) smtp.Auth { return smtp.PlainAuth("", user, pw, "127.0.0.1") }

	if err := smtp.SendMail(pf.Addr(), nil, "ceo@org.example", to, testMessage(1)); code(err) != 554 && code(err) != 553 {
		t.Fatalf("without a login = %v, want a refusal", err)
	}
	if err := smtp.SendMail(pf.Addr(), login("ceo", "wrong"), "ceo@org.example", to, testMessage(2)); code(err) != 535 {
		t.Fatalf("a wrong password = %v, want 535", err)
	}
	if err := smtp.SendMail(pf.Addr(), login("ceo", "cfo-pw"), "ceo@org.example", to, testMessage(3)); code(err) != 535 {
		t.Fatalf("another user's password = %v, want 535", err)
	}
	if err := smtp.SendMail(pf.Addr(), login("ceo", "ceo-pw"), "cfo@org.example", to, testMessage(4)); code(err) != 553 {
		t.Fatalf("ceo sending as cfo = %v, want 553", err)
	}
	if err := smtp.SendMail(pf.Addr(), login("ceo", "ceo-pw"), "ceo@org.example", to, testMessage(5)); err != nil {
		t.Fatalf("ceo sending as ceo = %v\n%s", err, pf.Log())
	}
	got := sink.WaitMessages(t, 1, time.Minute)
	pf.WaitEmpty(t, time.Minute)
	if got = sink.Messages(); len(got) != 1 || got[0].From != "ceo@org.example" || !bytes.Contains(got[0].Data, []byte("<pf-5@org.example>")) {
		t.Fatalf("the sink has %+v, want message 5 only", got)
	}
}
