// Package config is smimed's configuration: the TOML file read and
// checked, its defaults, the keys and trust anchors it names, and the
// paths derived from it (state file, archive, control socket).
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/revocation"
)

// DefaultPath is where smimed looks when --config is not given.
const DefaultPath = "/etc/smimed/smimed.toml"

// DefaultMaxMessageSize is the largest message read (50 MiB).
const DefaultMaxMessageSize = 50 << 20

// Config is the validated configuration.
type Config struct {
	Path           string // the file it was read from; "" for defaults
	StateDir       string
	MaxMessageSize int64
	Trust          Trust
	Keys           []Key
	Accounts       []Account // watched by `smimed run`
	Daemon         Daemon
	Archive        Archive
	Gateway        *Gateway  // nil: no [gateway], smimed serves no SMTP
	Signing        []Signing // [[signing]]: identities for outgoing mail
}

// Trust names the trust anchors for signature verdicts.
type Trust struct {
	SystemRoots bool
	CAFiles     []string
	RejectSHA1  bool
	// Revocation is revocation.Off, Soft (the default) or Hard.
	Revocation string
	// MinValidation is harvest.MinMailbox (the default),
	// MinOrganization, MinIndividual or MinSponsor.
	MinValidation string
	// FetchIntermediates: fetch a missing issuer from the URL a
	// certificate names (authority information access).
	FetchIntermediates bool
	// OCSP: ask a certificate's OCSP responder before its CRL.
	OCSP bool
}

// Key is one organisation key: a PKCS#12 file with its password
// file, or a PEM certificate and key.
type Key struct {
	PKCS12File   string
	PasswordFile string // resolved path
	CertFile     string
	KeyFile      string
	// Accounts limits the key to these mailboxes or blocks (nil: every
	// mailbox).
	Accounts []string
}

// rawConfig mirrors the TOML file.
type rawConfig struct {
	StateDir       *string `toml:"state_dir"`
	MaxMessageSize any     `toml:"max_message_size"`
	Trust          struct {
		SystemRoots        *bool    `toml:"system_roots"`
		CAFiles            []string `toml:"ca_files"`
		RejectSHA1         bool     `toml:"reject_sha1"`
		Revocation         *string  `toml:"revocation"`
		MinValidation      *string  `toml:"min_validation"`
		FetchIntermediates bool     `toml:"fetch_intermediates"`
		OCSP               bool     `toml:"ocsp"`
	} `toml:"trust"`
	Keys []struct {
		rawKeyFiles
		Accounts []string `toml:"accounts"`
	} `toml:"keys"`
	Signing  []rawSigning `toml:"signing"`
	Accounts []rawAccount `toml:"accounts"`
	Daemon   rawDaemon    `toml:"daemon"`
	Archive  rawArchive   `toml:"archive"`
	Gateway  *rawGateway  `toml:"gateway"`
}

// Defaults is the configuration used when no file exists.
func Defaults() *Config {
	return &Config{
		StateDir:       "/var/lib/smimed",
		MaxMessageSize: DefaultMaxMessageSize,
		Trust:          Trust{SystemRoots: true, Revocation: revocation.Soft, MinValidation: harvest.MinMailbox},
		Daemon:         defaultDaemon(),
		Archive:        Archive{Retention: DefaultRetention()},
	}
}

// Error lists every problem found in a configuration file, each
// naming its key.
type Error struct {
	Path     string
	Problems []string
}

func (e *Error) Error() string {
	if len(e.Problems) == 1 {
		return fmt.Sprintf("config %s: %s", e.Path, e.Problems[0])
	}
	return fmt.Sprintf("config %s: %d problems:\n  %s", e.Path, len(e.Problems), strings.Join(e.Problems, "\n  "))
}

// Load reads and checks a configuration file. Relative paths in it
// are taken relative to the file's directory; relative password file names
// are looked up in $CREDENTIALS_DIRECTORY (systemd's LoadCredential=)
// first. Every problem is collected into a *Error.
func Load(path string) (*Config, error) {
	var raw rawConfig
	md, err := toml.DecodeFile(path, &raw)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return nil, &Error{Path: path, Problems: []string{strings.TrimSpace(perr.Error())}}
		}
		if errors.Is(err, os.ErrNotExist) {
			return nil, &Error{Path: path, Problems: []string{"file does not exist"}}
		}
		return nil, &Error{Path: path, Problems: []string{err.Error()}}
	}
	cfg := Defaults()
	cfg.Path = path
	dir := filepath.Dir(path)
	var problems []string
	addf := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	for _, k := range md.Undecoded() {
		addf("%s", unknownKey(k))
	}
	if raw.StateDir != nil {
		if *raw.StateDir == "" {
			addf("state_dir: must not be empty")
		} else {
			cfg.StateDir = resolve(dir, *raw.StateDir)
		}
	}
	if raw.MaxMessageSize != nil {
		n, err := parseSize(raw.MaxMessageSize)
		if err != nil {
			addf("max_message_size: %v", err)
		} else {
			cfg.MaxMessageSize = n
		}
	}
	if raw.Trust.SystemRoots != nil {
		cfg.Trust.SystemRoots = *raw.Trust.SystemRoots
	}
	cfg.Trust.RejectSHA1 = raw.Trust.RejectSHA1
	cfg.Trust.FetchIntermediates = raw.Trust.FetchIntermediates
	cfg.Trust.OCSP = raw.Trust.OCSP
	if r := raw.Trust.Revocation; r != nil {
		switch *r {
		case revocation.Off, revocation.Soft, revocation.Hard:
			cfg.Trust.Revocation = *r
		default:
			addf("trust.revocation: %q: want off, soft or hard", *r)
		}
	}
	if m := raw.Trust.MinValidation; m != nil {
		switch *m {
		case harvest.MinMailbox, harvest.MinOrganization, harvest.MinIndividual, harvest.MinSponsor:
			cfg.Trust.MinValidation = *m
		default:
			addf("trust.min_validation: %q: want mailbox, organization, individual or sponsor", *m)
		}
	}
	for i, f := range raw.Trust.CAFiles {
		if f == "" {
			addf("trust.ca_files[%d]: empty file name", i)
			continue
		}
		cfg.Trust.CAFiles = append(cfg.Trust.CAFiles, resolve(dir, f)) // read by TrustPool
	}
	for i, k := range raw.Keys {
		key := fmt.Sprintf("keys[%d]", i)
		kc, ok := parseKeyFiles(dir, key, k.rawKeyFiles, addf)
		if !ok {
			continue
		}
		if k.Accounts != nil {
			kc.Accounts = k.Accounts
			if len(k.Accounts) == 0 {
				addf("%s.accounts: an empty list would let the key decrypt for no mailbox; leave accounts out for every mailbox", key)
			}
		}
		cfg.Keys = append(cfg.Keys, kc)
	}
	cfg.Accounts = parseAccounts(raw.Accounts, dir, addf)
	checkKeyAccounts(raw.Accounts, cfg, addf)
	cfg.Daemon = parseDaemon(raw.Daemon, addf)
	cfg.Archive = parseArchive(raw.Archive, dir, addf)
	cfg.Gateway = parseGateway(raw.Gateway, dir, addf)
	cfg.Signing = parseSigning(raw.Signing, dir, addf)
	if cs := cfg.Daemon.ControlSocket; cs != "" {
		cfg.Daemon.ControlSocket = resolve(dir, cs)
		if len(cfg.Daemon.ControlSocket) > MaxSocketPath {
			addf("daemon.control_socket: %q is longer than the %d bytes a unix socket path may have", cfg.Daemon.ControlSocket, MaxSocketPath)
		}
	}
	if len(problems) > 0 {
		return cfg, &Error{Path: path, Problems: problems}
	}
	return cfg, nil
}

// rawKeyFiles are the key file settings of a [[keys]] or [[signing]]
// entry.
type rawKeyFiles struct {
	PKCS12File   string `toml:"pkcs12_file"`
	PasswordFile string `toml:"password_file"`
	CertFile     string `toml:"cert_file"`
	KeyFile      string `toml:"key_file"`
}

// parseKeyFiles checks and resolves the key files of entry key; false
// when they cannot be used (the problem is added).
func parseKeyFiles(dir, key string, k rawKeyFiles, addf func(string, ...any)) (Key, bool) {
	kc := Key{}
	switch {
	case k.PKCS12File != "" && (k.CertFile != "" || k.KeyFile != ""):
		addf("%s: give either pkcs12_file (with password_file) or cert_file and key_file, not both", key)
		return kc, false
	case k.PKCS12File != "":
		kc.PKCS12File = resolve(dir, k.PKCS12File)
		if k.PasswordFile != "" {
			kc.PasswordFile = resolveCredential(dir, k.PasswordFile)
		}
	case k.CertFile != "" || k.KeyFile != "":
		if k.CertFile == "" || k.KeyFile == "" {
			addf("%s: cert_file and key_file must both be set", key)
			return kc, false
		}
		if k.PasswordFile != "" {
			addf("%s.password_file: only used with pkcs12_file (encrypted PEM keys are not supported)", key)
		}
		kc.CertFile = resolve(dir, k.CertFile)
		kc.KeyFile = resolve(dir, k.KeyFile)
	default:
		addf("%s: needs pkcs12_file or cert_file and key_file", key)
		return kc, false
	}
	return kc, true
}

func resolve(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// resolveCredential finds a relative secret file name in systemd's
// credentials directory when it is there, else next to the config file.
func resolveCredential(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	if cd := os.Getenv("CREDENTIALS_DIRECTORY"); cd != "" {
		c := filepath.Join(cd, p)
		if _, err := os.Stat(c); err == nil {
			return c
		}
	}
	return filepath.Join(dir, p)
}

// parseSize reads a byte count: an integer, or a string such as "50MiB",
// "10MB", "512KiB", "1GiB".
func parseSize(v any) (int64, error) {
	var n int64
	switch x := v.(type) {
	case int64:
		n = x
	case string:
		s := strings.TrimSpace(x)
		units := []struct {
			suffix string
			mult   int64
		}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}}
		mult := int64(1)
		for _, u := range units {
			if strings.HasSuffix(s, u.suffix) {
				mult = u.mult
				s = strings.TrimSpace(strings.TrimSuffix(s, u.suffix))
				break
			}
		}
		f, err := strconv.ParseInt(s, 10, 64)
		if err != nil || f < 0 {
			return 0, fmt.Errorf("%q is not a size (e.g. 52428800 or \"50MiB\")", x)
		}
		if f > (1<<62)/mult {
			return 0, fmt.Errorf("%q is too large", x)
		}
		n = f * mult
	default:
		return 0, fmt.Errorf("must be a number of bytes or a string like \"50MiB\"")
	}
	if n < 1024 {
		return 0, fmt.Errorf("%d bytes is too small (at least 1024)", n)
	}
	return n, nil
}
