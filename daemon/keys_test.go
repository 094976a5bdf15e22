package daemon

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smimed/smimed/daemon/config"
)

// An organisation key under 1,024 bits (made by OpenSSL) loads, with one
// warning naming its config key, file and size; the service logs it in
// one line that carries no key material.
func TestLoadKeysWarnsAboutSmallRSAKey(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is needed for this test")
	}
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("openssl", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	run("genrsa", "-out", "old.key", "768")
	run("req", "-x509", "-new", "-key", "old.key", "-subj", "/CN=old", "-days", "30", "-out", "old.crt")
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
