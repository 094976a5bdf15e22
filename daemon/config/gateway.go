package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/cms"
)

// Gateway modes, sign and encrypt settings, relay TLS modes.
const (
	ModeFilter     = "filter"
	ModeSubmission = "submission"

	SignAlways = "always"
	SignNever  = "never"

	EncryptIfPossible = "if-possible"
	EncryptAlways     = "always"
	EncryptNever      = "never"

	RelayTLSNone     = "none"
	RelayTLSStartTLS = "starttls"
	RelayTLSImplicit = "implicit"
)

// Gateway is the [gateway] table: smimed serving SMTP, signing and
// encrypting what the organisation sends and handing it on.
type Gateway struct {
	Listen          string // host:port of the SMTP listener (STARTTLS in submission mode)
	Mode            string // ModeFilter or ModeSubmission
	Relay           string // the next hop, host:port
	RelayTLS        string // RelayTLSNone, RelayTLSStartTLS or RelayTLSImplicit
	RelayTLSCAFile  string // "" : the system's roots
	ListenTLS       string // submission: an implicit-TLS listener, "" for none
	TLSCertFile     string
	TLSKeyFile      string
	InternalDomains []string // lower case
	Sign            string
	Encrypt         string
	EncryptTrigger  string // "" : off
	EscrowCertFiles []string
	ProtectHeaders  bool
	MaxMessageSize  int64
	CommandTimeout  time.Duration
	DataTimeout     time.Duration
	MaxRecipients   int
	MaxSessions     int
	Policies        []GatewayPolicy
}

// GatewayPolicy is one [[gateway.policy]] entry: the settings for the
// recipients it matches.
type GatewayPolicy struct {
	Match   string // lower case: an address, a domain or *.domain
	Encrypt string // "" : the [gateway] setting
	Sign    string // "" : the [gateway] setting
}

// Gateway defaults.
const (
	DefaultGatewayCommandTimeout = 5 * time.Minute  // RFC 5321 4.5.3.2.7: 5 minutes for a command
	DefaultGatewayDataTimeout    = 10 * time.Minute // RFC 5321 4.5.3.2.6: 10 minutes for the data
	DefaultGatewayMaxRecipients  = 1000
	DefaultGatewayMaxSessions    = 100
)

// rawGateway mirrors the [gateway] table.
type rawGateway struct {
	Listen          *string  `toml:"listen"`
	Mode            *string  `toml:"mode"`
	Relay           *string  `toml:"relay"`
	RelayTLS        *string  `toml:"relay_tls"`
	RelayTLSCAFile  string   `toml:"relay_tls_ca_file"`
	ListenTLS       string   `toml:"listen_tls"`
	TLSCertFile     string   `toml:"tls_cert_file"`
	TLSKeyFile      string   `toml:"tls_key_file"`
	InternalDomains []string `toml:"internal_domains"`
	Sign            *string  `toml:"sign"`
	Encrypt         *string  `toml:"encrypt"`
	EncryptTrigger  string   `toml:"encrypt_trigger"`
	EscrowCertFiles []string `toml:"escrow_cert_files"`
	ProtectHeaders  bool     `toml:"protect_headers"`
	MaxMessageSize  any      `toml:"max_message_size"`
	CommandTimeout  *string  `toml:"command_timeout"`
	DataTimeout     *string  `toml:"data_timeout"`
	MaxRecipients   *int     `toml:"max_recipients"`
	MaxSessions     *int     `toml:"max_sessions"`
	Policy          []struct {
		Match   string `toml:"match"`
		Encrypt string `toml:"encrypt"`
		Sign    string `toml:"sign"`
	} `toml:"policy"`
}

// parseGateway checks the [gateway] table; nil when it is absent.
func parseGateway(raw *rawGateway, dir string, addf func(string, ...any)) *Gateway {
	if raw == nil {
		return nil
	}
	g := &Gateway{
		Mode: ModeFilter, Sign: SignAlways, Encrypt: EncryptIfPossible,
		MaxMessageSize: DefaultMaxMessageSize,
		CommandTimeout: DefaultGatewayCommandTimeout, DataTimeout: DefaultGatewayDataTimeout,
		MaxRecipients: DefaultGatewayMaxRecipients, MaxSessions: DefaultGatewayMaxSessions,
		EncryptTrigger: raw.EncryptTrigger, ProtectHeaders: raw.ProtectHeaders,
	}
	if raw.Listen == nil || *raw.Listen == "" {
		addf("gateway.listen: must be set (host:port, e.g. \"127.0.0.1:10025\") for the gateway to run")
	} else if err := hostPort(*raw.Listen); err != nil {
		addf("gateway.listen: %q %v", *raw.Listen, err)
	} else {
		g.Listen = *raw.Listen
	}
	if raw.Mode != nil {
		switch *raw.Mode {
		case ModeFilter, ModeSubmission:
			g.Mode = *raw.Mode
		default:
			addf("gateway.mode: %q: want \"filter\" or \"submission\"", *raw.Mode)
		}
	}
	if g.Mode == ModeFilter && g.Listen != "" && !isLoopback(g.Listen) {
		// The filter takes mail without authentication and its next hop
		// (Postfix's reinjection port) trusts what comes from smimed:
		// listening beyond loopback would make an open relay.
		addf("gateway.listen: %q: filter mode listens on loopback only (e.g. \"127.0.0.1:10025\"): it takes mail without authentication for a next hop that trusts it; run smimed on the Postfix host", g.Listen)
	}
	if raw.Relay == nil || *raw.Relay == "" {
		addf("gateway.relay: must be set: the next hop, host:port (e.g. \"127.0.0.1:10026\")")
	} else if err := hostPort(*raw.Relay); err != nil {
		addf("gateway.relay: %q %v", *raw.Relay, err)
	} else {
		g.Relay = *raw.Relay
	}
	g.RelayTLS = RelayTLSStartTLS
	if g.Relay != "" && isLoopback(g.Relay) {
		g.RelayTLS = RelayTLSNone
	}
	if raw.RelayTLS != nil {
		switch *raw.RelayTLS {
		case RelayTLSNone:
			if g.Relay != "" && !isLoopback(g.Relay) {
				addf("gateway.relay_tls: \"none\" only to a loopback relay (127.0.0.1, ::1, localhost), not %q: use \"starttls\" or \"implicit\"", g.Relay)
			}
			g.RelayTLS = *raw.RelayTLS
		case RelayTLSStartTLS, RelayTLSImplicit:
			g.RelayTLS = *raw.RelayTLS
		default:
			addf("gateway.relay_tls: %q: want \"none\", \"starttls\" or \"implicit\"", *raw.RelayTLS)
		}
	}
	g.RelayTLSCAFile = resolve(dir, raw.RelayTLSCAFile)
	if g.RelayTLSCAFile != "" && g.RelayTLS == RelayTLSNone {
		addf("gateway.relay_tls_ca_file: only used with relay_tls = \"starttls\" or \"implicit\"")
	}
	if raw.ListenTLS != "" {
		if err := hostPort(raw.ListenTLS); err != nil {
			addf("gateway.listen_tls: %q %v", raw.ListenTLS, err)
		} else if g.Mode != ModeSubmission {
			addf("gateway.listen_tls: only used with mode = \"submission\"")
		} else {
			g.ListenTLS = raw.ListenTLS
		}
	}
	g.TLSCertFile, g.TLSKeyFile = resolve(dir, raw.TLSCertFile), resolve(dir, raw.TLSKeyFile)
	if (g.TLSCertFile == "") != (g.TLSKeyFile == "") {
		addf("gateway.tls_cert_file: tls_cert_file and tls_key_file must both be set")
	}
	if g.Mode == ModeSubmission {
		if g.TLSCertFile == "" && (g.ListenTLS != "" || (g.Listen != "" && !isLoopback(g.Listen))) {
			addf("gateway.tls_cert_file: mode = \"submission\" on %q needs tls_cert_file and tls_key_file: clients send their passwords", g.Listen)
		}
		if g.Relay != "" && g.RelayTLS == RelayTLSNone && !isLoopback(g.Relay) {
			addf("gateway.relay_tls: submission passes passwords on: use \"starttls\" or \"implicit\"")
		}
	}
	if len(raw.InternalDomains) == 0 {
		addf("gateway.internal_domains: must name the organisation's mail domains (e.g. [\"org.example\"]); only their mail is signed and encrypted")
	}
	for i, d := range raw.InternalDomains {
		d = harvest.ASCIIDomain(strings.TrimSpace(d))
		if err := checkDomain(d); err != nil {
			addf("gateway.internal_domains[%d]: %q %v", i, raw.InternalDomains[i], err)
			continue
		}
		g.InternalDomains = append(g.InternalDomains, d)
	}
	if raw.Sign != nil {
		if err := checkSign(*raw.Sign); err != nil {
			addf("gateway.sign: %v", err)
		} else {
			g.Sign = *raw.Sign
		}
	}
	if raw.Encrypt != nil {
		if err := checkEncrypt(*raw.Encrypt); err != nil {
			addf("gateway.encrypt: %v", err)
		} else {
			g.Encrypt = *raw.Encrypt
		}
	}
	if t := raw.EncryptTrigger; t != strings.TrimSpace(t) || strings.ContainsAny(t, "\r\n") {
		addf("gateway.encrypt_trigger: %q must not start or end with spaces nor hold line breaks", t)
		g.EncryptTrigger = ""
	}
	for i, f := range raw.EscrowCertFiles {
		if f == "" {
			addf("gateway.escrow_cert_files[%d]: empty file name", i)
			continue
		}
		g.EscrowCertFiles = append(g.EscrowCertFiles, resolve(dir, f)) // read by EscrowCertificates
	}
	if raw.MaxMessageSize != nil {
		n, err := parseSize(raw.MaxMessageSize)
		if err != nil {
			addf("gateway.max_message_size: %v", err)
		} else {
			g.MaxMessageSize = n
		}
	}
	dur := func(key string, v *string, min time.Duration, dst *time.Duration) {
		parseDuration("gateway."+key, v, min, dst, addf)
	}
	dur("command_timeout", raw.CommandTimeout, 10*time.Second, &g.CommandTimeout)
	dur("data_timeout", raw.DataTimeout, 10*time.Second, &g.DataTimeout)
	parseIntRange("gateway.max_recipients", raw.MaxRecipients, 1, 100000, &g.MaxRecipients, addf)
	parseIntRange("gateway.max_sessions", raw.MaxSessions, 1, 100000, &g.MaxSessions, addf)
	seen := map[string]int{} // normalised match → its entry
	for i, p := range raw.Policy {
		key := fmt.Sprintf("gateway.policy[%d]", i)
		m := normMatch(p.Match)
		if err := checkMatch(m); err != nil {
			addf("%s.match: %q %v", key, p.Match, err)
			continue
		}
		if j, dup := seen[m]; dup {
			// One domain written twice, e.g. in U-labels and in
			// A-labels (a configuration of an earlier version, which
			// told them apart): the same settings are one rule.
			if q := raw.Policy[j]; q.Encrypt == p.Encrypt && q.Sign == p.Sign {
				continue
			}
			addf("%s.match: %q is the same as gateway.policy[%d]'s %q (%s), with other settings: keep one", key, p.Match, j, raw.Policy[j].Match, m)
			continue
		}
		seen[m] = i
		if p.Encrypt == "" && p.Sign == "" {
			addf("%s: set encrypt or sign (or both) for %q", key, p.Match)
			continue
		}
		if p.Encrypt != "" {
			if err := checkEncrypt(p.Encrypt); err != nil {
				addf("%s.encrypt: %v", key, err)
				continue
			}
		}
		if p.Sign != "" {
			if err := checkSign(p.Sign); err != nil {
				addf("%s.sign: %v", key, err)
				continue
			}
		}
		g.Policies = append(g.Policies, GatewayPolicy{Match: m, Encrypt: p.Encrypt, Sign: p.Sign})
	}
	return g
}

func checkSign(s string) error {
	if s != SignAlways && s != SignNever {
		return fmt.Errorf("%q: want \"always\" or \"never\"", s)
	}
	return nil
}

func checkEncrypt(s string) error {
	if s != EncryptIfPossible && s != EncryptAlways && s != EncryptNever {
		return fmt.Errorf("%q: want \"if-possible\", \"always\" or \"never\"", s)
	}
	return nil
}

// normMatch is an address, a domain or a *.domain as the gateway compares
// them: lower case, domains in A-labels (harvest.ASCIIDomain), so that
// "bücher.example" in the configuration meets "xn--bcher-kva.example" in
// mail and the other way round.
func normMatch(m string) string {
	m = strings.TrimSpace(m)
	if strings.Contains(m, "@") {
		return harvest.NormalizeAddress(m)
	}
	if rest, ok := strings.CutPrefix(m, "*."); ok {
		return "*." + harvest.ASCIIDomain(rest)
	}
	return harvest.ASCIIDomain(m)
}

// checkMatch checks a policy's match: local@domain, domain or *.domain.
func checkMatch(m string) error {
	if local, domain, ok := strings.Cut(m, "@"); ok {
		if local == "" || strings.ContainsAny(local, " \t<>") {
			return fmt.Errorf("is not an address (local@domain)")
		}
		return checkDomain(domain)
	}
	return checkDomain(strings.TrimPrefix(m, "*."))
}

// checkDomain checks a lower-case domain name.
func checkDomain(d string) error {
	if d == "" || len(d) > 253 || strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") || strings.Contains(d, "..") {
		return fmt.Errorf("is not a domain name")
	}
	for _, r := range d {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r > 127) {
			return fmt.Errorf("is not a domain name (%q)", r)
		}
	}
	return nil
}

// hostPort checks a host:port listen or relay address.
func hostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil || port == "" {
		return fmt.Errorf("must be host:port")
	}
	return nil
}

// isLoopback tells whether a host:port names this machine only.
func isLoopback(hp string) bool {
	host, _, err := net.SplitHostPort(hp)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// GatewayEscrow reads the escrow certificates: every certificate of
// escrow_cert_files (PEM), or else the certificate of the first [[keys]]
// entry. Each must be one mail can be encrypted to (cms.CanEncryptTo)
// and valid at now; a problem names its key.
func (c *Config) GatewayEscrow(now time.Time) ([]*x509.Certificate, error) {
	g := c.Gateway
	if g == nil {
		return nil, nil
	}
	var out []*x509.Certificate
	var problems []string
	check := func(key string, cert *x509.Certificate) {
		if err := cms.CanEncryptTo(cert); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %s cannot be encrypted to: %v", key, cert.Subject, err))
			return
		}
		if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
			problems = append(problems, fmt.Sprintf("%s: %s is not valid now (%s to %s)", key, cert.Subject, cert.NotBefore.Format(time.DateOnly), cert.NotAfter.Format(time.DateOnly)))
			return
		}
		out = append(out, cert)
	}
	if len(g.EscrowCertFiles) == 0 {
		cert, err := c.DefaultEscrow()
		if err != nil {
			return nil, err
		}
		if cert == nil {
			return nil, &Error{Path: c.Path, Problems: []string{"gateway.escrow_cert_files: empty, and no [[keys]] entry whose certificate could be the escrow"}}
		}
		check("gateway.escrow_cert_files (default: keys[0])", cert)
	}
	for i, f := range g.EscrowCertFiles {
		key := fmt.Sprintf("gateway.escrow_cert_files[%d]", i)
		certs, p := pemCertFile(key, f)
		problems = append(problems, p...)
		for _, cert := range certs {
			check(key, cert)
		}
	}
	if len(problems) > 0 {
		return nil, &Error{Path: c.Path, Problems: problems}
	}
	return out, nil
}

// GatewayTLS is the gateway's server certificate (tls_cert_file,
// tls_key_file), nil when none is configured.
func (c *Config) GatewayTLS() (*tls.Config, error) {
	g := c.Gateway
	if g == nil || g.TLSCertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(g.TLSCertFile, g.TLSKeyFile)
	if err != nil {
		return nil, &Error{Path: c.Path, Problems: []string{fmt.Sprintf("gateway.tls_cert_file: %v", err)}}
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
