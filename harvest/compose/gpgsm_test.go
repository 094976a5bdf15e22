package compose

import (
	"bytes"
	"strings"
	"testing"

	"github.com/smimed/smimed/daemon/testenv"
)

// gpgsm (GnuPG) verifies our detached signatures.
func TestGPGSMVerify(t *testing.T) {
	p := testPKI(t)
	g := testenv.NewGPGSM(t, []string{p.root.Cert}, p.sub.Cert)
	dir := t.TempDir()
	for _, c := range signCases {
		t.Run(c.name, func(t *testing.T) {
			_, content, sig := splitSigned(t, p.signTest(t, c.signer, c.pss, dir))
			sp, cp := write(t, dir, "sig.p7s", sig), write(t, dir, "content", content)
			log, err := g.Verify(t, sp, cp)
			if err != nil || !strings.Contains(string(log), "[GNUPG:] GOODSIG") || !strings.Contains(string(log), "TRUST_FULLY") {
				t.Fatalf("gpgsm --verify: %v\n%s", err, log)
			}
			log, err = g.Verify(t, sp, write(t, dir, "bad", append(bytes.Clone(content), 'x')))
			if err == nil || strings.Contains(string(log), "GOODSIG") {
				t.Fatalf("gpgsm verified changed content:\n%s", log)
			}
		})
	}
}
