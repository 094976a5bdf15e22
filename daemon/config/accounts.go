package config

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/smimed/smimed/daemon/imapconn"
	"github.com/smimed/smimed/daemon/oauth"
)

// Account is one IMAP account whose folders are watched.
type Account struct {
	Name          string
	Server        string // host:port
	TLS           string // "implicit" | "starttls" | "none"
	TLSCAFile     string
	TLSServerName string
	Username      string
	// Authzid is the SASL PLAIN authorization identity (RFC 4616): the
	// mailbox Username logs in for (a master or admin user); "" for none.
	Authzid      string
	PasswordFile string // resolved path; "" with OAuth2
	Auth         string // "plain" | "login" | "xoauth2" | "oauthbearer"
	// OAuth2 is the token source of auth = "xoauth2" or "oauthbearer".
	OAuth2 *oauth.Config
	// Block is the [[accounts]] block a mailbox of a users list comes
	// from ("" for a block of one mailbox); Name is then BLOCK/ADDRESS.
	Block string
	// Index is the block's place among the [[accounts]] (accounts[Index]
	// in messages).
	Index         int
	Folders       []string
	ArchiveFolder string // "" = no plaintext copies
	// ArchiveFolderMessages says which messages get a copy in
	// ArchiveFolder: "encrypted" (decrypted ones, the default), "smime"
	// (also signed ones) or "all".
	ArchiveFolderMessages string
	Backfill              string // "all" | "none" | "since:YYYY-MM-DD"
}

// Daemon holds the [daemon] settings.
type Daemon struct {
	Workers          int
	IdleRestart      time.Duration
	LivenessInterval time.Duration
	PollInterval     time.Duration
	LogFormat        string // "text" | "json"
	MetricsListen    string // "" = off
	// AuthservID names us in the Authentication-Results field of the
	// users' copies (RFC 8601); incoming fields with this id are removed.
	// Default: the host name.
	AuthservID string
	// ControlSocket is the control socket's path; "" = the default
	// (Config.ControlSocketPath).
	ControlSocket string
	// MaxConnections bounds the connections to each IMAP server (by
	// host:port), all accounts together.
	MaxConnections int
}

func defaultDaemon() Daemon {
	return Daemon{
		Workers:          runtime.NumCPU(),
		IdleRestart:      25 * time.Minute,
		LivenessInterval: 5 * time.Minute,
		PollInterval:     60 * time.Second,
		LogFormat:        "text",
		AuthservID:       defaultAuthservID(),
		MaxConnections:   DefaultMaxConnections,
	}
}

// DefaultMaxConnections is Dovecot's default mail_max_userip_connections.
const DefaultMaxConnections = 10

type rawAccount struct {
	Name                  string     `toml:"name"`
	Server                string     `toml:"server"`
	TLS                   *string    `toml:"tls"`
	TLSCAFile             string     `toml:"tls_ca_file"`
	TLSServerName         string     `toml:"tls_server_name"`
	Username              string     `toml:"username"`
	Authzid               string     `toml:"authzid"`
	Users                 []string   `toml:"users"`
	OAuth2                *rawOAuth2 `toml:"oauth2"`
	UsersFile             string     `toml:"users_file"`
	PasswordFile          string     `toml:"password_file"`
	Auth                  *string    `toml:"auth"`
	Folders               []string   `toml:"folders"`
	ArchiveFolder         *string    `toml:"archive_folder"`
	ArchiveFolderMessages *string    `toml:"archive_folder_messages"`
	Backfill              *string    `toml:"backfill"`
}

type rawOAuth2 struct {
	TokenURL           string `toml:"token_url"`
	DeviceAuthURL      string `toml:"device_auth_url"`
	ClientID           string `toml:"client_id"`
	ClientSecretFile   string `toml:"client_secret_file"`
	Scope              string `toml:"scope"`
	ServiceAccountFile string `toml:"service_account_file"`
}

type rawDaemon struct {
	Workers          *int    `toml:"workers"`
	IdleRestart      *string `toml:"idle_restart"`
	LivenessInterval *string `toml:"liveness_interval"`
	PollInterval     *string `toml:"poll_interval"`
	LogFormat        *string `toml:"log_format"`
	MetricsListen    *string `toml:"metrics_listen"`
	AuthservID       *string `toml:"authserv_id"`
	ControlSocket    *string `toml:"control_socket"`
	MaxConnections   *int    `toml:"max_connections"`
}

var accountName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// parseAccounts checks every [[accounts]] entry; problems go to addf.
func parseAccounts(raws []rawAccount, dir string, addf func(string, ...any)) []Account {
	var out []Account
	var blocks []userBlock
	seen := map[string]bool{}
	for i, r := range raws {
		key := fmt.Sprintf("accounts[%d]", i)
		a := Account{
			Name: r.Name, Server: r.Server, TLS: "implicit", TLSServerName: r.TLSServerName,
			Username: r.Username, Auth: "plain", Folders: r.Folders, Backfill: "all", Index: i,
		}
		ok := true
		bad := func(format string, args ...any) { addf(key+"."+format, args...); ok = false }
		switch {
		case !accountName.MatchString(r.Name):
			bad("name: %q must be 1-64 letters, digits, '.', '_' or '-'", r.Name)
		case seen[r.Name]:
			bad("name: %q is used twice", r.Name)
		}
		seen[r.Name] = true
		host, port, err := net.SplitHostPort(r.Server)
		if err != nil || host == "" || port == "" {
			bad("server: %q must be host:port (e.g. imap.example.org:993)", r.Server)
		}
		if r.TLS != nil {
			a.TLS = *r.TLS
		}
		switch a.TLS {
		case "implicit", "starttls":
		case "none":
			if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
				bad("tls: \"none\" sends the password in clear and is only allowed to a loopback address, not %q", host)
			}
		default:
			bad("tls: %q must be \"implicit\", \"starttls\" or \"none\"", a.TLS)
		}
		if r.TLSCAFile != "" {
			a.TLSCAFile = resolve(dir, r.TLSCAFile)
		}
		if r.Username == "" && !(r.OAuth2 != nil && (r.Users != nil || r.UsersFile != "")) {
			bad("username: must be set")
		}
		if r.Auth != nil {
			a.Auth = *r.Auth
		}
		oauthAuth := a.Auth == "xoauth2" || a.Auth == "oauthbearer"
		switch {
		case a.Auth != "plain" && a.Auth != "login" && !oauthAuth:
			bad("auth: %q must be \"plain\", \"login\", \"xoauth2\" or \"oauthbearer\"", a.Auth)
		case oauthAuth && r.OAuth2 == nil:
			bad("oauth2: auth = %q needs an [accounts.oauth2] table (token_url, client_id, …)", a.Auth)
		case !oauthAuth && r.OAuth2 != nil:
			bad("auth: an [accounts.oauth2] table needs auth = \"xoauth2\" or \"oauthbearer\"")
		}
		switch {
		case oauthAuth && r.PasswordFile != "":
			bad("password_file: OAuth2 logins use no password; leave it out")
		case !oauthAuth && r.PasswordFile == "":
			bad("password_file: must be set")
		case r.PasswordFile != "":
			a.PasswordFile = resolveCredential(dir, r.PasswordFile)
		}
		if r.OAuth2 != nil && oauthAuth {
			a.OAuth2 = parseOAuth2(*r.OAuth2, dir, r.Users != nil || r.UsersFile != "", bad)
			if r.Authzid != "" || strings.Contains(r.Username, userPlaceholder) {
				bad("authzid: OAuth2 logins log in as the mailbox itself; no authzid or %s", userPlaceholder)
			}
		}
		if len(r.Folders) == 0 {
			bad("folders: list at least one folder to watch (e.g. [\"INBOX\"])")
		}
		folders := map[string]bool{}
		for j, f := range r.Folders {
			switch {
			case strings.TrimSpace(f) == "":
				bad("folders[%d]: empty folder name", j)
			case folders[f]:
				bad("folders[%d]: %q is listed twice", j, f)
			}
			folders[f] = true
		}
		if r.ArchiveFolder != nil {
			a.ArchiveFolder = *r.ArchiveFolder
			if folders[a.ArchiveFolder] {
				bad("archive_folder: %q is also watched; the copies would be processed again", a.ArchiveFolder)
			}
		}
		a.ArchiveFolderMessages = "encrypted"
		if r.ArchiveFolderMessages != nil {
			a.ArchiveFolderMessages = *r.ArchiveFolderMessages
		}
		switch a.ArchiveFolderMessages {
		case "encrypted", "smime", "all":
		default:
			bad("archive_folder_messages: %q must be \"encrypted\", \"smime\" or \"all\"", a.ArchiveFolderMessages)
		}
		if r.Backfill != nil {
			a.Backfill = *r.Backfill
		}
		if err := checkBackfill(a.Backfill); err != nil {
			bad("backfill: %v", err)
		}
		a.Authzid = r.Authzid
		if a.Authzid != "" && a.Auth != "plain" {
			bad("authzid: needs auth = \"plain\" (the LOGIN command carries no authorization identity)")
		}
		if strings.Contains(a.Authzid, userPlaceholder) {
			bad("authzid: %s belongs in a users block's username; a users block logs each user in as the authzid by itself", userPlaceholder)
		}
		if strings.ContainsAny(a.Authzid, "\x00\r\n") {
			bad("authzid: must not contain NUL or line breaks")
		}
		users, usersOK := blockUsers(r, dir, bad)
		if !usersOK {
			ok = false
		}
		if users == nil && strings.Contains(a.Username, userPlaceholder) {
			bad("username: %s is for a block with users or users_file", userPlaceholder)
		}
		if users != nil {
			switch {
			case a.Authzid != "":
				bad("authzid: a block with users logs each user in as the authzid; leave authzid out")
			case !strings.Contains(a.Username, userPlaceholder) && a.Auth == "login":
				bad("auth: a block with users needs auth = \"plain\" (each user is the authorization identity), or a username with %s (e.g. \"%s*master\" for Dovecot's master user separator)", userPlaceholder, userPlaceholder)
			}
		}
		if !ok {
			continue
		}
		if users == nil {
			out = append(out, a)
			continue
		}
		blocks = append(blocks, userBlock{a, users})
	}
	// The mailboxes of the users lists, after the blocks of one mailbox:
	// a user that has a block of its own on the same server (a per-user
	// override) is watched by that block only.
	own := map[string]bool{}
	for _, a := range out {
		own[a.Server+"\x00"+a.Username] = true
		if a.Authzid != "" {
			own[a.Server+"\x00"+a.Authzid] = true
		}
	}
	for _, b := range blocks {
		for _, u := range b.users {
			if own[b.Server+"\x00"+u] {
				continue
			}
			m := b.Account
			m.Name, m.Block = b.Name+"/"+u, b.Name
			switch {
			case m.OAuth2 != nil:
				m.Username = u // the token's login is the mailbox
			case strings.Contains(m.Username, userPlaceholder):
				m.Username = strings.ReplaceAll(m.Username, userPlaceholder, u)
			default:
				m.Authzid = u
			}
			m.Folders = slices.Clone(b.Folders)
			out = append(out, m)
		}
	}
	return out
}

// userPlaceholder in a users block's username stands for each user: a
// server's own master-user syntax ("{user}*master" for Dovecot's
// auth_master_user_separator = *).
const userPlaceholder = "{user}"

// maxUsers bounds a block's users.
const maxUsers = 100000

type userBlock struct {
	Account
	users []string
}

// blockUsers returns the users of r (users, or the lines of users_file),
// nil when it has neither; problems go to bad, and ok is false then.
func blockUsers(r rawAccount, dir string, bad func(string, ...any)) (users []string, ok bool) {
	if r.Users == nil && r.UsersFile == "" {
		return nil, true
	}
	ok = true
	fail := func(format string, args ...any) { bad(format, args...); ok = false }
	if r.Users != nil && r.UsersFile != "" {
		fail("users_file: set users or users_file, not both")
		return nil, false
	}
	where := func(i int) string { return fmt.Sprintf("users[%d]", i) }
	list := r.Users
	if r.UsersFile != "" {
		path := resolve(dir, r.UsersFile)
		data, err := os.ReadFile(path)
		if err != nil {
			fail("users_file: %v", err)
			return nil, false
		}
		list = nil
		var lines []int
		for n, line := range strings.Split(string(data), "\n") {
			if i := strings.Index(line, " #"); i >= 0 {
				line = line[:i]
			}
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			list, lines = append(list, line), append(lines, n+1)
		}
		where = func(i int) string { return fmt.Sprintf("users_file: %s line %d", path, lines[i]) }
		if len(list) == 0 {
			fail("users_file: %s lists no users", path)
			return nil, false
		}
	}
	if len(list) == 0 {
		fail("users: lists no users")
		return nil, false
	}
	if len(list) > maxUsers {
		fail("users: %d users, at most %d a block", len(list), maxUsers)
		return nil, false
	}
	seen := map[string]bool{}
	for i, u := range list {
		switch {
		case u == "" || len(u) > 254 || strings.ContainsFunc(u, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '/' || r == '"' || r == '\\' }):
			fail("%s: %q is not a user name (no spaces, controls, '/', '\"' or '\\'; at most 254 bytes)", where(i), u)
		case seen[u]:
			fail("%s: %q is listed twice", where(i), u)
		}
		seen[u] = true
	}
	if !ok {
		return nil, false
	}
	return list, true
}

func checkBackfill(s string) error {
	switch {
	case s == "all" || s == "none":
		return nil
	case strings.HasPrefix(s, "since:"):
		if _, err := time.Parse(time.DateOnly, strings.TrimPrefix(s, "since:")); err != nil {
			return fmt.Errorf("%q: the date must be YYYY-MM-DD", s)
		}
		return nil
	}
	return fmt.Errorf("%q must be \"all\", \"none\" or \"since:YYYY-MM-DD\"", s)
}

// parseDaemon lays the [daemon] settings over the defaults.
func parseDaemon(r rawDaemon, addf func(string, ...any)) Daemon {
	d := defaultDaemon()
	parseIntRange("daemon.workers", r.Workers, 1, 1024, &d.Workers, addf)
	dur := func(key string, v *string, min time.Duration, dst *time.Duration) {
		parseDuration("daemon."+key, v, min, dst, addf)
	}
	dur("idle_restart", r.IdleRestart, time.Minute, &d.IdleRestart)
	dur("liveness_interval", r.LivenessInterval, 10*time.Second, &d.LivenessInterval)
	dur("poll_interval", r.PollInterval, 5*time.Second, &d.PollInterval)
	if d.IdleRestart > 29*time.Minute {
		addf("daemon.idle_restart: %s is longer than the 29 minutes servers allow an IDLE (RFC 9051)", d.IdleRestart)
	}
	if r.LogFormat != nil {
		if *r.LogFormat != "text" && *r.LogFormat != "json" {
			addf("daemon.log_format: %q must be \"text\" or \"json\"", *r.LogFormat)
		} else {
			d.LogFormat = *r.LogFormat
		}
	}
	if r.MetricsListen != nil && *r.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(*r.MetricsListen); err != nil {
			addf("daemon.metrics_listen: %q must be host:port (e.g. \"127.0.0.1:9187\") or empty", *r.MetricsListen)
		} else {
			d.MetricsListen = *r.MetricsListen
		}
	}
	if r.AuthservID != nil {
		if !authservID.MatchString(*r.AuthservID) {
			addf("daemon.authserv_id: %q must be a host name (letters, digits, '.', '-')", *r.AuthservID)
		} else {
			d.AuthservID = *r.AuthservID
		}
	}
	if r.ControlSocket != nil {
		d.ControlSocket = *r.ControlSocket // resolved against the config's directory by Load
	}
	if r.MaxConnections != nil {
		if *r.MaxConnections < 2 || *r.MaxConnections > 100000 {
			addf("daemon.max_connections: %d must be between 2 and 100000 (one folder's IDLE and one connection for polls and copies)", *r.MaxConnections)
		} else {
			d.MaxConnections = *r.MaxConnections
		}
	}
	return d
}

// parseDuration reads the duration *v (when set) into *dst, at least
// min; a problem names key.
func parseDuration(key string, v *string, min time.Duration, dst *time.Duration, addf func(string, ...any)) {
	if v == nil {
		return
	}
	x, err := time.ParseDuration(*v)
	switch {
	case err != nil:
		addf("%s: %q is not a duration (e.g. \"25m\", \"90s\")", key, *v)
	case x < min:
		addf("%s: %s is shorter than %s", key, x, min)
	default:
		*dst = x
	}
}

// parseIntRange sets *dst to *v if v is set and within [min, max], and
// reports it under key otherwise.
func parseIntRange(key string, v *int, min, max int, dst *int, addf func(string, ...any)) {
	if v == nil {
		return
	}
	if *v < min || *v > max {
		addf("%s: %d must be between %d and %d", key, *v, min, max)
		return
	}
	*dst = *v
}

var authservID = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$`)

// defaultAuthservID is the host name, or "smimed" when it is not a usable
// one.
func defaultAuthservID() string {
	h, err := os.Hostname()
	if err != nil || !authservID.MatchString(h) {
		return "smimed"
	}
	return h
}

// checkKeyAccounts checks that each [[keys]] accounts entry names an
// [[accounts]] block or one of its mailboxes (BLOCK/USER).
func checkKeyAccounts(raws []rawAccount, cfg *Config, addf func(string, ...any)) {
	known := map[string]bool{}
	for _, r := range raws {
		known[r.Name] = true
	}
	for _, a := range cfg.Accounts {
		known[a.Name] = true
	}
	for i, k := range cfg.Keys {
		for j, name := range k.Accounts {
			if !known[name] {
				addf("keys[%d].accounts[%d]: %q names no [[accounts]] block or mailbox (BLOCK/USER)", i, j, name)
			}
		}
	}
}

// parseOAuth2 checks an [accounts.oauth2] table. many says the block has
// users (a refresh token belongs to one mailbox).
func parseOAuth2(r rawOAuth2, dir string, many bool, bad func(string, ...any)) *oauth.Config {
	c := &oauth.Config{TokenURL: r.TokenURL, DeviceAuthURL: r.DeviceAuthURL, ClientID: r.ClientID, Scopes: strings.Fields(r.Scope)}
	if r.ClientSecretFile != "" {
		c.ClientSecretFile = resolveCredential(dir, r.ClientSecretFile)
	}
	if r.ServiceAccountFile != "" {
		c.ServiceAccountFile = resolveCredential(dir, r.ServiceAccountFile)
	}
	for _, u := range []struct{ key, url string }{{"token_url", r.TokenURL}, {"device_auth_url", r.DeviceAuthURL}} {
		if u.url == "" {
			continue
		}
		if err := checkEndpoint(u.url); err != nil {
			bad("oauth2.%s: %v", u.key, err)
		}
	}
	switch c.Grant() {
	case oauth.ServiceAccount:
		if r.DeviceAuthURL != "" || r.ClientSecretFile != "" || r.ClientID != "" {
			bad("oauth2.service_account_file: a service account needs no client_id, client_secret_file or device_auth_url")
		}
	case oauth.RefreshToken:
		if r.TokenURL == "" || r.ClientID == "" {
			bad("oauth2: the device login (device_auth_url) needs token_url and client_id")
		}
		if many {
			bad("oauth2.device_auth_url: a refresh token is one mailbox's; a block with users needs client credentials or a service account")
		}
	default:
		if r.TokenURL == "" || r.ClientID == "" || r.ClientSecretFile == "" {
			bad("oauth2: client credentials need token_url, client_id and client_secret_file (or give service_account_file, or device_auth_url for a device login)")
		}
	}
	if len(c.Scopes) == 0 {
		bad("oauth2.scope: must be set (e.g. \"https://outlook.office365.com/.default\" or \"https://mail.google.com/\")")
	}
	return c
}

// checkEndpoint accepts an https URL, or http to a loopback address (as
// tls = "none": secrets must not cross a network in clear).
func checkEndpoint(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not a URL", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
			return nil
		}
		return fmt.Errorf("%q: http sends secrets in clear and is only allowed to a loopback address; use https", raw)
	}
	return fmt.Errorf("%q: want https (or http to a loopback address)", raw)
}

// IMAP is the imapconn configuration of mailbox a: its server, TLS and
// login, with password (password logins) or token (OAuth2 logins).
func (a Account) IMAP(password string, token func(ctx context.Context, fresh bool) (string, error), log *slog.Logger) imapconn.Config {
	return imapconn.Config{
		Addr: a.Server, TLS: a.TLS, TLSCAFile: a.TLSCAFile, TLSServerName: a.TLSServerName,
		Username: a.Username, Authzid: a.Authzid, Password: password, Auth: a.Auth, Token: token, Logger: log,
	}
}
