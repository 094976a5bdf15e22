package main

// This file is `smimed archive show --record`: one record's fields, one a
// line, for incoming mail and for what the gateway sent.

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/smimed/smimed/archive"
)

// printRecord writes r's fields, one "name: value" a line; every value
// that came from mail or a certificate is cleaned of control characters.
func printRecord(w io.Writer, r *archive.Record) {
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%-20s %s\n", k+":", clean(v))
		}
	}
	list := func(vs []string) string { return strings.Join(vs, ", ") }
	when := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	}
	line("id", fmt.Sprint(r.ID))
	line("version", fmt.Sprint(r.Version))
	if r.Supersedes != 0 {
		line("supersedes", fmt.Sprint(r.Supersedes))
	}
	line("direction", r.Direction)
	if !r.IsOutgoing() {
		line("source", r.Source().Marker())
	}
	line("message-id", r.MessageID)
	line("from", r.From)
	line("to", list(r.To))
	line("subject", r.Subject)
	line("date", when(r.Date))
	line("received", when(r.Received))
	line("archived", when(r.ArchivedAt))
	line("status", list(r.Status))
	if o := r.Outgoing; o != nil {
		line("outgoing id", o.ID)
		line("mail from", o.MailFrom)
		line("rcpt to", list(o.RcptTo))
		line("decision", list(o.Decision))
		for _, reason := range o.Reasons {
			line("reason", reason)
		}
		line("signer", o.Signer)
		line("signature", o.SignatureAlgorithm)
		line("content cipher", o.ContentCipher)
		for _, rc := range o.Recipients {
			who := rc.Address
			if rc.Escrow {
				who = "escrow"
			}
			line("encrypted to", fmt.Sprintf("%s %s (%s)", who, rc.Fingerprint, rc.KeyManagement))
		}
		line("relay", o.Relay)
	}
	for _, s := range r.Signatures {
		line("signature", fmt.Sprintf("%s %s %s", s.Status, s.Signer, s.Fingerprint))
	}
	line("layers", list(r.Layers))
	line("original sha256", fmt.Sprintf("%s (%d bytes)", r.OriginalSHA256, r.OriginalSize))
	line("plaintext sha256", fmt.Sprintf("%s (%d bytes)", r.PlaintextSHA256, r.PlaintextSize))
	line("plaintext file", r.PlaintextFile)
	for _, n := range r.Notes {
		line("note", n)
	}
	line("error", r.Error)
	line("hash", r.Hash)
}
