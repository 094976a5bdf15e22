package archive

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smimed/smimed/daemon/testenv"
)

// An XRechnung in UBL syntax, shortened but shaped as real ones are.
const ublInvoice = `<?xml version="1.0" encoding="UTF-8"?>
<ubl:Invoice xmlns:ubl="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
  xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
  xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">
  <cbc:CustomizationID>urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0</cbc:CustomizationID>
  <cbc:ID>RE-2026-0042</cbc:ID>
  <cbc:IssueDate>2026-03-01</cbc:IssueDate>
  <cbc:InvoiceTypeCode>380</cbc:InvoiceTypeCode>
  <cbc:DocumentCurrencyCode>EUR</cbc:DocumentCurrencyCode>
  <cac:LegalMonetaryTotal><cbc:PayableAmount currencyID="EUR">119.00</cbc:PayableAmount></cac:LegalMonetaryTotal>
</ubl:Invoice>
`

// An XRechnung in CII syntax (also the XML inside ZUGFeRD/Factur-X).
const ciiInvoice = `<?xml version="1.0" encoding="UTF-8"?>
<rsm:CrossIndustryInvoice xmlns:rsm="urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
  xmlns:ram="urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100">
  <rsm:ExchangedDocumentContext>
    <ram:GuidelineSpecifiedDocumentContextParameter><ram:ID>urn:cen.eu:en16931:2017</ram:ID></ram:GuidelineSpecifiedDocumentContextParameter>
  </rsm:ExchangedDocumentContext>
  <rsm:ExchangedDocument><ram:ID>RE-2026-0043</ram:ID><ram:TypeCode>380</ram:TypeCode></rsm:ExchangedDocument>
</rsm:CrossIndustryInvoice>
`

// pdfWith builds a one-page PDF; embed names an embedded file holding
// xml (none when ""), text is shown on the page.
func pdfWith(embed, xml, text string) []byte { return pdfFlate(embed, xml, text, false) }

// pdfFlate is pdfWith, the embedded file compressed with FlateDecode
// when flate is set.
func pdfFlate(embed, xml, text string, flate bool) []byte {
	var b bytes.Buffer
	var offs []int
	obj := func(body string) {
		offs = append(offs, b.Len())
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", len(offs), body)
	}
	b.WriteString("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
	names := ""
	if embed != "" {
		names = fmt.Sprintf(" /Names << /EmbeddedFiles << /Names [(%s) 6 0 R] >> >> /AF [6 0 R]", embed)
	}
	obj("<< /Type /Catalog /Pages 2 0 R" + names + " >>")
	obj("<< /Type /Pages /Kids [3 0 R] /Count 1 >>")
	obj("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>")
	content := fmt.Sprintf("BT /F1 12 Tf 72 770 Td (%s) Tj ET", text)
	obj(fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", len(content), content))
	obj("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
	if embed != "" {
		obj(fmt.Sprintf("<< /Type /Filespec /F (%s) /UF (%s) /AFRelationship /Data /EF << /F 7 0 R >> >>", embed, embed))
		data, filter := xml, ""
		if flate {
			var z bytes.Buffer
			zw := zlib.NewWriter(&z)
			zw.Write([]byte(xml))
			zw.Close()
			data, filter = z.String(), " /Filter /FlateDecode"
		}
		obj(fmt.Sprintf("<< /Type /EmbeddedFile /Subtype /text#2Fxml%s /Length %d >>\nstream\n%s\nendstream", filter, len(data), data))
	}
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(offs)+1)
	for _, o := range offs {
		fmt.Fprintf(&b, "%010d 00000 n \n", o)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(offs)+1, xref)
	return b.Bytes()
}

// mailWith is a multipart/mixed message with a text part and one
// base64 attachment.
func mailWith(ctype, name string, body []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(body)
	var lines []string
	for len(enc) > 76 {
		lines, enc = append(lines, enc[:76]), enc[76:]
	}
	lines = append(lines, enc)
	return []byte("From: billing@supplier.example\r\nTo: ap@org.example\r\nSubject: Rechnung\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" +
		"--b1\r\nContent-Type: " + ctype + "; name=\"" + name + "\"\r\nContent-Disposition: attachment; filename=\"" + name + "\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + strings.Join(lines, "\r\n") + "\r\n--b1--\r\n")
}

// pdfAttachments lists a PDF's embedded files with poppler's pdfdetach,
// so the test PDFs are checked by a real PDF reader.
func pdfAttachments(t *testing.T, pdf []byte) string {
	t.Helper()
	testenv.NeedTool(t, "pdfdetach", "poppler-utils")
	p := filepath.Join(t.TempDir(), "x.pdf")
	os.WriteFile(p, pdf, 0o600)
	out, err := exec.Command("pdfdetach", "-list", p).CombinedOutput()
	if err != nil {
		t.Fatalf("pdfdetach -list: %v\n%s", err, out)
	}
	return string(out)
}

// checkDetached saves the embedded file name with pdfdetach and
// compares it with want.
func checkDetached(t *testing.T, pdf []byte, name, want string) {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "x.pdf")
	os.WriteFile(p, pdf, 0o600)
	out := filepath.Join(dir, "out.xml")
	if b, err := exec.Command("pdfdetach", "-savefile", name, "-o", out, p).CombinedOutput(); err != nil {
		t.Fatalf("pdfdetach -savefile: %v\n%s", err, b)
	}
	if got, _ := os.ReadFile(out); string(got) != want {
		t.Fatalf("pdfdetach extracted %q, want the invoice XML", got)
	}
}

func TestIsEInvoice(t *testing.T) {
	zugferd := pdfWith("factur-x.xml", ciiInvoice, "Rechnung RE-2026-0043")
	mention := pdfWith("", "", "Die Datei factur-x.xml folgt separat")
	otherEmbed := pdfWith("notes.xml", "<notes/>", "(factur-x.xml) wird nachgereicht")
	// Compressed, under a name not in the list: found by its content.
	hidden := pdfFlate("rechnungsdaten.xml", ciiInvoice, "Rechnung", true)
	compressedOther := pdfFlate("notes.xml", "<notes>factur-x.xml</notes>", "x", true)
	if got := pdfAttachments(t, hidden); !strings.Contains(got, "rechnungsdaten.xml") {
		t.Fatalf("pdfdetach on the compressed PDF: %q", got)
	}
	checkDetached(t, hidden, "rechnungsdaten.xml", ciiInvoice)
	// A real PDF reader sees what the detector is to see.
	if got := pdfAttachments(t, zugferd); !strings.Contains(got, "1 embedded files") || !strings.Contains(got, "factur-x.xml") {
		t.Fatalf("pdfdetach on the ZUGFeRD PDF: %q, want factur-x.xml embedded", got)
	}
	if got := pdfAttachments(t, mention); !strings.Contains(got, "0 embedded files") {
		t.Fatalf("pdfdetach on the mentioning PDF: %q, want nothing embedded", got)
	}
	if got := pdfAttachments(t, otherEmbed); strings.Contains(got, "factur-x.xml") {
		t.Fatalf("pdfdetach on the other PDF: %q, want only notes.xml", got)
	}
	fwd := []byte("From: a@org.example\r\nTo: b@org.example\r\nSubject: Fwd\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"o\"\r\n\r\n--o\r\nContent-Type: text/plain\r\n\r\nfyi\r\n--o\r\nContent-Type: message/rfc822\r\n\r\n" +
		string(mailWith("application/xml", "rechnung.xml", []byte(ublInvoice))) + "\r\n--o--\r\n")
	for _, tc := range []struct {
		name string
		msg  []byte
		want bool
	}{
		{"UBL XRechnung", mailWith("application/xml", "RE-2026-0042.xml", []byte(ublInvoice)), true},
		{"CII XRechnung as text/xml", mailWith("text/xml", "invoice.xml", []byte(ciiInvoice)), true},
		{"CII named only by file name", mailWith("application/octet-stream", "xrechnung.xml", []byte(ciiInvoice)), true},
		{"ZUGFeRD PDF", mailWith("application/pdf", "RE-2026-0043.pdf", zugferd), true},
		{"forwarded invoice", fwd, true},
		{"ZUGFeRD PDF, compressed, other name", mailWith("application/pdf", "RE.pdf", hidden), true},
		{"PDF embedding other compressed XML", mailWith("application/pdf", "x.pdf", compressedOther), false},
		{"PDF mentioning the name", mailWith("application/pdf", "brief.pdf", mention), false},
		{"PDF embedding another XML, mentioning the name", mailWith("application/pdf", "brief.pdf", otherEmbed), false},
		{"other XML", mailWith("application/xml", "order.xml", []byte(`<?xml version="1.0"?><Order xmlns="urn:oasis:names:specification:ubl:schema:xsd:Order-2"/>`)), false},
		{"Invoice element without UBL namespace", mailWith("application/xml", "x.xml", []byte(`<Invoice/>`)), false},
		{"UBL invoice pasted into the text", []byte("From: a@b\r\nSubject: x\r\n\r\n" + ublInvoice), false},
		{"plain", synthetic("a@b.example", "c@d.example", "hello", 1), false},
	} {
		if got := IsEInvoice(tc.msg); got != tc.want {
			t.Errorf("%s: IsEInvoice = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func FuzzIsEInvoice(f *testing.F) {
	f.Add(mailWith("application/xml", "x.xml", []byte(ublInvoice)))
	f.Add(mailWith("application/pdf", "x.pdf", pdfWith("factur-x.xml", ciiInvoice, "x")))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		IsEInvoice(msg)
	})
}

// BenchmarkIsEInvoice: the detector on a 2 MiB ZUGFeRD mail against
// reading the same mail's bytes once (the baseline).
func BenchmarkIsEInvoice(b *testing.B) {
	msg := mailWith("application/pdf", "x.pdf", pdfWith("factur-x.xml", ciiInvoice+strings.Repeat("<!-- pad -->", 1<<17), "x"))
	b.Run("baseline-sum", func(b *testing.B) {
		for b.Loop() {
			Sum(msg)
		}
	})
	b.Run("detect", func(b *testing.B) {
		for b.Loop() {
			if !IsEInvoice(msg) {
				b.Fatal("not detected")
			}
		}
	})
}
