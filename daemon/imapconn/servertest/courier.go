package servertest

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// courierDeps is what .ci/test-deps lists for Courier (courier-imap itself
// is only unpacked): sudo make test-deps installs them without starting
// their services.
const courierDeps = "courier-base courier-authdaemon courier-authlib-userdb gamin"

// setupCourier copies /etc/courier (courier-base's) and the unpacked
// package's imapd files into dir/etc, which the namespace binds over
// /etc/courier, with an authdaemonrc of authuserdb only and a userdb of
// the test's users; their Maildirs are under dir/mail.
func (s *Server) setupCourier() error {
	if installedVersion("courier-base") == "" || installedVersion("courier-authlib-userdb") == "" {
		return fmt.Errorf("courier-base or courier-authlib-userdb is not installed: sudo make test-deps installs %s", courierDeps)
	}
	co, err := user.Lookup("courier")
	if err != nil {
		return fmt.Errorf("no courier user (%v): sudo make test-deps installs %s", err, courierDeps)
	}
	uid, _ := strconv.Atoi(co.Uid)
	gid, _ := strconv.Atoi(co.Gid)
	if s.root, err = unpacked("courier-imap", ""); err != nil {
		return err
	}
	imapd := filepath.Join(s.root, "usr/bin/imapd")
	imaplogin := filepath.Join(s.root, "usr/lib/courier/courier/imaplogin")
	authdaemond := "/usr/lib/courier/courier-authlib/authdaemond"
	if err := missing(imapd, imaplogin, authdaemond, "/usr/sbin/couriertcpd"); err != nil {
		return err
	}
	d := s.dir
	etc := filepath.Join(d, "etc")
	for _, sub := range []string{"etc", "run/authdaemon", "mail"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
			return err
		}
	}
	for _, src := range []string{"/etc/courier/.", s.root + "/etc/courier/."} { // "/." copies the contents
		if out, err := exec.Command("cp", "-a", src, etc+"/").CombinedOutput(); err != nil {
			return fmt.Errorf("cp %s: %v: %s", src, err, out)
		}
	}
	for _, f := range []string{"userdb", "userdb.dat", "userdbshadow.dat"} {
		os.RemoveAll(filepath.Join(etc, f))
	}
	authrc := "authmodulelist=\"authuserdb\"\nauthmodulelistorig=\"authuserdb\"\ndaemons=3\nauthdaemonvar=/run/courier/authdaemon\nDEBUG_LOGIN=0\nDEFAULTOPTIONS=\"\"\nLOGGEROPTS=\"\"\n"
	if err := os.WriteFile(filepath.Join(etc, "authdaemonrc"), []byte(authrc), 0o660); err != nil {
		return err
	}
	if err := os.Chown(filepath.Join(etc, "authdaemonrc"), 0, gid); err != nil {
		return err
	}
	conf, err := os.ReadFile(filepath.Join(etc, "imapd"))
	if err != nil {
		return err
	}
	set := func(key, value string) {
		re := regexp.MustCompile(`(?m)^` + key + `=.*$`)
		conf = re.ReplaceAll(conf, []byte(key+"="+value))
	}
	set("ADDRESS", "127.0.0.1")
	set("PORT", strconv.Itoa(s.port))
	set("PIDFILE", "/run/courier/imapd.pid")
	if s.opts.CourierEnhancedIdle {
		set("IMAP_ENHANCEDIDLE", "1")
	}
	if s.opts.CourierAuthPlain {
		conf = regexp.MustCompile(`(?m)^IMAP_CAPABILITY="(.*)"$`).ReplaceAll(conf, []byte(`IMAP_CAPABILITY="$1 AUTH=PLAIN"`))
	}
	if err := os.WriteFile(filepath.Join(etc, "imapd"), conf, 0o644); err != nil {
		return err
	}
	binds := []string{etc + ":/etc/courier", filepath.Join(d, "run") + ":/run/courier"}

	// The users: a Maildir each, owned by courier, and a userdb entry
	// with an MD5-crypt password (userdb and makeuserdb work on
	// /etc/courier, so they run in the namespace too).
	var script strings.Builder
	script.WriteString("set -e\n")
	for name, pw := range s.opts.Users {
		home := filepath.Join(d, "mail", name)
		if err := os.MkdirAll(home, 0o700); err != nil {
			return err
		}
		if out, err := exec.Command("maildirmake", filepath.Join(home, "Maildir")).CombinedOutput(); err != nil {
			return fmt.Errorf("maildirmake: %v: %s", err, out)
		}
		if err := chownTree(home, uid, gid); err != nil {
			return err
		}
		hashCmd := exec.Command("userdbpw", "-md5")
		hashCmd.Stdin = strings.NewReader(pw + "\n" + pw + "\n")
		out, err := hashCmd.Output()
		hash := strings.TrimSpace(lastLine(out))
		if err != nil || !strings.HasPrefix(hash, "$1$") {
			return fmt.Errorf("userdbpw -md5: %v: %q", err, out)
		}
		fmt.Fprintf(&script, "userdb %s set uid=%d gid=%d home=%s mail=%s/Maildir systempw='%s'\n", name, uid, gid, home, home, hash)
	}
	script.WriteString("makeuserdb\n")
	if out, err := s.nsCommand(binds, "sh", "-c", script.String()).CombinedOutput(); err != nil {
		return fmt.Errorf("userdb: %v: %s", err, out)
	}
	if err := chownTree(filepath.Join(d, "run"), uid, gid); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(d, "run", "authdaemon"), 0o750); err != nil {
		return err
	}

	// authdaemond in the background, then couriertcpd in its place, as
	// /usr/sbin/imapd start does, without courierlogger (stderr to a
	// file) and without TLS.
	run := `set -a
prefix=/usr; exec_prefix=/usr; sbindir=/usr/sbin; bindir=/usr/bin
rm -f /run/courier/authdaemon/socket /run/courier/authdaemon/pid
"$3" >>"$1/authdaemond.log" 2>&1 </dev/null &
i=0; while [ ! -S /run/courier/authdaemon/socket ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
. /etc/courier/imapd
IMAP_STARTTLS=NO; IMAP_TLS_REQUIRED=0
umask $IMAP_UMASK
exec /usr/sbin/couriertcpd -address=$ADDRESS -maxprocs=$MAXDAEMONS -maxperip=100 $TCPDOPTS \
  -stderr="$1/imapd.log" $PORT "$2/usr/lib/courier/courier/imaplogin" "$2/usr/bin/imapd" $MAILDIRPATH`
	s.start = func() (*exec.Cmd, error) {
		return s.nsCommand(binds, "sh", "-c", run, "courier-start", d, s.root, authdaemond), nil
	}
	return nil
}
