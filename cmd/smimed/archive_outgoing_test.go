package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/archive"
)

// Outgoing mail through the commands: list --direction, show --record
// with the gateway's fields, show --original as sent, export with the
// decision on top, verify counting their files.
func TestArchiveOutgoingCommands(t *testing.T) {
	f := archiveOf(t, []*archiveMsg{{name: "from-lines", raw: []byte(fromLinesMsg), received: utc(2026, 3, 1, 10, 0)}})
	dir := t.TempDir()
	pt := filepath.Join(dir, "pt.eml")
	sent := filepath.Join(dir, "sent.eml")
	ptBytes := "From: ceo@org.example\r\nTo: bob@partner.example\r\nSubject: offer\r\n\r\nthe offer\r\n"
	sentBytes := "Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQ\r\n"
	os.WriteFile(pt, []byte(ptBytes), 0o600)
	os.WriteFile(sent, []byte(sentBytes), 0o600)
	a, closeStore := f.open(t, false)
	rec, err := a.PutOutgoing(archive.Outgoing{
		ID: "sess1.1", MailFrom: "ceo@org.example", RcptTo: []string{"bob@partner.example"}, Accepted: time.Now(),
		Decision: []string{archive.DecisionSigned, archive.DecisionEncrypted}, Signer: strings.Repeat("1a", 32),
		ContentCipher: "aes256-gcm", Recipients: []archive.OutgoingRecipient{{Address: "bob@partner.example", Fingerprint: strings.Repeat("2b", 32), KeyManagement: "rsaes-oaep"}},
	}, pt, sent)
	closeStore()
	if err != nil {
		t.Fatal(err)
	}
	outID, inID := fmt.Sprint(rec.ID), f.id("from-lines")
	if got := f.listIDs(t, "--direction", "out"); !slices.Equal(got, []string{outID}) {
		t.Errorf("list --direction out = %v, want [%s]", got, outID)
	}
	if got := f.listIDs(t, "--direction", "in"); !slices.Equal(got, []string{inID}) {
		t.Errorf("list --direction in = %v, want [%s]", got, inID)
	}
	code, text, errOut := runCmd(nil, "archive", "show", "--record", outID, "--config", f.cfg)
	for _, want := range []string{"direction:           out", "decision:            signed, encrypted", "rcpt to:             bob@partner.example",
		"encrypted to:        bob@partner.example " + strings.Repeat("2b", 32) + " (rsaes-oaep)", "content cipher:      aes256-gcm"} {
		if code != exitOK || !strings.Contains(text, want) {
			t.Errorf("show --record: exit %d, %s%s\nwant %q", code, text, errOut, want)
		}
	}
	if code, text, _ := runCmd(nil, "archive", "show", "--original", outID, "--config", f.cfg); code != exitOK || text != sentBytes {
		t.Errorf("show --original of outgoing mail: exit %d, %q; want the message as sent", code, text)
	}
	if code, text, _ := runCmd(nil, "archive", "show", outID, "--config", f.cfg); code != exitOK || text != ptBytes {
		t.Errorf("show of outgoing mail: exit %d, %q; want the message as submitted", code, text)
	}
	mbox := filepath.Join(dir, "out.mbox")
	if code, _, errOut := runCmd(nil, "archive", "export", "--direction", "out", "--out", mbox, "--config", f.cfg); code != exitOK {
		t.Fatalf("export --direction out: exit %d, %s", code, errOut)
	}
	exp, _ := os.ReadFile(mbox)
	if !strings.Contains(string(exp), "X-Smimed-Outgoing: decision=signed,encrypted;") || !strings.Contains(string(exp), "the offer") || strings.Contains(string(exp), "quarterly") {
		t.Errorf("export --direction out = %q", exp)
	}
	if code, text, errOut := runCmd(nil, "archive", "verify", "--config", f.cfg); code != exitOK || !strings.Contains(text, "checked 2 records") {
		t.Errorf("verify: exit %d, %s%s", code, text, errOut)
	}
	if code, text, errOut := runCmd(nil, "archive", "retry", outID, "--config", f.cfg); !strings.Contains(text+errOut, "sent by the gateway") {
		t.Errorf("retry of outgoing mail: exit %d, %s%s; want it refused", code, text, errOut)
	}
}
