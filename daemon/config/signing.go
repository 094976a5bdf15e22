package config

// This file is [[signing]]: the identities the gateway signs outgoing mail
// with (issue 13), each for a list of addresses or whole domains, its key
// loaded like a [[keys]] entry's; and the organisation's default escrow
// certificate, the first [[keys]] entry's.

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/smimed/smimed/harvest"
)

// Signing is one [[signing]] entry as configured.
type Signing struct {
	// Addresses are the sender addresses (lower-cased) it signs for;
	// Domains whole domains ("org.example") or their subdomains
	// ("*.org.example").
	Addresses []string
	Domains   []string
	Key       // the key files, as for [[keys]]
	// PSS: sign with RSASSA-PSS (RFC 4056) instead of PKCS#1 v1.5; RSA
	// keys only.
	PSS bool
	// EncryptionCertFile names the certificate partners should encrypt
	// to (SMIMEEncryptionKeyPreference); "": the first [[keys]] entry's.
	EncryptionCertFile string
}

type rawSigning struct {
	Addresses []string `toml:"addresses"`
	Domains   []string `toml:"domains"`
	rawKeyFiles
	PSS                bool   `toml:"pss"`
	EncryptionCertFile string `toml:"encryption_cert_file"`
}

// parseSigning checks the [[signing]] entries: each names addresses or
// domains, and key files; no address or domain is claimed twice.
func parseSigning(raw []rawSigning, dir string, addf func(string, ...any)) []Signing {
	var out []Signing
	claimed := map[string]string{} // address or domain → entry
	for i, r := range raw {
		key := fmt.Sprintf("signing[%d]", i)
		s := Signing{PSS: r.PSS}
		if len(r.Addresses) == 0 && len(r.Domains) == 0 {
			addf("%s: needs addresses or domains (the senders it signs for)", key)
		}
		claim := func(field string, j int, v, raw string, bad string) bool {
			if bad != "" {
				addf("%s.%s[%d]: %q is not %s", key, field, j, raw, bad)
				return false
			}
			if prev, dup := claimed[v]; dup {
				// Listed twice in this entry (e.g. in U-labels and in
				// A-labels): once is enough.
				if prev != key {
					addf("%s.%s[%d]: %s is already signed for by %s", key, field, j, v, prev)
				}
				return false
			}
			claimed[v] = key
			return true
		}
		for j, a := range r.Addresses {
			a = normMatch(a)
			local, domain, ok := strings.Cut(a, "@")
			bad := ""
			if !ok || local == "" || domain == "" || strings.ContainsAny(a, " \t,<>") {
				bad = "an email address"
			}
			if claim("addresses", j, a, r.Addresses[j], bad) {
				s.Addresses = append(s.Addresses, a)
			}
		}
		for j, d := range r.Domains {
			d = normMatch(d)
			bare := strings.TrimPrefix(d, "*.")
			bad := ""
			if bare == "" || strings.ContainsAny(bare, "@ \t,*") || !strings.Contains(bare, ".") && bare != "localhost" {
				bad = "a domain (want org.example or *.org.example)"
			}
			if claim("domains", j, d, r.Domains[j], bad) {
				s.Domains = append(s.Domains, d)
			}
		}
		kc, ok := parseKeyFiles(dir, key, r.rawKeyFiles, addf)
		if !ok {
			continue
		}
		s.Key = kc
		if r.EncryptionCertFile != "" {
			s.EncryptionCertFile = resolve(dir, r.EncryptionCertFile)
		}
		out = append(out, s)
	}
	return out
}

// SigningIdentity is a [[signing]] entry loaded: what the gateway signs
// with for the senders it covers.
type SigningIdentity struct {
	// Entry is the index among [[signing]] ("signing[N]" in messages).
	Entry     int
	Addresses []string
	Domains   []string
	Cert      *x509.Certificate
	// Chain are the other certificates of the key's file (the issuing
	// CAs), to be sent with every signature so that partners can build
	// the chain and harvest the certificate.
	Chain []*x509.Certificate
	Key   crypto.Signer
	PSS   bool
	// EncryptionCert is the certificate partners are asked to encrypt to
	// (SMIMEEncryptionKeyPreference, RFC 8551 section 2.5.3): the
	// entry's encryption_cert_file, else the first [[keys]] entry's
	// certificate; nil when there is neither.
	EncryptionCert *x509.Certificate
}

// Identities are the loaded [[signing]] entries.
type Identities struct {
	list []*SigningIdentity
}

// All returns the identities in configuration order.
func (ids *Identities) All() []*SigningIdentity {
	if ids == nil {
		return nil
	}
	return ids.list
}

// For returns the identity that signs mail from address, or nil: the one
// that lists the address itself, else the one with the most specific
// domain (the address's domain itself before "*.parent", a longer parent
// before a shorter). The address is compared as harvest.NormalizeAddress
// gives it.
func (ids *Identities) For(address string) *SigningIdentity {
	if ids == nil {
		return nil
	}
	a := harvest.NormalizeAddress(strings.TrimSpace(address))
	_, domain, ok := strings.Cut(a, "@")
	if !ok || domain == "" {
		return nil
	}
	var best *SigningIdentity
	bestRank := -1
	for _, id := range ids.list {
		if slices.Contains(id.Addresses, a) {
			return id
		}
		for _, d := range id.Domains {
			rank := -1
			switch {
			case d == domain:
				rank = 1 << 20 // the domain itself beats every parent
			case strings.HasPrefix(d, "*.") && strings.HasSuffix(domain, d[1:]):
				rank = len(d)
			}
			if rank > bestRank {
				best, bestRank = id, rank
			}
		}
	}
	return best
}

// LoadSigning loads every [[signing]] identity (keys as LoadKeysWarn
// loads [[keys]]) and checks that each can sign for what it lists; all
// problems together in a *Error.
func LoadSigning(cfg *Config) (*Identities, error) {
	ids, _, err := LoadSigningWarn(cfg)
	return ids, err
}

// LoadSigningWarn is LoadSigning that also returns warnings for the log
// and check-config: a domain identity whose certificate does not carry
// every sender's address (partners see a signature whose address does not
// match From), an encryption certificate smimed holds no key for, an
// identity with no encryption certificate at all.
func LoadSigningWarn(cfg *Config) (*Identities, []string, error) {
	ids := &Identities{}
	if len(cfg.Signing) == 0 {
		return ids, nil, nil
	}
	var problems, warnings []string
	now := time.Now()
	var defaultEnc *x509.Certificate
	var orgCerts []*x509.Certificate
	keys, from, _, _ := cfg.loadKeys() // their problems are LoadKeysWarn's to report
	for i, k := range keys {
		orgCerts = append(orgCerts, k.Cert)
		if from[i] == 0 && defaultEnc == nil {
			defaultEnc = k.Cert // DefaultEscrow's, without reading the file again
		}
	}
	for i, s := range cfg.Signing {
		name := fmt.Sprintf("signing[%d]", i)
		loaded, err := s.Key.load(name)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		lk := loaded[0]
		id := &SigningIdentity{Entry: i, Addresses: s.Addresses, Domains: s.Domains, Cert: lk.Cert, Chain: lk.Chain, PSS: s.PSS}
		bad := func(format string, args ...any) {
			problems = append(problems, name+": "+fmt.Sprintf(format, args...))
		}
		signer, ok := lk.Private.(crypto.Signer)
		if !ok || lk.Warning != "" {
			bad("the key in %s cannot sign (an RSA key under 1,024 bits is loaded to decrypt old mail only)", lk.Source)
			continue
		}
		id.Key = signer
		if p := signProblem(lk.Cert, now); p != "" {
			bad("the certificate in %s cannot sign mail: %s", lk.Source, p)
			continue
		}
		if _, isRSA := signer.Public().(*rsa.PublicKey); s.PSS && !isRSA {
			problems = append(problems, fmt.Sprintf("%s.pss: RSASSA-PSS needs an RSA key; the key in %s is %s", name, lk.Source, keyKind(signer.Public())))
			continue
		}
		certAddrs := harvest.CertEmails(lk.Cert)
		for j, a := range s.Addresses {
			if !slices.Contains(certAddrs, a) {
				problems = append(problems, fmt.Sprintf("%s.addresses[%d]: %s is not an address of the certificate in %s (it has %s): partners would judge its signatures a From mismatch",
					name, j, a, lk.Source, addrList(certAddrs)))
			}
		}
		for j, d := range s.Domains {
			warnings = append(warnings, fmt.Sprintf("%s.domains[%d]: the certificate in %s has %s: mail from any other sender in %s is signed with it, and partners see a signature whose address does not match From (a mismatch verdict)",
				name, j, lk.Source, addrList(certAddrs), d))
		}
		switch {
		case s.EncryptionCertFile != "":
			certs, err := harvest.ReadCertificates(s.EncryptionCertFile)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s.encryption_cert_file: %v", name, err))
				continue
			}
			id.EncryptionCert = certs[0]
			if p := harvest.EncryptionProblem(certs[0], now); p != "" {
				problems = append(problems, fmt.Sprintf("%s.encryption_cert_file: %s cannot be encrypted to: %s", name, s.EncryptionCertFile, p))
				continue
			}
			if !slices.ContainsFunc(orgCerts, certs[0].Equal) {
				warnings = append(warnings, fmt.Sprintf("%s.encryption_cert_file: no [[keys]] entry holds the key of %s: smimed cannot decrypt what partners encrypt to it", name, s.EncryptionCertFile))
			}
		case defaultEnc != nil:
			id.EncryptionCert = defaultEnc
		default:
			warnings = append(warnings, fmt.Sprintf("%s: no encryption certificate (no encryption_cert_file, no [[keys]]): partners will encrypt to the signing certificate", name))
		}
		ids.list = append(ids.list, id)
	}
	if len(problems) > 0 {
		return ids, warnings, &Error{Path: cfg.Path, Problems: problems}
	}
	return ids, warnings, nil
}

// signProblem says why c cannot sign mail at now ("" when it can): its
// validity period, a KeyUsage (when present) without digitalSignature or
// nonRepudiation, an extended key usage (when present) without
// emailProtection or any — what partners' verdicts require (RFC 8550
// section 4.4).
func signProblem(c *x509.Certificate, now time.Time) string {
	switch {
	case now.Before(c.NotBefore):
		return "it is not valid before " + c.NotBefore.UTC().Format(time.RFC3339)
	case !now.Before(c.NotAfter):
		return "it expired on " + c.NotAfter.UTC().Format(time.RFC3339)
	case c.KeyUsage != 0 && c.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0:
		return "its key usage allows neither digitalSignature nor nonRepudiation"
	}
	if len(c.ExtKeyUsage) > 0 || len(c.UnknownExtKeyUsage) > 0 {
		if !slices.ContainsFunc(c.ExtKeyUsage, func(u x509.ExtKeyUsage) bool {
			return u == x509.ExtKeyUsageEmailProtection || u == x509.ExtKeyUsageAny
		}) {
			return "its extended key usage does not allow email protection"
		}
	}
	return ""
}

func keyKind(pub crypto.PublicKey) string {
	switch pub.(type) {
	case *rsa.PublicKey:
		return "RSA"
	}
	return fmt.Sprintf("not RSA (%T)", pub)
}

func addrList(as []string) string {
	if len(as) == 0 {
		return "no email address"
	}
	return strings.Join(as, ", ")
}

// DefaultEscrow is the organisation's default escrow certificate: that of
// the first [[keys]] entry (the gateway's escrow_cert_files default, and
// the default encryption certificate of [[signing]]). Its key is loaded
// with it, so an entry whose key cannot be read fails here too; nil and
// no error when there is no [[keys]] entry.
func (c *Config) DefaultEscrow() (*x509.Certificate, error) {
	if len(c.Keys) == 0 {
		return nil, nil
	}
	loaded, err := c.Keys[0].load("keys[0]")
	if err != nil {
		return nil, &Error{Path: c.Path, Problems: []string{err.Error()}}
	}
	return loaded[0].Cert, nil
}
