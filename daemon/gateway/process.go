package gateway

// This file is what happens to one message after its DATA: the policy's
// decision, the signed or encrypted message built, handed to the next
// hop, archived, answered.
//
// The order, so that nothing is lost and nothing is claimed sent that
// was not:
//
//  1. the message is spooled (state_dir/tmp) and the decision made; a
//     refusal by policy is answered 5xx, nothing is sent;
//  2. the message to send is built into a second spool file; any error
//     there is a 451 4.3.0 and nothing is sent (fail closed);
//  3. it is handed to the next hop; its refusal or a broken connection
//     reaches the client as the next hop's answer or 451 4.4.2, and
//     nothing is archived;
//  4. the next hop accepted it: it is archived (plaintext as submitted,
//     message as sent, decision), then the client gets the next hop's
//     answer. When the archive fails now, the message has left: a 4xx
//     would make the client send it twice, so the client gets the 250,
//     the two files and the record's facts are kept under
//     state_dir/gateway-unarchived/<id>/, an ERROR is logged, and the
//     next start archives them (ArchiveKept).

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/harvest"
)

// process decides, builds, hands on and archives the spooled message f.
func (g *Gateway) process(s *session, f *os.File) error {
	rt := g.rt.Load()
	now := g.cfg.Now()
	log := s.log.With("from", s.from, "recipients", len(s.rcpts))
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return errLocal
	}
	br := bufio.NewReaderSize(f, 64<<10)
	h, herr := readHeader(br)
	if herr != nil {
		h = &header{}
	}
	facts := Facts{EnvelopeFrom: s.from, Recipients: s.rcpts}
	if g.cfg.Mode == "submission" {
		facts.Allowed = s.allowed
	}
	if herr != nil {
		facts.FromErr = herr
	} else {
		facts.From, facts.FromErr = h.fromAddresses()
	}
	// The trigger counts in mail that is the organisation's in part too
	// (its From, a foreign envelope sender): Decide refuses that rather
	// than send it in clear. Wholly foreign mail passes unchanged.
	newHeader, trigger := h.removeTrigger(rt.Policy.EncryptTrigger)
	facts.Trigger = trigger && (rt.Policy.IsInternal(s.from) || slices.ContainsFunc(facts.From, rt.Policy.IsInternal))
	msgID := cleanForLog(h.get("Message-ID"))
	log = log.With("message_id", msgID)

	d, err := rt.Policy.Decide(facts, rt.Lookup)
	if err != nil {
		log.Error("gateway: policy decision failed: message not sent", "err", err)
		g.mon.Message(OutcomeFailed)
		return errLocal
	}
	if d.Action == Refuse {
		g.mon.Message(OutcomeRefused)
		log.Info("gateway: message refused by policy", "reasons", strings.Join(d.Reasons, "; "))
		return refusal(d)
	}

	// The message to send.
	sendPath := f.Name()
	var algs Algorithms
	var encTo []Recipient
	if d.Action != Pass {
		// The plaintext to protect: the spooled message, its Subject
		// without the trigger.
		if _, err := f.Seek(int64(len(h.raw)), io.SeekStart); err != nil {
			return errLocal
		}
		src := io.MultiReader(bytes.NewReader(newHeader), f)
		out, err := os.CreateTemp(g.cfg.TempDir, "gw-out-*.eml")
		if err != nil {
			log.Error("gateway: cannot create a spool file: message not sent", "err", err)
			g.mon.Message(OutcomeFailed)
			return errLocal
		}
		defer func() {
			out.Close()
			os.Remove(out.Name())
		}()
		bw := bufio.NewWriterSize(out, 64<<10)
		cw := &crlfWriter{w: bw}
		o := ComposeOptions{ProtectHeaders: rt.Policy.ProtectHeaders, Now: now, TempDir: g.cfg.TempDir}
		switch d.Action {
		case SignOnly:
			err = g.cfg.Composer.Sign(cw, src, d.Signer, o)
		case EncryptOnly, SignEncrypt:
			encTo = append(append(encTo, d.Recipients...), rt.Escrow...)
			if len(rt.Escrow) == 0 {
				err = errors.New("no escrow certificate")
			} else if d.Action == EncryptOnly {
				algs, err = g.cfg.Composer.Encrypt(cw, src, encTo, o)
			} else {
				algs, err = g.cfg.Composer.SignEncrypt(cw, src, d.Signer, encTo, o)
			}
		}
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			log.Error("gateway: cannot build the message: not sent", "action", d.Action.String(), "err", err)
			g.mon.Message(OutcomeFailed)
			return errLocal
		}
		sendPath = out.Name()
	}

	answer, err := s.send(sendPath)
	if err != nil {
		g.mon.Message(OutcomeFailed)
		log.Warn("gateway: next hop did not take the message", "action", d.Action.String(), "err", err)
		return err
	}
	s.inTx = false

	if d.Action != Pass {
		o := outgoing(s, d, encTo, algs, answer, now)
		rec, err := g.cfg.Archiver.PutOutgoing(o, f.Name(), sendPath)
		if err != nil {
			kept := g.keepUnarchived(o, f.Name(), sendPath)
			log.Error("gateway: message sent but not archived; kept for the archive", "err", err, "kept", kept)
		} else {
			log = log.With("record", rec.ID)
		}
	}
	g.mon.Message(outcomeOf(d.Action))
	log.Info("gateway: message handed on", "action", d.Action.String(), "reasons", strings.Join(d.Reasons, "; "), "cipher", algs.Cipher, "relay", cleanForLog(answer))
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Sent on: " + cleanForLog(answer)}
}

// send hands the file to the next hop as the transaction's data and
// returns its answer.
func (s *session) send(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", errLocal
	}
	defer f.Close()
	rc := s.relay
	rc.conn.SetDeadline(time.Now().Add(rc.cfg.DataTimeout))
	defer func() {
		if s.relay != nil {
			s.relay.conn.SetDeadline(time.Time{})
		}
	}()
	w, err := rc.c.Data()
	if err != nil {
		return "", s.lost("DATA", err)
	}
	if _, err := io.Copy(w, bufio.NewReaderSize(f, 64<<10)); err != nil {
		return "", s.lost("DATA", err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", s.lost("end of DATA", err)
	}
	return resp.StatusText, nil
}

// refusal is the client's answer to a refusal by policy. Recipients
// without a certificate: 554 5.7.5 (RFC 3463 X.7.5 "cryptographic
// failure": the key needed is not available), permanent because
// sending again does not bring a certificate. Anything else (a From the
// login may not use, mail that cannot be read but must be encrypted):
// 550 5.7.1 (delivery not authorised, message refused).
func refusal(d Decision) error {
	if len(d.Missing) > 0 {
		msg := "Encryption required, no certificate for: " + strings.Join(d.Missing, ", ")
		if len(msg) > 400 {
			msg = fmt.Sprintf("Encryption required, no certificate for %d recipients: %s, ...", len(d.Missing), strings.Join(d.Missing[:min(3, len(d.Missing))], ", "))
		}
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 5}, Message: cleanForLog(msg)}
	}
	msg := "Refused by policy"
	if len(d.Reasons) > 0 {
		msg += ": " + d.Reasons[len(d.Reasons)-1]
	}
	if len(msg) > 400 {
		msg = msg[:400]
	}
	return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: cleanForLog(msg)}
}

func outcomeOf(a Action) string {
	switch a {
	case SignOnly:
		return OutcomeSigned
	case EncryptOnly:
		return OutcomeEncrypted
	case SignEncrypt:
		return OutcomeSignedEncrypted
	}
	return OutcomePassed
}

// cleanForLog keeps a stranger's text on one printable line.
func cleanForLog(s string) string {
	if len(s) > 200 {
		s = s[:200]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// keepUnarchived copies a sent message that the archive refused to
// state_dir/gateway-unarchived/<id>/ (plaintext.eml, sent.eml and
// outgoing.json, the record's facts) and returns the directory.
func (g *Gateway) keepUnarchived(o archive.Outgoing, plaintext, sent string) string {
	dir := filepath.Join(filepath.Dir(g.cfg.TempDir), UnarchivedDir, o.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "nothing: " + err.Error()
	}
	meta, _ := json.Marshal(o)
	copyFile := func(src, dst string) {
		in, err := os.Open(src)
		if err != nil {
			return
		}
		defer in.Close()
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
		if err != nil {
			return
		}
		io.Copy(out, in)
		out.Sync()
		out.Close()
	}
	copyFile(plaintext, filepath.Join(dir, "plaintext.eml"))
	copyFile(sent, filepath.Join(dir, "sent.eml"))
	os.WriteFile(filepath.Join(dir, "outgoing.json"), meta, 0o600)
	return dir
}

// outgoing is the archive's record of a message handed on.
func outgoing(s *session, d Decision, encTo []Recipient, algs Algorithms, answer string, now time.Time) archive.Outgoing {
	o := archive.Outgoing{ID: newID(now), MailFrom: s.from, RcptTo: s.rcpts, Accepted: now,
		Reasons: d.Reasons, ContentCipher: algs.Cipher, Relay: answer}
	if s.login != "" {
		o.Reasons = append(o.Reasons, "submitted with the login "+s.login)
	}
	if d.Signer != nil {
		o.Decision = append(o.Decision, archive.DecisionSigned)
		o.Signer = harvest.Fingerprint(d.Signer.Cert)
		o.SignatureAlgorithm = signatureAlgorithm(d.Signer)
	} else if d.Unsigned {
		o.Decision = append(o.Decision, archive.DecisionUnsigned)
	}
	if len(encTo) > 0 {
		o.Decision = append(o.Decision, archive.DecisionEncrypted)
	} else if len(d.Missing) > 0 {
		o.Decision = append(o.Decision, archive.DecisionUnencrypted)
	}
	for i, r := range encTo {
		or := archive.OutgoingRecipient{Address: r.Address, Fingerprint: harvest.Fingerprint(r.Cert), Escrow: r.Escrow}
		if i < len(algs.KeyManagement) {
			or.KeyManagement = algs.KeyManagement[i]
		}
		o.Recipients = append(o.Recipients, or)
	}
	return o
}

// signatureAlgorithm names the signature as the archive does.
func signatureAlgorithm(s *Signer) string {
	switch s.Cert.PublicKeyAlgorithm {
	case x509.ECDSA:
		return "ecdsa-sha256"
	case x509.RSA:
		if s.PSS {
			return "rsassa-pss-sha256"
		}
		return "rsassa-pkcs1-v1_5-sha256"
	}
	return s.Cert.PublicKeyAlgorithm.String()
}

// newID names one message for the archive: time and randomness.
func newID(now time.Time) string {
	var b [8]byte
	rand.Read(b[:])
	return "gw-" + now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// crlfWriter writes what it is given with every bare LF made CRLF, as
// the SMTP client puts it on the wire, so that the archived message is
// the one the next hop received.
type crlfWriter struct {
	w      io.Writer
	lastCR bool
}

func (c *crlfWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if _, err := c.w.Write(p); err != nil {
				return 0, err
			}
			c.lastCR = p[len(p)-1] == '\r'
			break
		}
		prevCR := c.lastCR
		if i > 0 {
			prevCR = p[i-1] == '\r'
		}
		if _, err := c.w.Write(p[:i]); err != nil {
			return 0, err
		}
		eol := "\n"
		if !prevCR {
			eol = "\r\n"
		}
		if _, err := io.WriteString(c.w, eol); err != nil {
			return 0, err
		}
		c.lastCR = false
		p = p[i+1:]
	}
	return n, nil
}

// UnarchivedDir is where, under state_dir, keepUnarchived keeps a sent
// message the archive refused.
const UnarchivedDir = "gateway-unarchived"

// ArchiveKept archives what keepUnarchived kept under dir (each
// ID/outgoing.json with its two files) and removes each one archived; a
// second attempt of the same ID writes nothing new (PutOutgoing is
// idempotent by ID). It returns how many it archived.
func ArchiveKept(dir string, a Archiver, log *slog.Logger) (int, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, e := range entries {
		d := filepath.Join(dir, e.Name())
		meta, err := os.ReadFile(filepath.Join(d, "outgoing.json"))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var o archive.Outgoing
		if err := json.Unmarshal(meta, &o); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d, err))
			continue
		}
		rec, err := a.PutOutgoing(o, filepath.Join(d, "plaintext.eml"), filepath.Join(d, "sent.eml"))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d, err))
			continue
		}
		log.Info("gateway: a sent message kept after an archive failure is archived now", "record", rec.ID, "id", o.ID)
		os.RemoveAll(d)
		n++
	}
	return n, errors.Join(errs...)
}
