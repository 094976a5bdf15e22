package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
)

// check-config loads [[signing]]: an identity that can sign is listed
// with its certificate's fingerprint (as openssl computes it); one whose
// certificate does not carry the listed address is a problem (exit 2)
// naming the key.
func TestCheckConfigSigning(t *testing.T) {
	testenv.NeedOpenSSL(t)
	ca := testenv.NewCA(t, "Org CA", "")
	cert, key := ca.Issue(t, "ceo", "ceo@org.example", time.Now().Add(-time.Hour))
	fp := testenv.OpenSSLFingerprint(t, cert)
	signing := func(addr string) string {
		return fmt.Sprintf("[[signing]]\naddresses = [%q]\ncert_file = %q\nkey_file = %q\n", addr, cert, key)
	}
	code, out, errOut := runCmd(nil, "check-config", "--config", writeConfig(t, signing("ceo@org.example")))
	if code != exitOK || !strings.Contains(out, "signing[0]: signs for ceo@org.example with "+fp) {
		t.Errorf("check-config with a good identity: exit %d\n%s%s\nwant it listed with %s", code, out, errOut, fp)
	}
	code, out, errOut = runCmd(nil, "check-config", "--config", writeConfig(t, signing("cfo@org.example")))
	if code != exitUsage || !strings.Contains(errOut, "signing[0].addresses[0]: cfo@org.example is not an address of the certificate") {
		t.Errorf("check-config with an address the certificate lacks: exit %d\n%s%s", code, out, errOut)
	}
}
