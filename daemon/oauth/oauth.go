// Package oauth gets the OAuth2 access tokens smimed logs in to IMAP with
// (SASL XOAUTH2 and OAUTHBEARER, RFC 7628): by client credentials (one
// token for every mailbox of an application, as Microsoft 365's
// IMAP.AccessAsApp), by a service account's signed assertion with the
// mailbox as subject (Google Workspace's domain-wide delegation), or by a
// refresh token obtained once with the device authorization grant (RFC
// 8628, `smimed oauth2 login`) and kept in the state directory.
//
// A token is fetched once and used until shortly before it expires, or
// until the server refuses it (then one fresh token, never a storm). A
// refused grant is remembered for a while, so that many mailboxes do not
// each ask. No secret or token appears in an error.
package oauth

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/oauth2/jwt"
)

// Grant types.
const (
	ClientCredentials = "client_credentials"
	ServiceAccount    = "service_account"
	RefreshToken      = "refresh_token"
)

// Config is one account's OAuth2 settings ([accounts.oauth2]).
type Config struct {
	TokenURL           string
	DeviceAuthURL      string // the device authorization grant: a refresh token from `smimed oauth2 login`
	ClientID           string
	ClientSecretFile   string
	Scopes             []string
	ServiceAccountFile string // a Google service account's JSON key
}

// Grant is the grant type c describes.
func (c Config) Grant() string {
	switch {
	case c.ServiceAccountFile != "":
		return ServiceAccount
	case c.DeviceAuthURL != "":
		return RefreshToken
	}
	return ClientCredentials
}

// ErrGrant wraps a refusal by the token endpoint (a wrong or revoked
// client secret, a revoked refresh token): an administrator must act.
var ErrGrant = errors.New("oauth2: the token endpoint refused the grant")

// Timeouts and the pause after a refused grant.
const (
	requestTimeout = 30 * time.Second
	// early is how long before its expiry a token is replaced.
	early = time.Minute
	// refusedPause is how long a refused grant is not asked again.
	refusedPause = 30 * time.Second
)

// Source hands out access tokens for one login (an account, or one
// mailbox of a service account). It is safe for concurrent use.
type Source struct {
	fetch func(ctx context.Context) (*oauth2.Token, error)
	now   func() time.Time

	mu        sync.Mutex
	tok       *oauth2.Token
	failed    error
	failedAt  time.Time
	fetches   int
	lastFetch time.Time
}

// Token returns an access token: the one in hand while it is good for
// more than a minute, else a new one; fresh asks for a new one anyway
// (the server refused the one in hand). Callers wait for one fetch at a
// time.
func (s *Source) Token(ctx context.Context, fresh bool) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if !fresh && s.tok != nil && (s.tok.Expiry.IsZero() || now.Add(early).Before(s.tok.Expiry)) {
		return s.tok.AccessToken, nil
	}
	if fresh && s.tok != nil && now.Sub(s.lastFetch) < time.Second {
		// Fetched for another connection just now: that one is fresh.
		return s.tok.AccessToken, nil
	}
	if s.failed != nil && now.Sub(s.failedAt) < refusedPause {
		return "", s.failed
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, &http.Client{Timeout: requestTimeout})
	tok, err := s.fetch(ctx)
	s.fetches++
	// After the fetch: one that took its whole timeout must not have
	// used up the pause (or the second of reuse) already.
	done := s.now()
	s.lastFetch = done
	if err != nil {
		err = describe(err)
		s.tok, s.failed, s.failedAt = nil, err, done
		return "", err
	}
	if tok.AccessToken == "" {
		return "", errors.New("oauth2: the token endpoint answered without an access token")
	}
	s.tok, s.failed = tok, nil
	return tok.AccessToken, nil
}

// Fetches is how many tokens were asked for (for tests and status).
func (s *Source) Fetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

// describe turns a token endpoint's error into one without the response
// body (which is the server's, and may echo what was sent).
func describe(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		msg := re.ErrorCode
		if re.ErrorDescription != "" {
			msg += ": " + firstLine(re.ErrorDescription, 200)
		}
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		if status == http.StatusBadRequest || status == http.StatusUnauthorized || status == http.StatusForbidden {
			return fmt.Errorf("%w (HTTP %d: %s)", ErrGrant, status, msg)
		}
		return fmt.Errorf("oauth2: token endpoint: HTTP %d %s", status, msg)
	}
	return fmt.Errorf("oauth2: token endpoint: %w", err)
}

func firstLine(s string, max int) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > max {
		s = s[:max]
	}
	return s
}

// New returns the Source of c for the mailbox user (the subject of a
// service account's assertion; unused by the other grants), with the
// refresh token of a device login kept at tokenFile.
func New(c Config, user, tokenFile string) (*Source, error) {
	s := &Source{now: time.Now}
	switch c.Grant() {
	case ClientCredentials:
		secret, err := readSecret(c.ClientSecretFile)
		if err != nil {
			return nil, err
		}
		cc := &clientcredentials.Config{ClientID: c.ClientID, ClientSecret: secret, TokenURL: c.TokenURL, Scopes: c.Scopes}
		s.fetch = cc.Token
	case ServiceAccount:
		jc, err := serviceAccount(c, user)
		if err != nil {
			return nil, err
		}
		s.fetch = func(ctx context.Context) (*oauth2.Token, error) { return jc.TokenSource(ctx).Token() }
	case RefreshToken:
		oc, err := deviceConfig(c)
		if err != nil {
			return nil, err
		}
		// rotated is the refresh token the endpoint gave last, until it
		// is written to tokenFile: the old one may no longer work, so a
		// failed write must not lose it (it is written again at the next
		// fetch).
		var rotated string
		s.fetch = func(ctx context.Context) (*oauth2.Token, error) {
			rt := rotated
			if rt == "" {
				var err error
				if rt, err = readRefreshToken(tokenFile); err != nil {
					return nil, err
				}
			} else if SaveRefreshToken(tokenFile, rt) == nil {
				rotated = ""
			}
			tok, err := oc.TokenSource(ctx, &oauth2.Token{RefreshToken: rt}).Token()
			if err == nil && tok.RefreshToken != "" && tok.RefreshToken != rt {
				rotated = tok.RefreshToken
				if SaveRefreshToken(tokenFile, rotated) == nil {
					rotated = ""
				}
			}
			return tok, err
		}
	}
	return s, nil
}

// deviceConfig is the oauth2.Config of the device authorization grant.
func deviceConfig(c Config) (*oauth2.Config, error) {
	secret := ""
	if c.ClientSecretFile != "" {
		var err error
		if secret, err = readSecret(c.ClientSecretFile); err != nil {
			return nil, err
		}
	}
	return &oauth2.Config{ClientID: c.ClientID, ClientSecret: secret, Scopes: c.Scopes,
		Endpoint: oauth2.Endpoint{TokenURL: c.TokenURL, DeviceAuthURL: c.DeviceAuthURL}}, nil
}

// readSecret reads a client secret file: its content without one final
// newline; empty is an error.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("oauth2: client_secret_file: %w", err)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return "", fmt.Errorf("oauth2: client_secret_file %s is empty", path)
	}
	return s, nil
}

// serviceAccountKey is what a Google service account's JSON key holds
// that the assertion needs.
type serviceAccountKey struct {
	Type        string `json:"type"`
	ClientEmail string `json:"client_email"`
	PrivateKey  string `json:"private_key"`
	KeyID       string `json:"private_key_id"`
	TokenURI    string `json:"token_uri"`
}

// ReadServiceAccount checks a service account key file and returns its
// account's address.
func ReadServiceAccount(path string) (string, error) {
	k, err := readServiceAccount(path)
	if err != nil {
		return "", err
	}
	return k.ClientEmail, nil
}

func readServiceAccount(path string) (*serviceAccountKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("oauth2: service_account_file: %w", err)
	}
	var k serviceAccountKey
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("oauth2: service_account_file %s: not a service account key (JSON): %v", path, err)
	}
	if k.Type != "service_account" || k.ClientEmail == "" || k.PrivateKey == "" {
		return nil, fmt.Errorf("oauth2: service_account_file %s: not a service account key (wants type service_account, client_email, private_key)", path)
	}
	block, _ := pem.Decode([]byte(k.PrivateKey))
	if block == nil {
		return nil, fmt.Errorf("oauth2: service_account_file %s: private_key is not PEM", path)
	}
	if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
		if _, err1 := x509.ParsePKCS1PrivateKey(block.Bytes); err1 != nil {
			return nil, fmt.Errorf("oauth2: service_account_file %s: private_key: %v", path, err)
		}
	}
	return &k, nil
}

func serviceAccount(c Config, user string) (*jwt.Config, error) {
	k, err := readServiceAccount(c.ServiceAccountFile)
	if err != nil {
		return nil, err
	}
	tokenURL := c.TokenURL
	if tokenURL == "" {
		tokenURL = k.TokenURI
	}
	if tokenURL == "" {
		return nil, fmt.Errorf("oauth2: service_account_file %s names no token_uri: set token_url", c.ServiceAccountFile)
	}
	return &jwt.Config{Email: k.ClientEmail, PrivateKey: []byte(k.PrivateKey), PrivateKeyID: k.KeyID,
		Scopes: c.Scopes, TokenURL: tokenURL, Subject: user}, nil
}

// storedToken is a refresh token file.
type storedToken struct {
	RefreshToken string    `json:"refresh_token"`
	Saved        time.Time `json:"saved"`
}

func readRefreshToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%w: no refresh token yet (%s): run smimed oauth2 login --account NAME", ErrGrant, path)
	}
	if err != nil {
		return "", fmt.Errorf("oauth2: refresh token: %w", err)
	}
	var st storedToken
	if err := json.Unmarshal(b, &st); err != nil || st.RefreshToken == "" {
		return "", fmt.Errorf("oauth2: refresh token file %s is damaged: run smimed oauth2 login again", path)
	}
	return st.RefreshToken, nil
}

// SaveRefreshToken writes a refresh token file, mode 0600, atomically.
func SaveRefreshToken(path, rt string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("oauth2: %w", err)
	}
	b, err := json.Marshal(storedToken{RefreshToken: rt, Saved: time.Now().UTC()})
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".token-*")
	if err != nil {
		return fmt.Errorf("oauth2: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("oauth2: writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("oauth2: %w", err)
	}
	return nil
}

// DeviceLogin runs the device authorization grant (RFC 8628) for c:
// show is called with the URL and the code the user enters there; it
// waits until the user has agreed (or ctx ends), then keeps the refresh
// token at tokenFile.
func DeviceLogin(ctx context.Context, c Config, tokenFile string, show func(url, code string, expires time.Time)) error {
	oc, err := deviceConfig(c)
	if err != nil {
		return err
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, &http.Client{Timeout: requestTimeout})
	da, err := oc.DeviceAuth(ctx)
	if err != nil {
		return fmt.Errorf("oauth2: device authorization: %w", describe(err))
	}
	uri := da.VerificationURIComplete
	if uri == "" {
		uri = da.VerificationURI
	}
	show(uri, da.UserCode, da.Expiry)
	tok, err := oc.DeviceAccessToken(ctx, da)
	if err != nil {
		return fmt.Errorf("oauth2: waiting for the login: %w", describe(err))
	}
	if tok.RefreshToken == "" {
		return errors.New("oauth2: the token endpoint gave no refresh token (ask for offline access in scope, e.g. offline_access)")
	}
	return SaveRefreshToken(tokenFile, tok.RefreshToken)
}
