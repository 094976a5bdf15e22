package daemon

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/daemon/testenv"
)

// An organisation key under 1,024 bits (made by OpenSSL) loads, with one
// warning naming its config key, file and size; the service logs it in
// one line that carries no key material.
func TestLoadKeysWarnsAboutSmallRSAKey(t *testing.T) {
	dir := t.TempDir()
	testenv.OpenSSL(t, dir, "genrsa", "-out", "old.key", "768")
	testenv.OpenSSL(t, dir, "req", "-x509", "-new", "-key", "old.key", "-subj", "/CN=old", "-days", "30", "-out", "old.crt")
	keyFile := filepath.Join(dir, "old.key")
	if err := os.Chmod(keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{Path: "smimed.toml", Keys: []config.Key{{CertFile: filepath.Join(dir, "old.crt"), KeyFile: keyFile}}}
	keys, warnings, err := cfg.LoadKeysWarn()
	if err != nil || len(keys) != 1 {
		t.Fatalf("LoadKeysWarn() = %d keys, %v", len(keys), err)
	}
	want := fmt.Sprintf("keys[0]: key file %s: RSA key of 768 bits (under 1024): loaded to decrypt old mail only; replace it for new mail", keyFile)
	if len(warnings) != 1 || warnings[0] != want {
		t.Fatalf("warnings = %q, want [%q]", warnings, want)
	}
	var logs bytes.Buffer
	(&loaded{crypto: &config.Crypto{Warnings: warnings}}).warn(slog.New(slog.NewTextHandler(&logs, nil)))
	if n := strings.Count(logs.String(), "\n"); n != 1 || !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "768 bits") {
		t.Errorf("log = %q, want one WARN line naming the size", logs.String())
	}
	// No key material: none of the key file's base64 lines appear.
	data, _ := os.ReadFile(keyFile)
	block, _ := pem.Decode(data)
	for _, line := range strings.Split(string(pem.EncodeToMemory(block)), "\n") {
		if len(line) > 16 && !strings.HasPrefix(line, "-----") && strings.Contains(logs.String(), line[:16]) {
			t.Errorf("log line holds key material %q", line[:16])
		}
	}
}
