package daemon

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest"
)

// The trust attacks whose damage shows in the user's copy and the archive,
// run through the service against Dovecot: a genuine signed part of
// alice's beside the attacker's HTML (in clear and encrypted to the
// organisation), and alice's whole-message signature under a rewritten
// outer Subject. What the copies say is read back with doveadm.

func TestScenarioForgedVerdicts(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	t.Parallel()
	dir := t.TempDir()
	signedPart := testenv.OpenSSLSign(t, dir, "alice", []byte("Content-Type: text/plain\r\n\r\nSee you at the meeting.\r\n"))
	mixed := "Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/html\r\n\r\n<p>Wire the money to IBAN XX00 6666.</p>\r\n--zz\r\n" +
		string(signedPart) + "\r\n--zz--\r\n"
	head := func(id, subject string) string {
		return "From: alice@partner.example\r\nTo: ceo@org.example\r\nSubject: " + subject + "\r\nMessage-ID: <" + id + "@test.smimed.example>\r\n"
	}
	partialClear := []byte(head("partial-clear", "payment") + mixed)
	partialEnc := append([]byte(head("partial-enc", "payment")),
		testenv.OpenSSLInput(t, "", []byte(mixed), "cms", "-encrypt", "-aes256", filepath.Join("..", "testdata", "pki", "org-new.crt"))...)
	protected := testenv.OpenSSLSign(t, dir, "alice", []byte("Content-Type: text/plain; hp=\"clear\"\r\n"+head("lunch", "lunch on Friday?")+"\r\nShall we?\r\n"))
	rewritten := append([]byte(head("lunch", "URGENT: change of bank details")), protected...)

	e := newSvcEnv(t, "ceo")
	e.writeConfig(t, "", []string{"org-new"}, e.account("ceo")+"archive_folder = \"Decrypted\"\narchive_folder_messages = \"all\"\n")
	logs := &testenv.LockedBuffer{}
	svc, _ := runService(t, e.cfgPath, logs)
	for _, m := range [][]byte{partialClear, partialEnc, rewritten} {
		e.d.Deliver(t, "ceo", "INBOX", m)
	}
	waitArchived(t, svc, logs, 3)
	waitUntil(t, "three copies in Decrypted", func() bool { return len(copies(t, e.d, "ceo", "Decrypted")) == 3 },
		func() string { return logs.String() })

	// Each copy's header, as Dovecot has it, by its Message-ID.
	hdrs := map[string]string{}
	out := e.d.Doveadm(t, "fetch", "-u", "ceo", "hdr", "mailbox", "Decrypted", "all")
	for _, h := range strings.Split(out, "hdr:") {
		for _, id := range []string{"partial-clear", "partial-enc", "lunch"} {
			if strings.Contains(h, "<"+id+"@test.smimed.example>") {
				hdrs[id] = h
			}
		}
	}
	for _, id := range []string{"partial-clear", "partial-enc"} {
		h := hdrs[id]
		if !strings.Contains(h, "smime=policy") || strings.Contains(h, "smime=pass") || !strings.Contains(h, "text/html") {
			t.Errorf("copy of %s: want smime=policy naming the unsigned text/html part, never pass:\n%s", id, h)
		}
	}
	lunch := hdrs["lunch"]
	if !strings.Contains(lunch, "Subject: lunch on Friday?") || strings.Contains(lunch, "\nSubject: URGENT") ||
		!strings.Contains(lunch, "X-Smimed-Unprotected-Subject: URGENT: change of bank details") || !strings.Contains(lunch, "smime=pass") {
		t.Errorf("copy of the rewritten message: want the signed Subject, the outer one kept aside, smime=pass:\n%s", lunch)
	}

	// The archive's records agree: partial is never signed-valid.
	var recs []*archive.Record
	if err := svc.arch.List(archive.Query{}, func(r *archive.Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	for _, r := range recs {
		partial := strings.Contains(r.MessageID, "partial-")
		for _, s := range r.Signatures {
			if partial && s.Status != harvest.StatusPartial {
				t.Errorf("record %s: signature %s, want partial", r.MessageID, s.Status)
			}
		}
		if partial && r.Has("signed-valid") {
			t.Errorf("record %s has status signed-valid: %v", r.MessageID, r.Status)
		}
		if strings.Contains(r.MessageID, "lunch") && r.Subject != "lunch on Friday?" {
			t.Errorf("record of the rewritten message: Subject %q, want the signed one", r.Subject)
		}
	}
}
