package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// TokenServer is an OAuth2 authorization server of the test's own on
// loopback: it issues short-lived access tokens at /token by the client
// credentials grant (RFC 6749 4.4; client authentication by HTTP Basic or
// form fields), by the device authorization grant (RFC 8628: /device, then
// polling /token until Approve) and by refresh tokens (which it rotates),
// and answers token introspection (RFC 7662) at /introspect, as Dovecot's
// oauth2 passdb asks it.
type TokenServer struct {
	*httptest.Server
	TTL time.Duration // lifetime of the tokens issued

	mu       sync.Mutex
	clientID string
	secret   string
	tokens   map[string]time.Time // token → expiry
	issued   int
	asked    int // token requests, refused ones too
	approved bool
	refresh  map[string]bool // refresh tokens valid now
}

// StartTokenServer starts a token server for one client.
func StartTokenServer(t testing.TB, clientID, secret string, ttl time.Duration) *TokenServer {
	t.Helper()
	ts := &TokenServer{TTL: ttl, clientID: clientID, secret: secret, tokens: map[string]time.Time{}, refresh: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /device", ts.device)
	mux.HandleFunc("POST /token", ts.token)
	mux.HandleFunc("POST /introspect", ts.introspect)
	ts.Server = httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return ts
}

func (ts *TokenServer) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	grant := r.PostForm.Get("grant_type")
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.asked++
	switch {
	case id != ts.clientID || (grant == "client_credentials" || secret != "") && secret != ts.secret:
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client", "error_description": "client authentication failed"})
		return
	case grant == "client_credentials":
	case grant == "urn:ietf:params:oauth:grant-type:device_code":
		if !ts.approved {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "authorization_pending"})
			return
		}
		ts.approved = false
	case grant == "refresh_token":
		if !ts.refresh[r.PostForm.Get("refresh_token")] {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "refresh token revoked"})
			return
		}
		delete(ts.refresh, r.PostForm.Get("refresh_token")) // rotated
	default:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	tok := randomToken()
	ts.tokens[tok] = time.Now().Add(ts.TTL)
	ts.issued++
	answer := map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": int(ts.TTL.Seconds())}
	if grant != "client_credentials" {
		rt := randomToken()
		ts.refresh[rt] = true
		answer["refresh_token"] = rt
	}
	writeJSON(w, http.StatusOK, answer)
}

func randomToken() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// device starts a device authorization (RFC 8628 3.1-3.2).
func (ts *TokenServer) device(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	if r.PostForm.Get("client_id") != ts.clientID {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"device_code": randomToken(), "user_code": "WDJB-MJHT",
		"verification_uri": ts.URL + "/activate", "expires_in": 600, "interval": 1})
}

// Approve lets the device authorization under way through, as the user
// would after entering the code.
func (ts *TokenServer) Approve() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.approved = true
}

// RevokeRefreshTokens makes every refresh token invalid.
func (ts *TokenServer) RevokeRefreshTokens() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	clear(ts.refresh)
}

func (ts *TokenServer) introspect(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	ts.mu.Lock()
	exp, ok := ts.tokens[r.PostForm.Get("token")]
	ts.mu.Unlock()
	if !ok || time.Now().After(exp) {
		writeJSON(w, http.StatusOK, map[string]any{"active": false})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"active": true, "username": "app"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// Issued is how many tokens the server issued.
func (ts *TokenServer) Issued() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.issued
}

// RevokeAll makes every token issued so far inactive.
func (ts *TokenServer) RevokeAll() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	clear(ts.tokens)
}

// SetSecret changes the client's secret: the old one is refused from now
// on (a revoked client secret).
func (ts *TokenServer) SetSecret(secret string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.secret = secret
}

// Asked is how many token requests came, refused ones too.
func (ts *TokenServer) Asked() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.asked
}
