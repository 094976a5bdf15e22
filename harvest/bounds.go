package harvest

// What one message may put into its report (issue 9, item 5). The report
// is stored by the archive as JSON and printed by `smimed inspect`; a
// stranger decides how many recipients, signers, parts and certificates a
// message has and how long its header fields are. Every list is cut to
// maxReportList entries with a last entry saying how many more there were,
// every string to maxReportString bytes (maxReportError for the error), so
// the JSON of any report stays under MaxReportJSON (TestReportBound).

import (
	"crypto/x509/pkix"
	"fmt"
	"unicode/utf8"
)

const (
	maxReportList = 32 // entries of each list of a report but signatures
	// maxReportSignatures: all signers judged, and one SignedData's worth
	// not judged.
	maxReportSignatures = maxJudgedSigners + maxSigners
	maxReportString     = 512  // bytes of each string of a report
	maxReportError      = 4096 // bytes of the report's error
	// maxReportHeader: the Message-ID, From and Subject, longer than the
	// archive's own cut (2 KiB), so that the archive's one sanitising step
	// decides what is stored, indexed and searched for.
	maxReportHeader = 4096
	// maxReportShort: strings that are short in every real message
	// (status, fingerprint, serial, algorithm names).
	maxReportShort = 128
	// MaxReportJSON bounds the JSON encoding of any report (the archive
	// stores it with each record): about 200 KB of strings (the
	// unprotected header values included), each byte of which JSON may
	// write as six ("\u003c").
	MaxReportJSON = 2 << 20
)

// maxCertAddresses bounds the SAN rfc822Names and subject attributes of a
// certificate that are looked at for its addresses: every signer looks, and
// a certificate may list hundreds of thousands.
const maxCertAddresses = 64

// firstAddresses is the part of a certificate's address list that is
// looked at.
func firstAddresses(list []string) []string {
	return list[:min(len(list), maxCertAddresses)]
}

// firstNames is the part of a certificate's subject attributes that is
// looked at for addresses.
func firstNames(list []pkix.AttributeTypeAndValue) []pkix.AttributeTypeAndValue {
	return list[:min(len(list), maxCertAddresses)]
}

// bound completes the report at the end of Process: the budget's error
// and the bounds.
func (w *walker) bound() {
	if w.cost.err != nil {
		if w.rep.Error == "" {
			w.rep.Error = w.cost.err.Error()
		} else {
			w.rep.Error = w.cost.err.Error() + "; " + w.rep.Error
		}
	}
	boundReport(&w.rep)
}

// boundReport cuts the lists and strings of r to the limits above. A cut
// list ends with an entry saying how many more there were; for signatures
// that entry has status error, so that a cut list never reads as all
// valid.
func boundReport(r *Report) {
	for _, s := range []*string{&r.MessageID, &r.From, &r.Subject} {
		*s = clip(*s, maxReportHeader)
	}
	for _, s := range []*string{&r.File, &r.Decryption.Error} {
		*s = clip(*s, maxReportString)
	}
	for _, s := range []*string{&r.Decryption.Status, &r.Decryption.Key, &r.Decryption.Cipher, &r.Decryption.KeyTransport} {
		*s = clip(*s, maxReportShort)
	}
	r.Error = clip(r.Error, maxReportError)
	r.Layers = cutStrings(r.Layers)
	r.Recipients = cutStrings(r.Recipients)
	r.Notes = cutStrings(r.Notes)
	if n := len(r.Signatures); n > maxReportSignatures {
		r.Signatures = append(r.Signatures[:maxReportSignatures-1:maxReportSignatures-1], Signature{
			Status: StatusError,
			Reason: fmt.Sprintf("… and %d more signatures", n-maxReportSignatures+1),
			Layer:  r.Signatures[maxReportSignatures-1].Layer,
		})
	}
	for i := range r.Signatures {
		s := &r.Signatures[i]
		for _, f := range []*string{&s.Signer, &s.Issuer, &s.Reason} {
			*f = clip(*f, maxReportString)
		}
		for _, f := range []*string{&s.Status, &s.Fingerprint, &s.Serial, &s.Digest, &s.Algorithm} {
			*f = clip(*f, maxReportShort)
		}
	}
	if n := len(r.Harvested); n > maxReportList {
		r.Harvested = r.Harvested[:maxReportList:maxReportList]
		r.Notes = cutStrings(append(r.Notes, fmt.Sprintf("… and %d more harvested certificates", n-maxReportList)))
	}
	for i := range r.Harvested {
		r.Harvested[i].Email = clip(r.Harvested[i].Email, maxReportString)
		r.Harvested[i].Fingerprint = clip(r.Harvested[i].Fingerprint, maxReportShort)
	}
	if len(r.Unprotected) > maxUnprotected {
		r.Unprotected = r.Unprotected[:maxUnprotected:maxUnprotected]
	}
	for i := range r.Unprotected {
		r.Unprotected[i].Name = clip(r.Unprotected[i].Name, maxReportShort)
		r.Unprotected[i].Value = clip(r.Unprotected[i].Value, maxUnprotectedValue)
	}
}

// cutStrings cuts a list to maxReportList entries, the last saying how
// many more there were, and clips each entry.
func cutStrings(list []string) []string {
	if n := len(list); n > maxReportList {
		list = append(list[:maxReportList-1:maxReportList-1], fmt.Sprintf("… and %d more", n-maxReportList+1))
	}
	for i := range list {
		list[i] = clip(list[i], maxReportString)
	}
	return list
}

// clip shortens s to at most max bytes, on a character boundary, marking
// the cut with "…".
func clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	const mark = "…"
	cut := max - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
