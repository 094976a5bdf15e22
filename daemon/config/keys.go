package config

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"

	"github.com/smimed/smimed/daemon/oauth"
	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/cms"
)

// LoadKeysWarn reads every configured organisation key. All problems are
// returned together, each naming its config key and file. It also returns
// one warning per key loaded for decryption only (an RSA key under 1,024 bits), naming its config key,
// file and size, for the log and check-config.
func (c *Config) LoadKeysWarn() ([]*cms.Key, []string, error) {
	keys, _, warnings, err := c.loadKeys()
	return keys, warnings, err
}

// loadKeys is LoadKeysWarn that also says which [[keys]] entry each key
// comes from (a PKCS#12 file may hold several).
func (c *Config) loadKeys() ([]*cms.Key, []int, []string, error) {
	var keys []*cms.Key
	var from []int
	var problems, warnings []string
	warn := func(name string, lk *harvest.LoadedKey) {
		if lk.Warning != "" {
			warnings = append(warnings, name+": "+lk.Warning)
		}
	}
	for i, kc := range c.Keys {
		name := fmt.Sprintf("keys[%d]", i)
		loaded, err := kc.load(name)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		for _, lk := range loaded {
			warn(name, lk)
			keys, from = append(keys, &cms.Key{Cert: lk.Cert, Private: lk.Private}), append(from, i)
		}
	}
	if len(problems) > 0 {
		return keys, from, warnings, &Error{Path: c.Path, Problems: problems}
	}
	return keys, from, warnings, nil
}

// load reads the key files of one entry (name is its config key, for
// messages): a PKCS#12 file with its password file, or a PEM certificate
// and key. Its error names the config key and the file.
func (kc Key) load(name string) ([]*harvest.LoadedKey, error) {
	if kc.PKCS12File == "" {
		lk, err := harvest.LoadPEMKey(kc.CertFile, kc.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", name, err)
		}
		return []*harvest.LoadedKey{lk}, nil
	}
	if err := harvest.CheckPrivateFile(kc.PKCS12File); err != nil {
		return nil, fmt.Errorf("%s.pkcs12_file: %v", name, err)
	}
	password := ""
	if kc.PasswordFile != "" {
		p, err := harvest.ReadPasswordFile(kc.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("%s.password_file: %v", name, err)
		}
		password = p
	}
	loaded, err := harvest.LoadPKCS12(kc.PKCS12File, password)
	if err != nil {
		return nil, fmt.Errorf("%s.pkcs12_file: %v", name, err)
	}
	return loaded, nil
}

// TrustPool builds the trust anchors: the system roots when
// trust.system_roots is set, plus every certificate in trust.ca_files.
func (c *Config) TrustPool() (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	var problems []string
	if c.Trust.SystemRoots {
		sys, err := x509.SystemCertPool()
		if err != nil || sys == nil {
			problems = append(problems, fmt.Sprintf("trust.system_roots: the system's CA roots cannot be read (%v); install ca-certificates or set system_roots = false", err))
		} else {
			pool = sys
		}
	}
	cas, caProblems := c.caFileCerts()
	for _, cert := range cas {
		pool.AddCert(cert)
	}
	problems = append(problems, caProblems...)
	if len(problems) > 0 {
		return pool, &Error{Path: c.Path, Problems: problems}
	}
	return pool, nil
}

// CACertificates are the certificates of trust.ca_files (not the
// system's roots, which cannot be listed).
func (c *Config) CACertificates() ([]*x509.Certificate, error) {
	cas, problems := c.caFileCerts()
	if len(problems) > 0 {
		return cas, &Error{Path: c.Path, Problems: problems}
	}
	return cas, nil
}

func (c *Config) caFileCerts() (cas []*x509.Certificate, problems []string) {
	for i, f := range c.Trust.CAFiles {
		certs, p := pemCertFile(fmt.Sprintf("trust.ca_files[%d]", i), f)
		cas = append(cas, certs...)
		problems = append(problems, p...)
	}
	return cas, problems
}

// pemCertFile reads the CERTIFICATE blocks of the PEM file f, named by
// the configuration key key: the certificates that parse, and a problem
// for an unreadable file, each certificate that does not parse, and a
// file without any that does.
func pemCertFile(key, f string) (certs []*x509.Certificate, problems []string) {
	data, err := os.ReadFile(f)
	if err != nil {
		return nil, []string{fmt.Sprintf("%s: %v", key, err)}
	}
	for len(data) > 0 {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %s: certificate %d: %v", key, f, len(certs)+1, err))
			continue
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		problems = append(problems, fmt.Sprintf("%s: %s holds no PEM certificate", key, f))
	}
	return certs, problems
}

// CheckAccounts checks what the accounts need at run time: each IMAP
// password file is private, readable and not empty, each tls_ca_file holds a PEM
// certificate. All problems are returned together.
func (c *Config) CheckAccounts() error {
	var problems []string
	checked := map[int]bool{} // the mailboxes of a users block are checked once
	for _, a := range c.Accounts {
		if checked[a.Index] {
			continue
		}
		checked[a.Index] = true
		i := a.Index
		if a.OAuth2 != nil {
			if _, err := c.TokenSource(a); err != nil {
				problems = append(problems, fmt.Sprintf("accounts[%d].oauth2: %v", i, err))
			}
		} else if _, err := ReadAccountPassword(a); err != nil {
			problems = append(problems, fmt.Sprintf("accounts[%d].password_file: %v", i, err))
		}
		if a.TLSCAFile != "" {
			data, err := os.ReadFile(a.TLSCAFile)
			if err == nil && !x509.NewCertPool().AppendCertsFromPEM(data) {
				err = fmt.Errorf("%s holds no PEM certificate", a.TLSCAFile)
			}
			if err != nil {
				problems = append(problems, fmt.Sprintf("accounts[%d].tls_ca_file: %v", i, err))
			}
		}
	}
	if len(problems) > 0 {
		return &Error{Path: c.Path, Problems: problems}
	}
	return nil
}

// ReadAccountPassword reads the IMAP password of a, as `smimed run` does:
// the file must be private (harvest.ReadPasswordFile) and not empty.
func ReadAccountPassword(a Account) (string, error) {
	pw, err := harvest.ReadPasswordFile(a.PasswordFile)
	if err == nil && pw == "" {
		err = fmt.Errorf("password file %s is empty", a.PasswordFile)
	}
	return pw, err
}

// TokenFile is where the refresh token of account a's device login is
// kept (state_dir/oauth2/BLOCK.json).
func (c *Config) TokenFile(a Account) string {
	name := a.Name
	if a.Block != "" {
		name = a.Block
	}
	return filepath.Join(c.StateDir, "oauth2", name+".json")
}

// TokenSource is the OAuth2 token source of account a, its secret files
// read as `run` does. A device login's refresh token is read when a token
// is first asked for: until `smimed oauth2 login` has run, the account's
// logins are refused (MissingRefreshTokens says so beforehand).
func (c *Config) TokenSource(a Account) (*oauth.Source, error) {
	if a.OAuth2 == nil {
		return nil, fmt.Errorf("account %s has no OAuth2 login", a.Name)
	}
	for _, f := range []string{a.OAuth2.ClientSecretFile, a.OAuth2.ServiceAccountFile} {
		if f == "" {
			continue
		}
		if err := harvest.CheckPrivateFile(f); err != nil {
			return nil, err
		}
	}
	return oauth.New(*a.OAuth2, a.Username, c.TokenFile(a))
}

// MissingRefreshTokens names the accounts whose device login
// (oauth2.device_auth_url) has no refresh token yet, with the command
// that gets one.
func (c *Config) MissingRefreshTokens() []string {
	var out []string
	for _, a := range c.Accounts {
		if a.OAuth2 == nil || a.OAuth2.Grant() != oauth.RefreshToken {
			continue
		}
		if _, err := os.Stat(c.TokenFile(a)); err != nil {
			out = append(out, fmt.Sprintf("accounts[%d].oauth2: no refresh token yet at %s: run smimed oauth2 login --account %s", a.Index, c.TokenFile(a), a.Name))
		}
	}
	return out
}

// LoadedKey is one organisation key with the [[keys]] entry it comes from.
type LoadedKey struct {
	*cms.Key
	Entry    int    // index among [[keys]]
	File     string // the PKCS#12 or certificate file
	Accounts []string
}

// LoadKeyEntries reads the configured keys, each with its entry (smimed
// keys list); errors as LoadKeysWarn.
func (c *Config) LoadKeyEntries() ([]LoadedKey, []string, error) {
	keys, from, warnings, err := c.loadKeys()
	var out []LoadedKey
	for i, k := range keys {
		kc := c.Keys[from[i]]
		file := kc.PKCS12File
		if file == "" {
			file = kc.CertFile
		}
		out = append(out, LoadedKey{Key: k, Entry: from[i], File: file, Accounts: kc.Accounts})
	}
	return out, warnings, err
}
