package timestamp

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// OpenSSLVerify asks `openssl ts -verify` for its verdict on a
// TimeStampResp over data, with caPEM as the trust anchors, chainPEM as
// untrusted certificates and at as the verification time (-attime: the
// token's genTime, so that an expired TSA certificate is judged as it
// was when it signed). It returns whether openssl said "Verification:
// OK", and otherwise what it printed (or why it could not run).
func OpenSSLVerify(ctx context.Context, data, tsr, caPEM, chainPEM []byte, at time.Time) (bool, string) {
	dir, err := os.MkdirTemp("", "smimed-ts-*")
	if err != nil {
		return false, err.Error()
	}
	defer os.RemoveAll(dir)
	files := map[string][]byte{"data": data, "r.tsr": tsr, "ca.pem": caPEM, "chain.pem": chainPEM}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
			return false, err.Error()
		}
	}
	args := []string{"ts", "-verify", "-data", "data", "-in", "r.tsr", "-CAfile", "ca.pem", "-attime", strconv.FormatInt(at.Unix(), 10)}
	if len(bytes.TrimSpace(chainPEM)) > 0 {
		args = append(args, "-untrusted", "chain.pem")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "openssl", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	text := strings.TrimSpace(string(out))
	if err == nil && strings.Contains(text, "Verification: OK") {
		return true, ""
	}
	if i := strings.LastIndexByte(text, '\n'); i >= 0 && len(text) > 300 {
		text = text[:300]
	}
	if text == "" && err != nil {
		text = err.Error()
	}
	return false, strings.ReplaceAll(text, "\n", "; ")
}
