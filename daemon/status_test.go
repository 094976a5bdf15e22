package daemon

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/harvest"
)

func TestStatusLine(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	newM := func() *Metrics {
		m := NewMetrics()
		m.now = func() time.Time { return now }
		return m
	}
	plain := &harvest.Report{Decryption: harvest.Decryption{Status: harvest.DecryptNone}}
	broken := &harvest.Report{Error: "malformed MIME"}

	m := newM()
	m.FolderUp("ceo", "INBOX")
	m.FolderUp("ceo", "Archive")
	for _, rep := range []*harvest.Report{plain, plain, broken} {
		m.Processed(Message{Account: "ceo", Folder: "INBOX"}, rep)
	}
	m.FolderDown("sales", "INBOX", stateReconnecting, 7200*time.Millisecond)
	if got, want := m.Status(), "ceo: 2/2 folders up, 2 processed, 1 failed; sales: reconnecting in 8s"; got != want {
		t.Errorf("Status() = %q, want %q", got, want)
	}

	m.FolderDown("ceo", "Archive", stateLoginRefused, 15*time.Minute)
	m.FolderConnecting("hr", "INBOX")
	if got, want := m.Status(), "ceo: 1/2 folders up (login refused, retry in 15m), 2 processed, 1 failed; hr: connecting; sales: reconnecting in 8s"; got != want {
		t.Errorf("Status() = %q, want %q", got, want)
	}
	m.FolderDown("hr", "INBOX", stateStopped, 0)
	m.ForgetFolder("sales", "INBOX")
	if got, want := m.Status(), "ceo: 1/2 folders up (login refused, retry in 15m), 2 processed, 1 failed; hr: stopped (see the log)"; got != want {
		t.Errorf("Status() = %q, want %q", got, want)
	}

	// Many accounts: summarised, at most statusMax bytes.
	m = newM()
	for i := range 40 {
		name := fmt.Sprintf("department-%02d", i)
		if i%10 == 3 {
			m.FolderDown(name, "INBOX", stateReconnecting, time.Minute)
			continue
		}
		m.FolderUp(name, "INBOX")
		m.Processed(Message{Account: name, Folder: "INBOX"}, plain)
	}
	got := m.Status()
	want := "40 accounts, 36 fully up; 36 processed, 0 failed; not up: department-03, department-13, department-23, department-33"
	if got != want {
		t.Errorf("Status() with 40 accounts = %q, want %q", got, want)
	}
	for i := range 40 {
		m.FolderDown(fmt.Sprintf("department-%02d", i), "INBOX", stateReconnecting, time.Minute)
	}
	got = m.Status()
	if len(got) > statusMax || !strings.HasPrefix(got, "40 accounts, 0 fully up; 36 processed, 0 failed; not up: department-00, department-01, ") || !strings.HasSuffix(got, " more") {
		t.Errorf("Status() with 40 accounts down = %q (%d bytes), want a summary under %d bytes ending in \"N more\"", got, len(got), statusMax)
	}
	var shown int
	fmt.Sscanf(got[strings.LastIndex(got, " and ")+5:], "%d", &shown)
	if listed := strings.Count(got, "department-"); listed+shown != 40 {
		t.Errorf("Status() names %d accounts and %d more, want 40 in all: %q", listed, shown, got)
	}
}

func TestOutcome(t *testing.T) {
	for _, tc := range []struct {
		m    Message
		rep  *harvest.Report
		want string
	}{
		{Message{TooLarge: true}, nil, OutcomeTooLarge},
		{Message{}, &harvest.Report{Error: "x"}, OutcomeError},
		{Message{}, &harvest.Report{Decryption: harvest.Decryption{Status: harvest.DecryptFailed}, Error: "no key"}, OutcomeUndecryptable},
		{Message{}, &harvest.Report{Decryption: harvest.Decryption{Status: harvest.DecryptOK}, Error: "bad inner MIME"}, OutcomeError},
		{Message{}, &harvest.Report{Decryption: harvest.Decryption{Status: harvest.DecryptOK}, Signatures: []harvest.Signature{{}}}, OutcomeDecrypted},
		{Message{}, &harvest.Report{Decryption: harvest.Decryption{Status: harvest.DecryptNone}, Signatures: []harvest.Signature{{}}}, OutcomeSigned},
		{Message{}, &harvest.Report{Decryption: harvest.Decryption{Status: harvest.DecryptNone}}, OutcomePlain},
	} {
		if got := Outcome(tc.m, tc.rep); got != tc.want {
			t.Errorf("Outcome(%+v, %+v) = %q, want %q", tc.m, tc.rep, got, tc.want)
		}
	}
}
