package servertest

// The servers' own packages are never installed: cyrus-imapd, courier-imap
// and dovecot-imapd all provide imap-server and conflict in Debian, so
// installing one would remove Dovecot (and the tests that use it). Their
// .deb is fetched with apt-get download and unpacked into a cache that
// every test process shares; only their dependencies (cyrus-common,
// courier-base, ...) are installed, by .ci/test-deps (make test as root,
// make test-deps) or by the administrator.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// cacheDir holds the downloaded packages and their unpacked trees. It is
// shared by the test binaries that run at the same time (go test ./...),
// which take an exclusive lock on it while they download or unpack.
func cacheDir() string {
	if d := os.Getenv("SMIMED_SERVERTEST_CACHE"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "smimed-servertest")
}

// installedVersion is dpkg's version of an installed package, "" when it is
// not installed.
func installedVersion(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Status}\t${Version}", pkg).Output()
	if err != nil {
		return ""
	}
	status, version, _ := strings.Cut(string(out), "\t")
	if !strings.HasSuffix(status, " installed") {
		return ""
	}
	return version
}

// unpacked returns the root of pkg's unpacked tree, at version when it is
// not "", downloading and unpacking it the first time.
func unpacked(pkg, version string) (string, error) {
	dir := cacheDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("servertest: cache %s: %w", dir, err)
	}
	// The servers' users (cyrus, courier) must reach the programs.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("servertest: cache %s: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("servertest: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("servertest: lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	want := pkg
	if version != "" {
		want = pkg + "=" + version
	}
	debs := filepath.Join(dir, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return "", fmt.Errorf("servertest: %w", err)
	}
	deb, err := findDeb(debs, pkg, version)
	if err != nil {
		return "", err
	}
	if deb == "" {
		out, err := apt(debs, "download", "-q", want)
		if err != nil {
			// A stale package list: update once and try again.
			if uout, uerr := apt(debs, "update", "-q"); uerr != nil {
				return "", fmt.Errorf("servertest: apt-get download %s: %v: %s; apt-get update: %v: %s", want, err, lastLine(out), uerr, lastLine(uout))
			}
			if out, err = apt(debs, "download", "-q", want); err != nil {
				return "", fmt.Errorf("servertest: apt-get download %s: %v: %s", want, err, lastLine(out))
			}
		}
		if deb, err = findDeb(debs, pkg, version); err != nil || deb == "" {
			return "", fmt.Errorf("servertest: apt-get download %s left no .deb in %s (%v)", want, debs, err)
		}
	}
	root := filepath.Join(dir, strings.TrimSuffix(filepath.Base(deb), ".deb"))
	if _, err := os.Stat(filepath.Join(root, ".unpacked")); err == nil {
		return root, nil
	}
	os.RemoveAll(root)
	if out, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
		return "", fmt.Errorf("servertest: dpkg-deb -x %s: %v: %s", deb, err, lastLine(out))
	}
	if err := os.Chmod(root, 0o755); err != nil {
		return "", fmt.Errorf("servertest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(root, ".unpacked"), nil, 0o644); err != nil {
		return "", fmt.Errorf("servertest: %w", err)
	}
	return root, nil
}

// findDeb is the downloaded .deb of pkg (at version, when given) in dir,
// "" when there is none. apt-get download names it
// NAME_VERSION_ARCH.deb with the epoch's ':' written "%3a".
func findDeb(dir, pkg, version string) (string, error) {
	pattern := pkg + "_*.deb"
	if version != "" {
		pattern = pkg + "_" + strings.ReplaceAll(version, ":", "%3a") + "_*.deb"
	}
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil || len(m) == 0 {
		return "", err
	}
	return m[len(m)-1], nil
}

// apt runs apt-get in dir (where download puts the file).
func apt(dir string, args ...string) ([]byte, error) {
	cmd := exec.Command("apt-get", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	return cmd.CombinedOutput()
}

func lastLine(out []byte) string {
	out = bytes.TrimSpace(out)
	if i := bytes.LastIndexByte(out, '\n'); i >= 0 {
		out = out[i+1:]
	}
	return string(out)
}

// missing lists the programs of paths that do not exist.
func missing(paths ...string) error {
	var errs []error
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
