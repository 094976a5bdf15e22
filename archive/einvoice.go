package archive

// E-invoice detection: a message that carries an electronic invoice is a
// booking record (kept longer than a letter). Two forms are recognised
// in the plaintext's MIME structure:
//
//   - an XML attachment whose root element is a UBL Invoice or CreditNote
//     (XRechnung's UBL syntax) or a UN/CEFACT CrossIndustryInvoice
//     (XRechnung's CII syntax, and the XML inside ZUGFeRD/Factur-X);
//   - a PDF attachment with an embedded file (ZUGFeRD/Factur-X, hybrid
//     XRechnung): its file specification (/F or /UF) names
//     factur-x.xml, zugferd-invoice.xml or xrechnung.xml (any case), or
//     the embedded file stream (plain or FlateDecode) is an invoice XML
//     as above, whatever its name (the name may sit in a compressed
//     object stream). A PDF whose text merely mentions the name is no
//     invoice.
//
// The message is mail from strangers: nesting, the number of parts and
// the bytes decoded per part are bounded, and nothing here fails: what
// cannot be read is no invoice.

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"encoding/xml"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"strings"

	"github.com/emersion/go-message/textproto"
)

const (
	maxInvoiceDepth = 8        // nested multiparts and message/rfc822
	maxInvoiceParts = 256      // parts looked at in one message
	maxInvoicePart  = 32 << 20 // decoded bytes of one attachment
	maxInvoiceXML   = 64 << 10 // bytes of an XML part read for its root
)

// Root elements of the XML invoice syntaxes: namespace → local names.
var invoiceRoots = map[string][]string{
	"urn:oasis:names:specification:ubl:schema:xsd:Invoice-2":       {"Invoice"},
	"urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2":    {"CreditNote"},
	"urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100": {"CrossIndustryInvoice"},
	"urn:ferd:CrossIndustryDocument:invoice:1p0":                   {"CrossIndustryDocument"},
}

// invoiceNames are the names of the XML a hybrid PDF embeds.
var invoiceNames = []string{"factur-x.xml", "zugferd-invoice.xml", "xrechnung.xml"}

// IsEInvoice reports whether the message msg carries an e-invoice.
func IsEInvoice(msg []byte) bool {
	parts := 0
	return walkInvoice(bufio.NewReader(bytes.NewReader(msg)), 0, &parts)
}

// walkInvoice reads one MIME entity (header and body) from br.
func walkInvoice(br *bufio.Reader, depth int, parts *int) bool {
	*parts++
	if depth > maxInvoiceDepth || *parts > maxInvoiceParts {
		return false
	}
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return false
	}
	ct, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		ct, params = "text/plain", nil
	}
	ct = strings.ToLower(ct)
	if strings.HasPrefix(ct, "multipart/") {
		if params["boundary"] == "" {
			return false
		}
		mr := multipart.NewReader(br, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err != nil {
				return false
			}
			// The part's header again, as an entity of its own.
			var hb bytes.Buffer
			for k, vs := range p.Header {
				for _, v := range vs {
					hb.WriteString(k + ": " + v + "\r\n")
				}
			}
			hb.WriteString("\r\n")
			if walkInvoice(bufio.NewReader(io.MultiReader(&hb, p)), depth+1, parts) {
				return true
			}
			if *parts > maxInvoiceParts {
				return false
			}
		}
	}
	name := strings.ToLower(attachmentName(h))
	isXML := ct == "application/xml" || ct == "text/xml" || strings.HasSuffix(ct, "+xml") || strings.HasSuffix(name, ".xml")
	isPDF := ct == "application/pdf" || strings.HasSuffix(name, ".pdf")
	isMsg := ct == "message/rfc822"
	if !isXML && !isPDF && !isMsg {
		return false
	}
	body := decodeBody(br, h.Get("Content-Transfer-Encoding"))
	switch {
	case isMsg:
		return walkInvoice(bufio.NewReader(io.LimitReader(body, maxInvoicePart)), depth+1, parts)
	case isXML:
		return isInvoiceXML(io.LimitReader(body, maxInvoiceXML))
	default:
		b, err := io.ReadAll(io.LimitReader(body, maxInvoicePart))
		if err != nil && len(b) == 0 {
			return false
		}
		return isHybridPDF(b)
	}
}

// attachmentName is the file name of a part: Content-Disposition's
// filename, else Content-Type's name.
func attachmentName(h textproto.Header) string {
	if _, p, err := mime.ParseMediaType(h.Get("Content-Disposition")); err == nil && p["filename"] != "" {
		return p["filename"]
	}
	if _, p, err := mime.ParseMediaType(h.Get("Content-Type")); err == nil {
		return p["name"]
	}
	return ""
}

// decodeBody undoes the transfer encoding of a part's body.
func decodeBody(r io.Reader, cte string) io.Reader {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		return base64.NewDecoder(base64.StdEncoding, r) // it skips \r and \n itself
	case "quoted-printable":
		return quotedprintable.NewReader(r)
	}
	return r
}

// isInvoiceXML reports whether the document's root element is an
// invoice of a known syntax.
func isInvoiceXML(r io.Reader) bool {
	d := xml.NewDecoder(r)
	d.Strict = true
	for {
		t, err := d.Token()
		if err != nil {
			return false
		}
		if se, ok := t.(xml.StartElement); ok {
			for _, local := range invoiceRoots[se.Name.Space] {
				if se.Name.Local == local {
					return true
				}
			}
			return false
		}
	}
}

// isHybridPDF reports whether a PDF embeds an invoice: an embedded file
// named one of invoiceNames in its file specification (/F or /UF, a
// literal string), or an embedded file stream (uncompressed or
// FlateDecode) whose XML is an invoice (isInvoiceXML).
func isHybridPDF(b []byte) bool {
	if !bytes.HasPrefix(bytes.TrimLeft(b, "\x00\t\r\n "), []byte("%PDF-")) {
		return false
	}
	if !bytes.Contains(b, []byte("/EmbeddedFile")) {
		return false
	}
	return namedInvoice(b) || embeddedInvoice(b)
}

// namedInvoice looks at every ".xml)" for a file specification naming
// an invoice: "/F (NAME)" or "/UF (NAME)", NAME case-insensitive.
func namedInvoice(b []byte) bool {
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte(".xml)"))
		if j < 0 {
			return false
		}
		end := i + j + len(".xml")
		i = end
		for _, n := range invoiceNames {
			start := end - len(n)
			if start < 1 || b[start-1] != '(' || !bytes.EqualFold(b[start:end], []byte(n)) {
				continue
			}
			before := bytes.TrimRight(b[max(0, start-16):start-1], " \t\r\n")
			if bytes.HasSuffix(before, []byte("/F")) || bytes.HasSuffix(before, []byte("/UF")) {
				return true
			}
		}
	}
}

// maxEmbeddedStreams bounds the /EmbeddedFile keys looked at (each costs
// a search of up to 8 KiB around it).
const maxEmbeddedStreams = 64

// embeddedInvoice looks into the streams of type /EmbeddedFile for an
// invoice XML.
func embeddedInvoice(b []byte) bool {
	key := []byte("/EmbeddedFile")
	for i, n := 0, 0; n < maxEmbeddedStreams; {
		j := bytes.Index(b[i:], key)
		if j < 0 {
			return false
		}
		pos := i + j + len(key)
		i = pos
		n++
		if pos < len(b) && b[pos] == 's' {
			continue // /EmbeddedFiles, the name tree
		}
		k := bytes.Index(b[pos:min(len(b), pos+4096)], []byte("stream"))
		if k < 0 {
			continue
		}
		from := max(0, pos-4096)
		if o := bytes.LastIndex(b[from:pos], []byte(" obj")); o >= 0 {
			from += o
		}
		dict := b[from : pos+k]
		if bytes.Contains(dict, []byte("endstream")) {
			continue // "stream" belongs to another object
		}
		data := b[pos+k+len("stream"):]
		data = bytes.TrimPrefix(bytes.TrimPrefix(data, []byte("\r")), []byte("\n"))
		if e := bytes.Index(data, []byte("endstream")); e >= 0 {
			data = data[:e]
		}
		var r io.Reader = bytes.NewReader(data)
		if bytes.Contains(dict, []byte("/FlateDecode")) {
			zr, err := zlib.NewReader(r)
			if err != nil {
				continue
			}
			r = zr
		} else if bytes.Contains(dict, []byte("/Filter")) {
			continue // another filter: not read
		}
		if isInvoiceXML(io.LimitReader(r, maxInvoiceXML)) {
			return true
		}
	}
	return false
}
