package harvest

import (
	"bytes"
	"encoding/asn1"
	"encoding/json"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/smimed/smimed/daemon/testenv"
)

// The memory attack of issue 9, item 5: an EnvelopedData with a million
// empty RecipientInfos (A2 00, two bytes each). The old engine parsed each
// into a 200-byte structure, twice, and put each into the report: 858 MB
// for a 2.7 MB message.

// envelopedMessage wraps an EnvelopedData with the given RecipientInfos
// (DER, concatenated) and an AES-256-CBC content of n zero bytes in a
// message.
func envelopedMessage(recipientInfos []byte, n int) []byte {
	iv := make([]byte, 16)
	aes256CBC := derSequence(derOID(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}), derTLV(0x04, iv))
	ed := derSequence(
		derInt(0),
		derTLV(0x31, recipientInfos),
		derSequence(derOID(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}), aes256CBC, derTLV(0x80, make([]byte, n))),
	)
	ci := derSequence(derOID(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3}), derTLV(0xa0, ed))
	var msg bytes.Buffer
	msg.WriteString("From: mallory@evil.example\r\nSubject: big\r\nMessage-ID: <mem@evil.example>\r\n" +
		"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	writeBase64Lines(&msg, ci)
	return msg.Bytes()
}

// allocated runs Process and returns the bytes allocated meanwhile
// (runtime.MemStats.TotalAlloc: every allocation counts, freed or not,
// so it bounds the peak the message causes).
func allocated(tb testing.TB, eng *Engine, raw []byte) (*Result, uint64) {
	tb.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res, err := eng.Process(raw, time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))
	runtime.ReadMemStats(&after)
	if err != nil {
		tb.Fatal(err)
	}
	return res, after.TotalAlloc - before.TotalAlloc
}

// memoryBound is the most Process may allocate for a message of n bytes,
// whatever it holds (docs/security.md, "Limits"): 16 times its size plus 32 MiB.
// Ordinary mail needs less than its size (TestMemoryOrdinaryMail); the
// constant covers the parse caps (cms.MaxCertificateBytes per SignedData,
// cms.MaxRecipientInfos) and the organisation's keys.
func memoryBound(n int) uint64 { return 16*uint64(n) + 32<<20 }

// reportJSON is the report as the archive stores it.
func reportJSON(tb testing.TB, r Report) []byte {
	tb.Helper()
	j, err := json.Marshal(r)
	if err != nil {
		tb.Fatal(err)
	}
	return j
}

func TestMemoryAttackRecipients(t *testing.T) {
	raw := envelopedMessage(bytes.Repeat([]byte{0xa2, 0x00}, 1_000_000), 64)
	eng := New(Options{Keys: keyList(orgKeys(t))})
	res, n := allocated(t, eng, raw)
	if n > memoryBound(len(raw)) {
		t.Errorf("Process() allocated %d bytes for a %d-byte message, bound %d", n, len(raw), memoryBound(len(raw)))
	}
	d := res.Report.Decryption
	if d.Status != DecryptFailed || !strings.Contains(d.Error, "more than 1024 RecipientInfos") {
		t.Errorf("Decryption = %+v, want failed naming the RecipientInfo limit", d)
	}
	if j := reportJSON(t, res.Report); len(j) > 4096 {
		t.Errorf("report JSON of %d bytes, want at most 4096", len(j))
	}
	// Within the limit: every recipient is looked at (the org key could be
	// the last), and the report names the first ones and how many more.
	raw = envelopedMessage(bytes.Repeat([]byte{0xa2, 0x00}, 1000), 64)
	res, _ = allocated(t, eng, raw)
	r := res.Report.Recipients
	if len(r) != maxReportList || r[0] != "kekri unknown" || r[len(r)-1] != "… and 969 more" {
		t.Errorf("Recipients = %q, want %d entries ending with \"… and 969 more\"", r, maxReportList)
	}
}

// TestMemoryOrdinaryMail measures k for ordinary big mail: a 10 MiB
// attachment encrypted by OpenSSL (a 19 MB message) needs about three
// quarters of its size: the base64-decoded ciphertext, decrypted in place,
// with the plaintext's header written in front of the decrypted body.
func TestMemoryOrdinaryMail(t *testing.T) {
	testenv.NeedOpenSSL(t)
	raw := largeEncrypted(t, 10<<20)
	res, n := allocated(t, New(Options{Keys: keyList(orgKeys(t))}), raw)
	if res.Report.Decryption.Status != DecryptOK {
		t.Fatalf("Decryption = %+v", res.Report.Decryption)
	}
	if bound := uint64(len(raw)) + 4<<20; n > bound {
		t.Errorf("Process() allocated %d bytes (%.2f× the %d-byte message), want at most %d", n, float64(n)/float64(len(raw)), len(raw), bound)
	}
	t.Logf("%d-byte message: %d bytes allocated (%.2f×)", len(raw), n, float64(n)/float64(len(raw)))
}

// TestReportBound fills a report beyond every limit: its JSON stays under
// MaxReportJSON, and every cut list says how much was cut.
func TestReportBound(t *testing.T) {
	// "<" is the costliest byte in JSON (\u003c); the subject has
	// characters of two bytes, to check cuts on character boundaries.
	long := strings.Repeat("<", 100_000)
	var r Report
	for _, s := range []*string{&r.File, &r.MessageID, &r.From, &r.Subject, &r.Error,
		&r.Decryption.Status, &r.Decryption.Key, &r.Decryption.Cipher, &r.Decryption.KeyTransport, &r.Decryption.Error} {
		*s = long
	}
	for i := 0; i < 1000; i++ {
		r.Layers = append(r.Layers, long)
		r.Recipients = append(r.Recipients, long)
		r.Notes = append(r.Notes, long)
		r.Harvested = append(r.Harvested, Harvested{Email: long, Fingerprint: long})
		r.Signatures = append(r.Signatures, Signature{Status: StatusValid, Signer: long, Fingerprint: long, Serial: long,
			Issuer: long, Digest: long, Algorithm: long, Reason: long})
		r.Unprotected = append(r.Unprotected, HeaderField{Name: long, Value: long})
	}
	boundReport(&r)
	j := reportJSON(t, r)
	if len(j) > MaxReportJSON {
		t.Errorf("JSON of %d bytes, bound %d", len(j), MaxReportJSON)
	}
	t.Logf("largest report: %d bytes of JSON", len(j))
	if last := r.Signatures[len(r.Signatures)-1]; last.Status != StatusError || last.Reason != "… and 953 more signatures" {
		t.Errorf("last signature = %s %q, want error \"… and 953 more signatures\"", last.Status, last.Reason)
	}
	if last := r.Recipients[len(r.Recipients)-1]; last != "… and 969 more" {
		t.Errorf("last recipient = %q", last)
	}
	if !strings.Contains(strings.Join(r.Notes, "\n"), "more") {
		t.Errorf("notes do not say they were cut: %q", r.Notes[len(r.Notes)-1])
	}
	if len(r.Unprotected) != maxUnprotected {
		t.Errorf("%d unprotected values kept, want %d", len(r.Unprotected), maxUnprotected)
	}
	r.Subject = strings.Repeat("ü", 3000)
	boundReport(&r)
	if !utf8.ValidString(r.Subject) || !strings.HasSuffix(r.Subject, "…") || len(r.Subject) > maxReportHeader {
		t.Errorf("Subject cut to %d bytes (valid UTF-8 %v)", len(r.Subject), utf8.ValidString(r.Subject))
	}
}

// TestHostileReportSize: the reports of the hostile messages are small.
func TestHostileReportSize(t *testing.T) {
	entity := []byte("Content-Type: text/plain\r\n\r\nhi\r\n")
	for i := 0; i < 4; i++ {
		entity = aliceSignedData(t, entity, 16)
	}
	for name, raw := range map[string][]byte{
		"cost":       buildCostAttack(t, costAttack{fakes: 100, bits: 65536, exponent: 1<<31 - 1, signers: 16}),
		"signers":    append([]byte("From: alice@partner.example\r\n"), entity...),
		"recipients": envelopedMessage(bytes.Repeat([]byte{0xa2, 0x00}, 100_000), 64),
		"subject":    []byte("Subject: " + strings.Repeat("x", 1<<20) + "\r\n\r\nbody\r\n"),
	} {
		res := process(t, New(Options{Keys: keyList(orgKeys(t)), Roots: fixtureRoots(t)}), raw)
		if j := reportJSON(t, res.Report); len(j) > 64<<10 {
			t.Errorf("%s: report JSON of %d bytes, want at most 64 KiB", name, len(j))
		}
	}
}
