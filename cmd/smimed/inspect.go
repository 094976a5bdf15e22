package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/smimed/smimed/harvest"
)

const inspectUsage = `Usage: smimed inspect [--config FILE] [--json] [--harvest] [--at TIME] FILE...

Reads each message (FILE or - for stdin), decrypts it with the configured
keys, judges every signature and prints what it found. Nothing is written
unless --harvest is given, which stores the certificates of valid
signatures (and quarantines untrusted ones) in the certificate store.

  --config FILE   configuration file (default /etc/smimed/smimed.toml)
  --json          one JSON object per message, one per line
  --harvest       write harvested certificates to the store
  --at TIME       judge as if the message arrived at TIME (RFC 3339, or a
                  date YYYY-MM-DD meaning its midnight UTC; default now)
`

func inspectMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("inspect")
	configPath := fs.String("config", "", "")
	asJSON := fs.Bool("json", false, "")
	doHarvest := fs.Bool("harvest", false, "")
	atFlag := fs.String("at", "", "")
	files, code, done := parseFlags(fs, args, stdout, stderr, inspectUsage)
	if done {
		return code
	}
	at, err := parseAt(*atFlag)
	if err != nil {
		fmt.Fprintf(stderr, "smimed inspect: %v\n", err)
		return exitUsage
	}
	if len(files) == 0 {
		fmt.Fprintln(stderr, "smimed inspect: no message file given (use - for stdin)")
		return exitUsage
	}
	s, code := newSetup(*configPath, *doHarvest, stderr)
	if s == nil {
		return code
	}
	defer s.close()
	exit := exitOK
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	for _, name := range files {
		raw, err := readMessage(name, stdin, s.cfg.MaxMessageSize)
		var rep harvest.Report
		switch {
		case errors.Is(err, errTooLarge):
			rep = harvest.Report{Layers: []string{}, Signatures: []harvest.Signature{}, Harvested: []harvest.Harvested{},
				Decryption: harvest.Decryption{Status: harvest.DecryptNone}, Error: err.Error()}
		case err != nil:
			fmt.Fprintf(stderr, "smimed inspect: %v\n", err)
			exit = exitFailed
			continue
		default:
			res, err := s.eng.Process(raw, at())
			if err != nil {
				fmt.Fprintf(stderr, "smimed inspect: %s: %v\n", name, err)
				exit = exitFailed
			}
			rep = res.Report
		}
		rep.File = name
		if *asJSON {
			if err := enc.Encode(rep); err != nil {
				fmt.Fprintf(stderr, "smimed inspect: %v\n", err)
				return exitFailed
			}
			continue
		}
		printReport(stdout, &rep)
	}
	return exit
}

func short(fp string) string {
	if len(fp) > 16 {
		return fp[:16]
	}
	return fp
}

// clean makes a string from a message safe to print on a terminal line:
// control characters (newlines, escape sequences) are shown escaped, so
// a Subject cannot forge a verdict line.
func clean(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) }) < 0 {
		return s
	}
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}

// printReport writes the human form of a report. Every string that comes
// from the message goes through clean.
func printReport(w io.Writer, r *harvest.Report) {
	fmt.Fprintf(w, "%s\n", clean(r.File))
	fmt.Fprintf(w, "  message-id: %s\n  from:       %s\n  subject:    %s\n", clean(r.MessageID), clean(r.From), clean(r.Subject))
	layers := "none (no S/MIME)"
	if len(r.Layers) > 0 {
		layers = strings.Join(r.Layers, " > ")
	}
	fmt.Fprintf(w, "  layers:     %s\n", layers)
	d := r.Decryption
	switch d.Status {
	case harvest.DecryptOK:
		fmt.Fprintf(w, "  decryption: ok, %s, %s, key %s\n", d.Cipher, d.KeyTransport, short(d.Key))
	case harvest.DecryptFailed:
		reason := ""
		if d.Reason != "" {
			reason = " (" + clean(d.Reason) + ")"
		}
		fmt.Fprintf(w, "  decryption: FAILED%s: %s\n", reason, clean(d.Error))
	default:
		fmt.Fprintf(w, "  decryption: none\n")
	}
	for _, rc := range r.Recipients {
		fmt.Fprintf(w, "    recipient: %s\n", clean(rc))
	}
	if len(r.Signatures) == 0 {
		fmt.Fprintf(w, "  signatures: none\n")
	}
	for i, s := range r.Signatures {
		fmt.Fprintf(w, "  signature %d (layer %d): %s", i+1, s.Layer+1, strings.ToUpper(s.Status))
		if s.Signer != "" {
			fmt.Fprintf(w, " %s", clean(s.Signer))
		}
		if s.Digest != "" {
			fmt.Fprintf(w, " %s/%s", clean(s.Digest), clean(s.Algorithm))
		}
		if s.WeakDigest {
			fmt.Fprintf(w, " (weak digest)")
		}
		fmt.Fprintln(w)
		if s.Fingerprint != "" {
			fmt.Fprintf(w, "    certificate: %s\n", s.Fingerprint)
		}
		if !s.SigningTime.IsZero() {
			fmt.Fprintf(w, "    signed at:   %s\n", s.SigningTime.Format(time.RFC3339))
		}
		if s.Validation != "" && s.Validation != harvest.ValidationUnspecified {
			// Only a validation type the CA names; the rest vouch for the
			// address alone, which the line above already shows.
			v := s.Validation
			if s.ValidatedBy != "" {
				v += " by " + s.ValidatedBy
			}
			if s.ValidatedName != "" {
				v += ": " + s.ValidatedName
			}
			fmt.Fprintf(w, "    validated:   %s\n", clean(v))
		}
		if s.Reason != "" {
			fmt.Fprintf(w, "    reason:      %s\n", clean(s.Reason))
		}
	}
	for _, h := range r.Harvested {
		q := ""
		if h.Quarantined {
			q = " (quarantined)"
		}
		fmt.Fprintf(w, "  harvested:  %s %s%s\n", clean(h.Email), short(h.Fingerprint), q)
	}
	for _, f := range r.Unprotected {
		fmt.Fprintf(w, "  unprotected: %s: %s\n", clean(f.Name), clean(f.Value))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note:       %s\n", clean(n))
	}
	if r.Error != "" {
		fmt.Fprintf(w, "  error:      %s\n", clean(r.Error))
	}
}

// parseAt reads a --at value: RFC 3339, or a date meaning its midnight
// UTC. Empty means now, read at each use.
func parseAt(v string) (func() time.Time, error) {
	if v == "" {
		return time.Now, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		t, err = time.Parse(time.DateOnly, v)
	}
	if err != nil {
		return nil, fmt.Errorf("--at %q: not a time (use RFC 3339 such as 2019-05-01T12:00:00Z, or a date such as 2019-05-01)", v)
	}
	return func() time.Time { return t }, nil
}
