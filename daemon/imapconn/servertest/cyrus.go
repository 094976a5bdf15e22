package servertest

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// cyrusDeps is what .ci/test-deps lists for Cyrus (cyrus-imapd itself is
// only unpacked): sudo make test-deps installs them without starting their
// services.
const cyrusDeps = "cyrus-common sasl2-bin libsasl2-modules"

// cyrusAdmin is the administrator that creates the users' mailboxes.
const cyrusAdmin = "cyrusadmin"

// setupCyrus writes imapd.conf and cyrus.conf under dir with every path
// inside it, and the users' passwords into a sasldb of its own. The
// mailboxes are created once the server runs (cyrusMailboxes).
func (s *Server) setupCyrus() error {
	version := installedVersion("cyrus-common")
	if version == "" {
		return fmt.Errorf("cyrus-common is not installed: sudo make test-deps installs %s", cyrusDeps)
	}
	if _, err := exec.LookPath("saslpasswd2"); err != nil {
		return fmt.Errorf("saslpasswd2 is missing: sudo make test-deps installs %s", cyrusDeps)
	}
	cy, err := user.Lookup("cyrus")
	if err != nil {
		return fmt.Errorf("no cyrus user (%v): sudo make test-deps installs %s", err, cyrusDeps)
	}
	mail, err := user.LookupGroup("mail")
	if err != nil {
		return err
	}
	// The imapd of the same version as the installed cyrus-common.
	if s.root, err = unpacked("cyrus-imapd", version); err != nil {
		return err
	}
	bin := filepath.Join(s.root, "usr/lib/cyrus/bin")
	if err := missing(filepath.Join(bin, "imapd"), filepath.Join(bin, "idled"), "/usr/lib/cyrus/bin/master"); err != nil {
		return err
	}
	d := s.dir
	owned := []string{"etc", "lib", "spool", "sieve", "run"}
	for _, sub := range []string{"etc", "lib/db", "lib/log", "lib/socket", "lib/proc", "lib/msg", "lib/user", "lib/quota", "spool", "sieve", "run/proc", "run/lock", "run/socket"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
			return err
		}
	}
	yesNo := map[bool]string{true: "yes", false: "no"}
	poll := s.opts.CyrusIdlePoll
	if poll == 0 {
		poll = 60 // Debian's imapd.conf
	}
	conf := filepath.Join(d, "etc", "imapd.conf")
	imapd := fmt.Sprintf(`# written by servertest; Debian's imapd.conf defaults unless noted
configdirectory: %[1]s/lib
defaultpartition: default
partition-default: %[1]s/spool
proc_path: %[1]s/run/proc
mboxname_lockpath: %[1]s/run/lock
lmtpsocket: %[1]s/run/socket/lmtp
idlesocket: %[1]s/run/socket/idle
notifysocket: %[1]s/run/socket/notify
sievedir: %[1]s/sieve
admins: %[2]s
altnamespace: %[3]s
unixhierarchysep: %[3]s
allowplaintext: yes
hashimapspool: true
umask: 077
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: %[1]s/etc/sasldb2
sasl_mech_list: PLAIN LOGIN
imapidlepoll: %[4]d
syslog_prefix: servertest-cyrus
`, d, cyrusAdmin, yesNo[s.opts.CyrusAltNamespace], poll)
	if err := os.WriteFile(conf, []byte(imapd), 0o644); err != nil {
		return err
	}
	daemons := ""
	if s.opts.CyrusIdled {
		daemons = fmt.Sprintf("DAEMON {\n  idled cmd=\"%s -C %s\"\n}\n", filepath.Join(bin, "idled"), conf)
	}
	master := fmt.Sprintf(`START {
  recover cmd="/usr/lib/cyrus/bin/ctl_cyrusdb -C %[1]s -r"
}
SERVICES {
  imap cmd="%[2]s -C %[1]s -U 30" listen="127.0.0.1:%[3]d" prefork=0 maxchild=100
}
%[4]sEVENTS {
  checkpoint cmd="/usr/lib/cyrus/bin/ctl_cyrusdb -C %[1]s -c" period=30
}
`, conf, filepath.Join(bin, "imapd"), s.port, daemons)
	if err := os.WriteFile(filepath.Join(d, "etc", "cyrus.conf"), []byte(master), 0o644); err != nil {
		return err
	}
	sasldb := filepath.Join(d, "etc", "sasldb2")
	for _, u := range s.cyrusLogins() {
		cmd := exec.Command("saslpasswd2", "-f", sasldb, "-p", "-c", u[0])
		cmd.Stdin = strings.NewReader(u[1])
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("saslpasswd2 %s: %v: %s", u[0], err, out)
		}
	}
	uid, _ := strconv.Atoi(cy.Uid)
	gid, _ := strconv.Atoi(mail.Gid)
	for _, sub := range owned {
		if err := chownTree(filepath.Join(d, sub), uid, gid); err != nil {
			return err
		}
	}
	if err := os.Chmod(sasldb, 0o640); err != nil {
		return err
	}
	s.start = func() (*exec.Cmd, error) {
		// master stays in the foreground and logs to syslog (our socket).
		return s.nsCommand(nil, "/usr/lib/cyrus/bin/master", "-C", conf, "-M", filepath.Join(d, "etc", "cyrus.conf"),
			"-p", filepath.Join(d, "run", "master.pid")), nil
	}
	return nil
}

// cyrusLogins are the users and the administrator (with the first user's
// password, or a fixed one), as name, password pairs.
func (s *Server) cyrusLogins() [][2]string {
	out := [][2]string{{cyrusAdmin, s.adminPassword()}}
	for name, pw := range s.opts.Users {
		out = append(out, [2]string{name, pw})
	}
	return out
}

func (s *Server) adminPassword() string { return "servertest-admin" }

// cyrusMailboxes creates each user's INBOX as the administrator, as a
// Cyrus administrator does (cyradm's cm user.NAME).
func (s *Server) cyrusMailboxes() error {
	c, err := dial(s.addr)
	if err != nil {
		return err
	}
	defer c.close()
	if err := c.login(cyrusAdmin, s.adminPassword()); err != nil {
		return err
	}
	sep := "."
	if s.opts.CyrusAltNamespace {
		sep = "/"
	}
	for name := range s.opts.Users {
		local := name
		if sep == "." {
			local = strings.ReplaceAll(name, ".", "^") // "." separates levels
		}
		box := "user" + sep + local
		if _, err := c.cmd("CREATE " + quote(box)); err != nil {
			return fmt.Errorf("cyrus: %w", err)
		}
	}
	return nil
}

func chownTree(root string, uid, gid int) error {
	return filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}
