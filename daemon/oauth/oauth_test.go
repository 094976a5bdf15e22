package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestSource: a token is reused until a minute before it expires, a fresh
// one is fetched when asked (once a second at most), a refused grant is an
// ErrGrant without the endpoint's body and is not asked again for a while.
func TestSource(t *testing.T) {
	var asked atomic.Int32
	var refuse atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := asked.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if refuse.Load() {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"invalid_client","error_description":"bad secret","echo":"the-client-secret"}`))
			return
		}
		w.Write([]byte(`{"access_token":"tok` + string(rune('0'+n)) + `","token_type":"Bearer","expires_in":3600}`))
	}))
	defer srv.Close()
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("the-client-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{TokenURL: srv.URL, ClientID: "app", ClientSecretFile: secret, Scopes: []string{"imap"}}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s.now = func() time.Time { return now }
	ctx := context.Background()
	get := func(fresh bool) string {
		t.Helper()
		tok, err := s.Token(ctx, fresh)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	if a, b := get(false), get(false); a != "tok1" || b != "tok1" {
		t.Errorf("tokens %q, %q: want the first reused", a, b)
	}
	if tok := get(true); tok != "tok1" {
		t.Errorf("fresh within a second of the fetch: %q, want the one just fetched", tok)
	}
	now = now.Add(2 * time.Second)
	if tok := get(true); tok != "tok2" {
		t.Errorf("fresh: %q, want a new one", tok)
	}
	// The server's clock: the token expires in an hour from its issue; 59
	// minutes later it is replaced.
	now = now.Add(59*time.Minute + time.Second)
	if tok := get(false); tok != "tok3" {
		t.Errorf("a minute before expiry: %q, want a new one", tok)
	}

	refuse.Store(true)
	now = now.Add(2 * time.Second)
	_, err = s.Token(ctx, true)
	if !errors.Is(err, ErrGrant) || !strings.Contains(err.Error(), "invalid_client") || strings.Contains(err.Error(), "the-client-secret") {
		t.Fatalf("refused: %v; want ErrGrant with invalid_client and nothing of the body", err)
	}
	before := asked.Load()
	for range 5 {
		s.Token(ctx, true)
	}
	if asked.Load() != before {
		t.Errorf("asked %d more times within the pause after a refusal", asked.Load()-before)
	}
	now = now.Add(refusedPause + time.Second)
	refuse.Store(false)
	if tok := get(false); tok == "" {
		t.Error("no token after the pause")
	}
}

// TestServiceAccountFile: a key file that is not a service account's is
// refused with what is wrong.
func TestServiceAccountFile(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"not json":   "hello",
		"wrong type": `{"type":"authorized_user","client_email":"a@b","private_key":"x"}`,
		"bad key":    `{"type":"service_account","client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}`,
	} {
		p := filepath.Join(dir, "sa.json")
		os.WriteFile(p, []byte(content), 0o600)
		if _, err := New(Config{ServiceAccountFile: p, Scopes: []string{"s"}}, "user@example.com", ""); err == nil || !strings.Contains(err.Error(), "service_account_file") {
			t.Errorf("%s: %v, want an error naming service_account_file", name, err)
		}
	}
}
