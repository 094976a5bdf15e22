package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestVersionStamped: a binary built as the Makefile builds it names the
// revision git reports for the checkout.
func TestVersionStamped(t *testing.T) {
	rev, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout (git rev-parse: %v): the revision cannot be checked", err)
	}
	bin := filepath.Join(t.TempDir(), "smimed")
	if out, err := exec.Command("go", "build", "-trimpath", "-buildvcs=auto", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, arg := range []string{"version", "--version"} {
		out, err := exec.Command(bin, arg).Output()
		if err != nil {
			t.Fatalf("smimed %s: %v", arg, err)
		}
		if !strings.HasPrefix(string(out), "smimed ") || !strings.Contains(string(out), strings.TrimSpace(string(rev))) {
			t.Errorf("smimed %s = %q, want the revision %s", arg, out, rev)
		}
	}
}
