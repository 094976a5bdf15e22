package compose

// Header protection (RFC 9788): the Cryptographic Payload's root part
// carries the message's header fields, its Content-Type marked hp="clear"
// (signed only) or hp="cipher" (encrypted); an encrypted message's
// payload also records the outer header fields as HP-Outer fields, and
// the outer Subject is obscured as the baseline Header Confidentiality
// Policy (hcp_baseline) does.

import "strings"

// obscuredSubject is what hcp_baseline puts in the outer Subject.
const obscuredSubject = "[...]"

// traceField reports whether a field is added in transit (trace fields,
// RFC 5322 section 3.6.7, and the like): they are neither copied into the
// payload nor recorded as HP-Outer.
func traceField(key string) bool {
	k := strings.ToLower(key)
	switch k {
	case "received", "return-path", "delivered-to", "dkim-signature", "authentication-results", "x-original-to":
		return true
	}
	return strings.HasPrefix(k, "arc-")
}

// obscure applies hcp_baseline to the outer header: Subject becomes
// "[...]"; every other field stays.
func obscure(outer header) header {
	if !outer.has("Subject") {
		return outer
	}
	return outer.set("Subject", obscuredSubject)
}

// protectedInner returns the payload root's header: the message's own
// fields (without trace fields) before its MIME fields, Content-Type
// marked hp, and for "cipher" one HP-Outer field per field of the
// obscured outer header.
func protectedInner(outer, inner header, hp string) header {
	var out header
	for _, f := range outer {
		if !traceField(f.key) && !strings.EqualFold(f.key, "HP-Outer") {
			out = append(out, f)
		}
	}
	if hp == "cipher" {
		for _, f := range obscure(outer) {
			if !traceField(f.key) && !strings.EqualFold(f.key, "HP-Outer") {
				out = append(out, newField("HP-Outer", f.key+": "+f.value))
			}
		}
	}
	out = append(out, inner...)
	return out.withParam("hp", hp)
}
