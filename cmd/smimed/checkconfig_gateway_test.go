package main

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/smimed/smimed/daemon/testenv"
)

// TestCheckConfigGateway: check-config names each problem of [gateway]
// by its key (escrow certificates that cannot be encrypted to, TLS files
// that are not there, relay_tls = "none" beyond loopback), and
// --connect says whether the relay answers.
func TestCheckConfigGateway(t *testing.T) {
	bad := writeConfig(t, `[gateway]
listen = "127.0.0.1:10025"
mode = "submission"
relay = "mail.example.org:587"
relay_tls = "none"
internal_domains = ["org.example"]
escrow_cert_files = ["ca-bundle.pem"]
listen_tls = "127.0.0.1:10465"
`)
	code, _, errOut := runCmd(nil, "check-config", "--config", bad)
	if code != exitUsage {
		t.Fatalf("check-config = %d, want %d\n%s", code, exitUsage, errOut)
	}
	for _, want := range []string{"gateway.relay_tls:", "gateway.tls_cert_file:"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("check-config output lacks %q:\n%s", want, errOut)
		}
	}
	// A filter beyond loopback would be an open relay through a next
	// hop that trusts smimed.
	open := writeConfig(t, "[gateway]\nlisten = \"0.0.0.0:10025\"\nrelay = \"127.0.0.1:10026\"\ninternal_domains = [\"org.example\"]\n")
	code, _, errOut = runCmd(nil, "check-config", "--config", open)
	if code != exitUsage || !strings.Contains(errOut, "gateway.listen:") || !strings.Contains(errOut, "loopback only") {
		t.Fatalf("filter listening beyond loopback: exit %d\n%s", code, errOut)
	}
	escrow := writeConfig(t, "[gateway]\nlisten = \"127.0.0.1:10025\"\nrelay = \"127.0.0.1:10026\"\ninternal_domains = [\"org.example\"]\nescrow_cert_files = [\"ca-bundle.pem\"]\n")
	code, _, errOut = runCmd(nil, "check-config", "--config", escrow)
	if code != exitUsage || !strings.Contains(errOut, "gateway.escrow_cert_files[0]:") || !strings.Contains(errOut, "cannot be encrypted to") {
		t.Fatalf("escrow that cannot be encrypted to: exit %d\n%s", code, errOut)
	}

	// --connect: a relay that answers, then one that does not.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "220 relay.test ESMTP\r\n")
				buf := make([]byte, 512)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					switch cmd := strings.ToUpper(string(buf[:n])); {
					case strings.HasPrefix(cmd, "EHLO"):
						fmt.Fprintf(c, "250-relay.test\r\n250-SIZE 10000000\r\n250 8BITMIME\r\n")
					case strings.HasPrefix(cmd, "QUIT"):
						fmt.Fprintf(c, "221 bye\r\n")
						return
					default:
						fmt.Fprintf(c, "250 ok\r\n")
					}
				}
			}()
		}
	}()
	good := writeConfig(t, fmt.Sprintf("[gateway]\nlisten = \"127.0.0.1:10025\"\nrelay = %q\ninternal_domains = [\"org.example\"]\n", ln.Addr()))
	code, out, errOut := runCmd(nil, "check-config", "--connect", "--config", good)
	if code != exitOK || !strings.Contains(out, "ok   gateway: relay "+ln.Addr().String()) || !strings.Contains(out, "SIZE 10000000") {
		t.Fatalf("check-config --connect = %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "ok (gateway filter on 127.0.0.1:10025") {
		t.Errorf("no gateway summary:\n%s", out)
	}
	dead := writeConfig(t, fmt.Sprintf("[gateway]\nlisten = \"127.0.0.1:10025\"\nrelay = %q\ninternal_domains = [\"org.example\"]\n", testenv.FreeAddr(t)))
	code, out, _ = runCmd(nil, "check-config", "--connect", "--config", dead)
	if code != exitFailed || !strings.Contains(out, "FAIL gateway: relay") {
		t.Fatalf("check-config --connect with the relay down = %d\n%s", code, out)
	}
}
