package systemd_test

// These tests check the service files the way systemd and an admin see
// them: systemd-analyze rates and verifies the unit, `make install` lays
// the files out, systemd-sysusers and systemd-tmpfiles apply their entries
// to a scratch root, and `smimed check-config` accepts the example
// configuration, which must name every key the daemon package knows.
// systemd-analyze comes with Debian's systemd package (.ci/test-deps lists
// it); without it those tests skip and say so.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/smimed/smimed/daemon/testenv"
)

// configSources are the Go files, as globs relative to the repository
// root, whose toml:"…" tags are the configuration's keys (test files are
// left out). A glob that matches nothing, such as daemon/config/*.go
// before the configuration moves there, is no error.
var configSources = []string{"daemon/config/*.go"}

// configReference is the user's manual for the configuration, relative to
// the repository root: the reference that must name every key.
const configReference = "docs/configuration.md"

// maxExposure is the highest overall exposure level
// `systemd-analyze security` may give the unit.
const maxExposure = 1.5

// openItems are the security checks the unit is allowed to fail, each
// with the reason; any other failing check is a regression.
var openItems = map[string]string{
	"PrivateNetwork":                        "smimed talks IMAP to other hosts",
	"RestrictAddressFamilies_AF_INET_INET6": "IMAP and the metrics port are TCP",
	"RestrictAddressFamilies_AF_UNIX":       "sd_notify, the journal and the control socket",
	"IPAddressDeny":                         "the IMAP servers' addresses are the admin's to pin (a drop-in)",
	"PrivateUsers":                          "would hide group smimed's admins from the control socket's peer check",
	"RootDirectoryOrRootImage":              "a chroot buys little over ProtectSystem=strict for one static binary",
	"DeviceAllow":                           "char-rtc:r, which ProtectClock=yes itself adds",
}

func goCmd() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not found (Debian package systemd; sudo make test-deps installs it): %v", name, err)
	}
	return p
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	buildOut  []byte
)

// smimedBinary builds smimed once for all tests.
func smimedBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "smimed-systemd-test-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "smimed")
		cmd := exec.Command(goCmd(), "build", "-trimpath", "-o", builtBin, "./cmd/smimed")
		cmd.Dir = testenv.RepoRoot(t)
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build: %v\n%s", buildErr, buildOut)
	}
	return builtBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}

// analyze runs systemd-analyze without pager or colours.
func analyze(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(needTool(t, "systemd-analyze"), append([]string{"--no-pager"}, args...)...)
	cmd.Env = append(os.Environ(), "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

var overallRE = regexp.MustCompile(`Overall exposure level for smimed\.service: ([0-9]+\.[0-9])`)

func TestSecurityExposure(t *testing.T) {
	out, errOut, err := analyze(t, "security", "--offline=yes", "smimed.service")
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s%s", err, out, errOut)
	}
	m := overallRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: no overall exposure line in\n%s%s", out, errOut)
	}
	level, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("overall exposure level: %.1f", level)
	if level > maxExposure {
		t.Errorf("exposure level = %.1f, want <= %.1f\n%s", level, maxExposure, out)
	}

	// Every check the unit fails must be one of the known open ones.
	js, errOut, err := analyze(t, "security", "--offline=yes", "--json=short", "smimed.service")
	if err != nil {
		t.Fatalf("systemd-analyze security --json: %v\n%s", err, errOut)
	}
	var items []struct {
		Set      bool    `json:"set"`
		Name     string  `json:"name"`
		Field    string  `json:"json_field"`
		Desc     string  `json:"description"`
		Exposure *string `json:"exposure"`
	}
	if err := json.Unmarshal([]byte(js), &items); err != nil {
		t.Fatalf("systemd-analyze security --json: %v\n%s", err, js)
	}
	if len(items) < 50 {
		t.Fatalf("systemd-analyze security --json: %d checks, want the full list", len(items))
	}
	for _, it := range items {
		if it.Exposure == nil {
			continue
		}
		x, err := strconv.ParseFloat(*it.Exposure, 64)
		if err != nil || x == 0 {
			continue
		}
		if why, ok := openItems[it.Field]; ok {
			t.Logf("open: %s (%s): %s", it.Name, *it.Exposure, why)
			continue
		}
		t.Errorf("security check %s fails (%s): %s", it.Name, *it.Exposure, it.Desc)
	}
}

func TestVerify(t *testing.T) {
	needTool(t, "systemd-analyze")
	// verify insists that ExecStart= exists and is executable, and
	// --root= would need a whole unit tree: so a copy of the unit runs
	// the freshly built binary instead of /usr/bin/smimed.
	bin := smimedBinary(t)
	unit, err := os.ReadFile("smimed.service")
	if err != nil {
		t.Fatal(err)
	}
	const execStart = "\nExecStart=/usr/bin/smimed "
	if !bytes.Contains(unit, []byte(execStart)) {
		t.Fatalf("smimed.service has no %q line", strings.TrimSpace(execStart))
	}
	unit = bytes.Replace(unit, []byte(execStart), []byte("\nExecStart="+bin+" "), 1)
	p := filepath.Join(t.TempDir(), "smimed.service")
	if err := os.WriteFile(p, unit, 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := analyze(t, "verify", "--man=no", "--recursive-errors=no", p)
	if err != nil {
		t.Errorf("systemd-analyze verify: %v", err)
	}
	// Any line about our unit is a finding. Lines about other units are
	// the host's business (verify loads the targets ours names); they are
	// logged, not failed.
	for _, l := range strings.Split(strings.TrimSpace(out+errOut), "\n") {
		switch {
		case l == "":
		case strings.Contains(l, "smimed"):
			t.Errorf("systemd-analyze verify: %s", l)
		default:
			t.Logf("systemd-analyze verify (another unit): %s", l)
		}
	}
}

// installedFiles lists the regular files under root with their modes.
func installedFiles(t *testing.T, root string) map[string]fs.FileMode {
	t.Helper()
	files := map[string]fs.FileMode{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		files["/"+rel] = info.Mode()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestMakeInstall(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skipf("make not found: %v", err)
	}
	src, err := os.ReadFile("smimed.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		prefix string // "" = the Makefile's default
		bin    string
	}{
		{"/usr/local", "/usr/local/bin/smimed"},
		{"", "/usr/bin/smimed"},
	} {
		t.Run("PREFIX="+tc.prefix, func(t *testing.T) {
			tmp := t.TempDir()
			dest := filepath.Join(tmp, "root")
			// An admin's configuration is never touched.
			conf := filepath.Join(dest, "etc/smimed/smimed.toml")
			if err := os.MkdirAll(filepath.Dir(conf), 0o750); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(conf, []byte("# mine\n"), 0o640); err != nil {
				t.Fatal(err)
			}
			args := []string{"-C", testenv.RepoRoot(t), "install", "DESTDIR=" + dest, "GO=" + goCmd(), "INSTALL_BIN=" + filepath.Join(tmp, "smimed")}
			if tc.prefix != "" {
				args = append(args, "PREFIX="+tc.prefix)
			}
			if out, err := exec.Command("make", args...).CombinedOutput(); err != nil {
				t.Fatalf("make install: %v\n%s", err, out)
			}
			p := tc.prefix
			if p == "" {
				p = "/usr"
			}
			want := map[string]fs.FileMode{
				p + "/bin/smimed":                        0o755,
				p + "/lib/systemd/system/smimed.service": 0o644,
				p + "/lib/sysusers.d/smimed.conf":        0o644,
				p + "/lib/tmpfiles.d/smimed.conf":        0o644,
				"/etc/smimed/smimed.toml.example":        0o644,
				"/etc/smimed/smimed.toml":                0o640,
			}
			got := installedFiles(t, dest)
			for name, mode := range want {
				if m, ok := got[name]; !ok {
					t.Errorf("make install: %s missing", name)
				} else if m.Perm() != mode || !m.IsRegular() {
					t.Errorf("make install: %s mode %v, want %v", name, m, mode)
				}
			}
			for name := range got {
				if _, ok := want[name]; !ok {
					t.Errorf("make install: unexpected file %s", name)
				}
			}
			if b, err := os.ReadFile(conf); err != nil || string(b) != "# mine\n" {
				t.Errorf("make install changed an existing smimed.toml: %q, %v", b, err)
			}
			for _, pair := range [][2]string{
				{"smimed.sysusers", p + "/lib/sysusers.d/smimed.conf"},
				{"smimed.tmpfiles", p + "/lib/tmpfiles.d/smimed.conf"},
				{"smimed.toml.example", "/etc/smimed/smimed.toml.example"},
			} {
				a, _ := os.ReadFile(pair[0])
				b, _ := os.ReadFile(filepath.Join(dest, pair[1]))
				if !bytes.Equal(a, b) {
					t.Errorf("installed %s differs from systemd/%s", pair[1], pair[0])
				}
			}

			// The unit differs from the source in ExecStart= only.
			unit, err := os.ReadFile(filepath.Join(dest, p, "lib/systemd/system/smimed.service"))
			if err != nil {
				t.Fatal(err)
			}
			wantExec := "ExecStart=" + tc.bin + " run --config /etc/smimed/smimed.toml"
			srcLines, gotLines := strings.Split(string(src), "\n"), strings.Split(string(unit), "\n")
			if len(srcLines) != len(gotLines) {
				t.Fatalf("installed unit has %d lines, source %d", len(gotLines), len(srcLines))
			}
			for i := range srcLines {
				switch {
				case strings.HasPrefix(srcLines[i], "ExecStart="):
					if gotLines[i] != wantExec {
						t.Errorf("installed unit: %q, want %q", gotLines[i], wantExec)
					}
				case srcLines[i] != gotLines[i]:
					t.Errorf("installed unit line %d = %q, want %q", i+1, gotLines[i], srcLines[i])
				}
			}

			out, err := exec.Command(filepath.Join(dest, p, "bin/smimed"), "help").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "smimed run") {
				t.Errorf("installed smimed help: %v\n%s", err, out)
			}
		})
	}
}

// TestMakeInstallWithoutGo: make install only copies the binary make built
// (sudo make install, where root's PATH has no Go); with no binary and no
// Go it stops, says to run make first, and installs nothing.
func TestMakeInstallWithoutGo(t *testing.T) {
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "smimed")
	dest := filepath.Join(tmp, "root")
	install := func() (string, error) {
		out, err := exec.Command("make", "-C", testenv.RepoRoot(t), "install", "DESTDIR="+dest, "GO="+filepath.Join(tmp, "no-go"), "INSTALL_BIN="+bin).CombinedOutput()
		return string(out), err
	}
	if out, err := install(); err == nil || !strings.Contains(out, "run make first") {
		t.Errorf("make install with neither binary nor Go: %v, want a failure saying to run make first\n%s", err, out)
	}
	if fileExists(dest) {
		t.Errorf("make install with neither binary nor Go installed files under %s", dest)
	}
	if out, err := exec.Command("make", "-C", testenv.RepoRoot(t), "build", "GO="+goCmd(), "INSTALL_BIN="+bin).CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	if out, err := install(); err != nil {
		t.Fatalf("make install of a built binary without Go: %v\n%s", err, out)
	}
	a, _ := os.ReadFile(bin)
	b, err := os.ReadFile(filepath.Join(dest, "usr/bin/smimed"))
	if err != nil || !bytes.Equal(a, b) {
		t.Errorf("make install did not install the binary make built (%v)", err)
	}
}

// configKeys are the TOML keys the daemon decodes: the toml:"…" tags of
// its (unexported) raw config structs in configSources.
func configKeys(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, g := range configSources {
		m, err := filepath.Glob(filepath.Join(testenv.RepoRoot(t), filepath.FromSlash(g)))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	tag := regexp.MustCompile(`toml:"([^",]+)`)
	seen := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range tag.FindAllSubmatch(b, -1) {
			seen[string(m[1])] = true
		}
	}
	var keys []string
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestExampleNamesEveryKey(t *testing.T) {
	keys := configKeys(t)
	if len(keys) < 30 {
		t.Fatalf("found %d toml tags in %s, want the whole configuration: %v", len(keys), strings.Join(configSources, " "), keys)
	}
	var v map[string]any
	md, err := toml.DecodeFile("smimed.toml.example", &v)
	if err != nil {
		t.Fatalf("smimed.toml.example: %v", err)
	}
	inExample := map[string]bool{}
	for _, k := range md.Keys() {
		for _, part := range k { // [archive.seal] names archive too
			inExample[part] = true
		}
	}
	for _, k := range keys {
		if !inExample[k] {
			t.Errorf("smimed.toml.example lacks %q (a key in %s): add it with its default", k, strings.Join(configSources, " "))
		}
	}
	// Every key line says what it does, as in docs/configuration.md.
	f, err := os.Open("smimed.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	assign := regexp.MustCompile(`^([a-z0-9_]+) *=`)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		if m := assign.FindStringSubmatch(l); m != nil && m[1] != "username" && !strings.Contains(l, "#") {
			t.Errorf("smimed.toml.example:%d: %q has no comment", n, m[1])
		}
	}
}

// TestExampleChecks runs `smimed check-config` on the example with the
// files it names made from the fixtures: the keys and the CA file next to
// it, the passwords in a credentials directory as LoadCredential= would
// put them.
func TestExampleChecks(t *testing.T) {
	bin := smimedBinary(t)
	pki := filepath.Join(testenv.RepoRoot(t), "testdata", "pki")
	dir, creds := t.TempDir(), t.TempDir()
	copyFile := func(from, to string) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(pki, from))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	copyFile("org-new.p12", filepath.Join(dir, "keys/ceo.p12"))
	copyFile("org-new.pass", filepath.Join(creds, "ceo.p12.pass"))
	copyFile("org-old.crt", filepath.Join(dir, "keys/bob.pem"))
	copyFile("org-old.key", filepath.Join(dir, "keys/bob.key"))
	copyFile("ca-bundle.pem", filepath.Join(dir, "ca/partner-ca.pem"))
	copyFile("org-ec256.crt", filepath.Join(dir, "keys/ops.pem"))
	copyFile("org-ec256.key", filepath.Join(dir, "keys/ops.key"))
	copyFile("ca-bundle.pem", filepath.Join(dir, "tsa/ca.pem")) // a PEM anchor stands in for the TSA's
	if err := os.WriteFile(filepath.Join(creds, "ceo.imap.pass"), []byte("imap-secret\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(creds, "master.imap.pass"), []byte("master-secret\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "staff.users"), []byte("# staff\nalice@example.org\nbob@example.org\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(creds, "m365.secret"), []byte("client-secret\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	writeServiceAccount(t, filepath.Join(creds, "gws-service-account.json"))
	if err := os.WriteFile(filepath.Join(creds, "s3.cred"), []byte("access_key_id = AKIDEXAMPLE\nsecret_access_key = secret\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("smimed.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "smimed.toml")
	if err := os.WriteFile(conf, example, 0o640); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "check-config", "--config", conf)
	cmd.Env = append(os.Environ(), "CREDENTIALS_DIRECTORY="+creds)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("smimed check-config on the example: %v\n%s", err, out)
	}
	if want := "ok (2 decryption key(s), 8 mailbox(es), state_dir /var/lib/smimed)"; !strings.Contains(string(out), want) {
		t.Errorf("smimed check-config = %q, want %q", out, want)
	}
}

// TestSysusersTmpfiles applies the sysusers.d and tmpfiles.d entries to a
// scratch root: user and group smimed, home /var/lib/smimed, no login
// shell; /etc/smimed root:smimed 0750.
func TestSysusersTmpfiles(t *testing.T) {
	sysusers := needTool(t, "systemd-sysusers")
	tmpfiles := needTool(t, "systemd-tmpfiles")
	if os.Getuid() != 0 {
		t.Skip("systemd-tmpfiles --root needs root to give /etc/smimed its owner")
	}
	root := t.TempDir()
	for _, pair := range [][2]string{
		{"smimed.sysusers", "usr/lib/sysusers.d/smimed.conf"},
		{"smimed.tmpfiles", "usr/lib/tmpfiles.d/smimed.conf"},
	} {
		b, err := os.ReadFile(pair[0])
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, pair[1])
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sysusers, "--root="+root).CombinedOutput(); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	group, err := os.ReadFile(filepath.Join(root, "etc/group"))
	if err != nil {
		t.Fatal(err)
	}
	var uid, gid, ggid string
	for _, l := range strings.Split(string(passwd), "\n") {
		f := strings.Split(l, ":")
		if len(f) == 7 && f[0] == "smimed" {
			uid, gid = f[2], f[3]
			if f[5] != "/var/lib/smimed" {
				t.Errorf("smimed's home = %q, want /var/lib/smimed", f[5])
			}
			if !strings.HasSuffix(f[6], "/nologin") && f[6] != "/bin/false" {
				t.Errorf("smimed's shell = %q, want nologin", f[6])
			}
		}
	}
	for _, l := range strings.Split(string(group), "\n") {
		if f := strings.Split(l, ":"); len(f) == 4 && f[0] == "smimed" {
			ggid = f[2]
		}
	}
	if uid == "" || ggid == "" || gid != ggid {
		t.Fatalf("systemd-sysusers: want user and group smimed with the group as primary\npasswd:\n%sgroup:\n%s", passwd, group)
	}
	if n, _ := strconv.Atoi(uid); n == 0 || n >= 1000 {
		t.Errorf("smimed's uid = %s, want a system uid (1-999)", uid)
	}

	if out, err := exec.Command(tmpfiles, "--root="+root, "--create").CombinedOutput(); err != nil {
		t.Fatalf("systemd-tmpfiles --create: %v\n%s", err, out)
	}
	info, err := os.Stat(filepath.Join(root, "etc/smimed"))
	if err != nil {
		t.Fatalf("systemd-tmpfiles did not create /etc/smimed: %v", err)
	}
	st := info.Sys().(*syscall.Stat_t)
	if !info.IsDir() || info.Mode().Perm() != 0o750 || st.Uid != 0 || strconv.Itoa(int(st.Gid)) != ggid {
		t.Errorf("/etc/smimed: %v uid %d gid %d, want a directory 0750 uid 0 gid %s (smimed)", info.Mode(), st.Uid, st.Gid, ggid)
	}
}

// TestREADMENamesEveryKey: the configuration reference (configReference,
// the user's manual, which README.md links to) names every key the
// configuration accepts, as a TOML line "key =" or a table header
// ("[accounts.oauth2]" for oauth2 and accounts, "[[archive.seal.tsa]]" for
// archive, seal and tsa).
func TestREADMENamesEveryKey(t *testing.T) {
	ref, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), filepath.FromSlash(configReference)))
	if err != nil {
		t.Fatal(err)
	}
	keys := configKeys(t)
	if len(keys) < 30 {
		t.Fatalf("found %d toml tags in %s, want the whole configuration: %v", len(keys), strings.Join(configSources, " "), keys)
	}
	for _, k := range keys {
		key := regexp.QuoteMeta(k)
		if !regexp.MustCompile(`(?m)^(` + key + ` *=|\[\[?([a-z_]+\.)*` + key + `(\.[a-z_]+)*\]\]?)`).MatchString(string(ref)) {
			t.Errorf("%s lacks %q (a key in %s)", configReference, k, strings.Join(configSources, " "))
		}
	}
}

// writeServiceAccount writes a Google service account key file (JSON) with
// a new RSA key, as the Google Cloud console hands one out.
func writeServiceAccount(t *testing.T, path string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(map[string]string{
		"type": "service_account", "client_email": "smimed@example-project.iam.gserviceaccount.com", "private_key_id": "1",
		"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), "token_uri": "https://oauth2.googleapis.com/token",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o400); err != nil {
		t.Fatal(err)
	}
}
