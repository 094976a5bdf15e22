package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
	"github.com/smimed/smimed/harvest"
)

// certs import on the command line: a certificate of a CA nobody trusts
// is refused (exit 1, naming its fingerprint and --trust), imported with
// --trust for the --email given, and listed as imported+trusted.
func TestCertsImportCommand(t *testing.T) {
	testenv.NeedOpenSSL(t)
	ca := testenv.NewCA(t, "Unknown Root", "")
	cert, _ := ca.Issue(t, "dora", "dora@partner.example", time.Now().Add(-time.Hour))
	fp := testenv.OpenSSLFingerprint(t, cert)
	path := filepath.Join(t.TempDir(), "smimed.db")
	st, err := harvest.OpenStore(path, false)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	code, out, errOut := certsRun(path, "import", cert)
	if code != exitFailed || !strings.Contains(errOut, fp) || !strings.Contains(errOut, "--trust") {
		t.Errorf("import of an untrusted certificate: exit %d, %q %q; want 1 naming %s and --trust", code, out, errOut, fp)
	}
	code, _, errOut = certsRun(path, "import", "--email", "eve@partner.example", "--trust", cert)
	if code != exitFailed || !strings.Contains(errOut, "does not name the address") {
		t.Errorf("import for an address it lacks: exit %d, %q", code, errOut)
	}
	code, out, errOut = certsRun(path, "import", "--email", "Dora@partner.example", "--trust", cert)
	if code != exitOK || !strings.Contains(out, "imported "+fp) || !strings.Contains(out, "dora@partner.example") {
		t.Fatalf("import --trust: exit %d, %q %q", code, out, errOut)
	}
	code, out, _ = certsRun(path, "list")
	if code != exitOK || !strings.Contains(out, fp[:16]) || !strings.Contains(out, "imported+trusted+pref") {
		t.Errorf("list after the import: exit %d\n%s", code, out)
	}
	if code, _, _ := certsRun(path, "import"); code != exitUsage {
		t.Errorf("import without a file: exit %d, want 2", code)
	}
}
