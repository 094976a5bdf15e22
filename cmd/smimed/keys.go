package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/harvest/cms"
)

const keysUsage = `Usage: smimed keys list [--config FILE] [--json]

The organisation keys the configuration names, one block a key: the
[[keys]] entry and file, subject, issuer and serial as "openssl x509
-noout -issuer -serial" prints them (the form "smimed archive failed"
names the keys a message needs), subject key identifier, SHA-256
fingerprint, addresses, validity, key type and the accounts it decrypts
for. Reads the key files, so run it as root or the service user.

  --config FILE   configuration file (default /etc/smimed/smimed.toml)
  --json          one JSON object a key
`

type keyJSON struct {
	Entry       string    `json:"entry"`
	File        string    `json:"file"`
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	Serial      string    `json:"serial"`
	SKI         string    `json:"ski,omitempty"`
	Fingerprint string    `json:"fingerprint"`
	Emails      []string  `json:"emails"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	Key         string    `json:"key"`
	Accounts    []string  `json:"accounts,omitempty"`
}

func keysMain(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("keys list")
	configPath := fs.String("config", "", "")
	asJSON := fs.Bool("json", false, "")
	if code, done := oneSubcommand(fs, args, keysUsage, stdout, stderr); done {
		return code
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "smimed: %v\n", err)
		return exitUsage
	}
	keys, _, err := cfg.LoadKeyEntries()
	if err != nil {
		fmt.Fprintf(stderr, "smimed: %v\n", err)
		return exitUsage
	}
	enc := jsonLines(stdout)
	for i, k := range keys {
		j := describeKey(k)
		if *asJSON {
			if err := enc.Encode(j); err != nil {
				return exitFailed
			}
			continue
		}
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		accounts := "every mailbox"
		if j.Accounts != nil {
			accounts = strings.Join(j.Accounts, ", ")
		}
		fmt.Fprintf(stdout, "%s  %s\n  subject=%s\n  issuer=%s\n  serial=%s\n  ski=%s\n  sha256=%s\n  emails: %s\n  valid %s to %s, %s\n  decrypts for: %s\n",
			j.Entry, clean(j.File), clean(j.Subject), clean(j.Issuer), j.Serial, j.SKI, j.Fingerprint, clean(strings.Join(j.Emails, ", ")),
			j.NotBefore.Format(time.DateOnly), j.NotAfter.Format(time.DateOnly), j.Key, clean(accounts))
	}
	if len(keys) == 0 {
		fmt.Fprintln(stderr, "smimed keys list: the configuration names no [[keys]]")
	}
	return exitOK
}

func describeKey(k config.LoadedKey) keyJSON {
	c := k.Cert
	fp := sha256.Sum256(c.Raw)
	j := keyJSON{
		Entry: fmt.Sprintf("keys[%d]", k.Entry), File: k.File,
		Subject: cms.OpenSSLName(c.RawSubject), Issuer: cms.OpenSSLName(c.RawIssuer), Serial: cms.OpenSSLSerial(c.SerialNumber),
		Fingerprint: strings.ToUpper(hex.EncodeToString(fp[:])), Emails: c.EmailAddresses,
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), Key: certsKeyType(c.PublicKey), Accounts: k.Accounts,
	}
	if len(c.SubjectKeyId) > 0 {
		j.SKI = cms.HexColons(c.SubjectKeyId)
	}
	if j.Emails == nil {
		j.Emails = []string{}
	}
	return j
}
