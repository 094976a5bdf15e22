package harvest

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	"github.com/smimed/smimed/harvest/cms"
)

// This file finishes the verdicts once the whole message has been walked:
// which From a signature is bound to (the protected one when the payload
// carries a protected header section, RFC 9788), whether the signature
// covers everything a reader is shown (else the verdict is partial), and
// what is harvested.

// pendingSig is a signature whose signature and chain were checked.
type pendingSig struct {
	idx     int // into Report.Signatures
	si      *cms.SignerInfo
	sd      *cms.SignedData
	cert    *x509.Certificate
	chain   []*x509.Certificate
	status  string   // from the chain check
	reason  string   // why status is not valid
	notes   []string // more to say in the verdict's reason
	part    bool     // the signed entity is a part of a container
	outside []string // content shown beside it that it does not cover
}

// protectedHeader is the header section of the cryptographic payload.
type protectedHeader struct {
	kind   string // how it was marked: hp="clear", hp="cipher", message/rfc822 wrapper
	raw    []byte // the header block as transmitted
	info   headerInfo
	signed bool // a signature encloses it
}

// protectedFields are the header fields RFC 9788 lets a protected header
// section decide for the reader (section 2.1's user-facing fields, with
// the threading fields besides); in the plaintext they come from inside.
var protectedFields = []string{"from", "to", "cc", "date", "subject", "reply-to", "message-id", "in-reply-to", "references"}

// protect records ent's header section as the protected one; the
// innermost wins, as it is what the reader's client renders.
func (w *walker) protect(ent *entity, kind string) {
	w.protected = &protectedHeader{kind: kind, raw: ent.rawHeader, info: readHeaderInfo(ent), signed: w.signedLayers > 0}
}

// now is the time a verdict may mention as the present.
func (w *walker) now() time.Time {
	if w.e.opts.Now != nil {
		return w.e.opts.Now()
	}
	return time.Now()
}

// describeShown names what a reader is shown of a container's part, or ""
// for a part that shows nothing (empty or white space only).
// pe is the part parsed, nil when it is no MIME entity.
func describeShown(part []byte, pe *entity) string {
	if pe == nil {
		if len(bytes.TrimSpace(part)) == 0 {
			return ""
		}
		return "an unreadable part"
	}
	mt, params, err := pe.mediaType()
	if err != nil {
		return "a part with a broken Content-Type"
	}
	// A named part, or one marked as an attachment, is listed by its
	// name (the sender's text) whatever its body holds.
	if name := pe.fileName(params); name != "" {
		return fmt.Sprintf("%s part %q", mt, sanitizeName(name))
	}
	if disp, _, err := pe.header.ContentDisposition(); err == nil && strings.EqualFold(disp, "attachment") {
		return mt + " attachment"
	}
	if strings.HasPrefix(mt, "text/") && len(bytes.TrimSpace(pe.body)) == 0 && !pe.header.Has("Content-Disposition") {
		return ""
	}
	return mt + " part"
}

// sanitizeName keeps a file name fit for a one-line reason.
func sanitizeName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' {
			return '_'
		}
		return r
	}, s)
	return clip(s, 60)
}

// finish decides every pending signature's verdict and harvests.
func (w *walker) finish(outer *entity) {
	from, issue := w.from, w.fromIssue
	if p := w.protected; p != nil {
		from, issue = p.info.from, p.info.fromIssue
		if w.from != from {
			// RFC 9788: the reader is shown the protected From. A signed
			// message whose outer From says someone else is not theirs.
			issue = fmt.Sprintf("the outer From %q differs from the protected From %q", w.rep.From, p.info.shownFrom)
		}
		w.rep.Unprotected = unprotectedDiffs(outer.rawHeader, p.raw)
		w.rep.From, w.rep.Subject, w.rep.MessageID = p.info.shownFrom, p.info.subject, p.info.messageID
		if p.signed {
			w.note(fmt.Sprintf("the header fields shown come from the protected header section (%s)", p.kind))
		} else {
			w.note(fmt.Sprintf("the header fields shown come from the header section inside the encryption (%s), which is not signed", p.kind))
		}
	}
	w.from, w.fromIssue = from, issue
	for _, p := range w.pending {
		v := &w.rep.Signatures[p.idx]
		status, reason := p.status, p.reason
		if status == StatusUntrusted && p.reason == reasonNoChain {
			if chain, used, ok := w.completeChain(p); ok {
				p.chain, status, reason = chain, StatusValid, ""
				p.notes = append(p.notes, completedNote(chain, p.sd, used))
			}
		} else if status == StatusValid && len(p.chain) > 2 {
			if note := completedNote(p.chain, p.sd, nil); note != "" {
				p.notes = append(p.notes, note)
			}
		}
		if status == StatusValid {
			status, reason, p.notes = w.checkRevocation(p, reason, p.notes)
		}
		if status == StatusValid {
			status, reason = w.judgeValidation(v, p, reason)
		}
		addrs := BoundEmails(p.cert, p.chain)
		if status == StatusValid {
			switch {
			case issue != "":
				status, reason = StatusMismatch, issue
			case !contains(addrs, from):
				status = StatusMismatch
				reason = fmt.Sprintf("From address %q is not among the certificate's addresses %v", from, addrs)
			}
		}
		if status == StatusValid && len(p.outside) > 0 {
			status = StatusPartial
			reason = "the signature does not cover everything shown; not signed: " + strings.Join(dedupe(p.outside), ", ")
		}
		notes := p.notes
		if status == StatusValid && len(w.rep.Unprotected) > 0 && w.protected.signed {
			var names []string
			for _, f := range w.rep.Unprotected {
				names = append(names, f.Name)
			}
			notes = append(notes, "the outer header differs from the signed one in "+strings.Join(names, ", ")+" (the outer values are kept as X-Smimed-Unprotected-*)")
		}
		if reason != "" {
			notes = append([]string{reason}, notes...)
		}
		v.Status = status
		v.Reason = strings.Join(notes, "; ")
		v.Signer = w.signerAddress(p.cert)
		switch {
		case status == StatusValid:
			// A valid signature chooses the certificate to encrypt to for
			// its From address: the one it names, else the signer's own.
			chosen := w.encryptionPreference(p.si, p.sd, p.cert)
			if chosen == nil {
				chosen = p.cert
			}
			w.harvest(p.cert, p.chain, addrs, chosen, p.si.SMIMECapabilities)
		case status == StatusUntrusted && p.reason == reasonNoChain && issue == "" && contains(CertEmails(p.cert), from):
			// Only for the address the mail came from: a self-made
			// certificate must not fill the quarantine of other addresses.
			w.quarantine(p.cert, from, p.si.SMIMECapabilities, reasonNoChain)
		}
	}
}

func dedupe(list []string) []string {
	var out []string
	for _, s := range list {
		if !contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// HeaderField is one header field by name and value.
type HeaderField struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Bounds on the outer values kept beside the protected ones: each value,
// and how many.
const (
	maxUnprotectedValue = 900 // with the field name, within RFC 5322's 998
	maxUnprotected      = 20
)

// unprotectedDiffs lists the outer header's protectable fields whose value
// differs from the protected header section's (absent there counts as
// different), unfolded, in protectedFields order. An outer Subject of
// "[...]" is RFC 9788's placeholder for an encrypted one and not listed.
func unprotectedDiffs(outerHeader, protectedHeader []byte) []HeaderField {
	values := func(block []byte) map[string][]string {
		m := map[string][]string{}
		for _, f := range rawFields(block) {
			_, v, _ := bytes.Cut(f.raw, []byte(":"))
			m[f.name] = append(m[f.name], unfold(v))
		}
		return m
	}
	outer, inner := values(outerHeader), values(protectedHeader)
	var out []HeaderField
	for _, name := range protectedFields {
		ov := outer[name]
		if len(ov) == 0 || strings.Join(ov, "\n") == strings.Join(inner[name], "\n") {
			continue
		}
		if name == "subject" && len(ov) == 1 && ov[0] == "[...]" {
			continue
		}
		for _, v := range ov {
			if len(out) == maxUnprotected {
				return out
			}
			v = clip(v, maxUnprotectedValue)
			out = append(out, HeaderField{Name: canonicalName(name), Value: v})
		}
	}
	return out
}

// unfold joins a raw field value's lines and trims it; control characters
// become spaces.
func unfold(v []byte) string {
	s := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, string(v))
	return strings.Join(strings.Fields(s), " ")
}

func canonicalName(name string) string {
	switch name {
	case "message-id":
		return "Message-ID"
	case "cc":
		return "Cc"
	}
	parts := strings.Split(name, "-")
	for i, p := range parts {
		if p != "" {
			parts[i] = strings.ToUpper(p[:1]) + p[1:]
		}
	}
	return strings.Join(parts, "-")
}
