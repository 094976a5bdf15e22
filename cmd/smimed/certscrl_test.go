package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest"
)

// TestCertsCRL: `certs crl import` keeps a CRL made by openssl ca for a
// CA of trust.ca_files, on the state file itself (no daemon), and `certs
// crl list` shows it with what openssl says of it; a CRL of an unknown CA
// is refused with exit 1.
func TestCertsCRL(t *testing.T) {
	cfgPath := writeConfig(t, "")
	dir := filepath.Dir(cfgPath)
	ca := testenv.NewCA(t, "Air-gapped CA", "http://192.0.2.1/ca.crl")
	alice, _ := ca.Issue(t, "alice", "alice@partner.example", time.Now().Add(-time.Hour))
	ca.Revoke(t, alice, "keyCompromise", time.Time{})
	ca.CRL(t, 7)
	ca.AddTo(t, filepath.Join(dir, "ca-bundle.pem"))
	st, err := harvest.OpenStore(filepath.Join(dir, "state", "smimed.db"), false) // as after a first run
	if err != nil {
		t.Fatal(err)
	}
	st.Close()

	other := testenv.NewCA(t, "Unknown CA", "")
	other.CRL(t, 7)
	if code, _, errOut := runCmd(nil, "certs", "--config", cfgPath, "crl", "import", filepath.Join(other.Dir, "ca.crl.pem")); code != exitFailed || !strings.Contains(errOut, "Unknown CA") {
		t.Errorf("import of an unknown CA's CRL: exit %d, %q; want 1 naming its issuer", code, errOut)
	}
	code, out, errOut := runCmd(nil, "certs", "--config", cfgPath, "crl", "import", filepath.Join(ca.Dir, "ca.crl.pem"))
	if code != exitOK || !strings.Contains(out, "Air-gapped CA") || !strings.Contains(out, "1 revoked") {
		t.Fatalf("crl import: exit %d, %q, %q", code, out, errOut)
	}
	code, out, errOut = runCmd(nil, "certs", "--config", cfgPath, "crl", "list", "--json")
	if code != exitOK {
		t.Fatalf("crl list --json: exit %d, %s", code, errOut)
	}
	var in struct {
		Issuer     string    `json:"issuer"`
		Entries    int       `json:"entries"`
		NextUpdate time.Time `json:"next_update"`
		Source     string    `json:"source"`
	}
	if err := json.Unmarshal([]byte(out), &in); err != nil {
		t.Fatalf("crl list --json: %v\n%s", err, out)
	}
	// What openssl says of its CRL.
	field := strings.TrimSpace(string(testenv.OpenSSL(t, "", "crl", "-in", filepath.Join(ca.Dir, "ca.crl.pem"), "-noout", "-nextupdate")))
	next, _ := strings.CutPrefix(field, "nextUpdate=")
	wantNext, err := time.Parse("Jan _2 15:04:05 2006 MST", next)
	if err != nil {
		t.Fatalf("openssl crl -nextupdate: %q: %v", next, err)
	}
	if in.Entries != 1 || in.Source != "import" || !in.NextUpdate.Equal(wantNext) || !strings.Contains(in.Issuer, "Air-gapped CA") {
		t.Errorf("crl list --json = %+v; want 1 entry, imported, next update %v (openssl)", in, wantNext)
	}
	code, out, _ = runCmd(nil, "certs", "--config", cfgPath, "crl", "list")
	if code != exitOK || !strings.Contains(out, "Air-gapped CA") || !strings.Contains(out, "import") {
		t.Errorf("crl list: exit %d\n%s", code, out)
	}
}
