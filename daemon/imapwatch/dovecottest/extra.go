package dovecottest

// This file holds what the service-level scenarios need beyond a running
// server: restarting Dovecot on the same port, filling a mailbox fast, and
// a TCP proxy that can cut every connection passing through it.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Restart stops Dovecot and starts it again with the same configuration,
// so on the same port and with the same mail. Clients see their
// connections closed, then refused until the new master answers.
//
// Dovecot's imap processes outlive a stopped master by about 10 s (they
// say "Server shutting down" only then), so a plain Stop and start would
// leave the old sessions working across the "restart". Restart ends them
// first, as systemd does when it stops the whole unit.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.endLeftovers(t)
	dovecot, err := lookPath("dovecot", "/usr/sbin/dovecot")
	if err != nil {
		t.Fatalf("dovecot not found (%v); %s", err, installHint)
	}
	s.mu.Lock()
	s.stopped = false
	s.mu.Unlock()
	// The old listener's port can linger for a moment after the master
	// is gone: retry for a while.
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := s.start(dovecot)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("dovecottest: restart on %s: %v\nlog:\n%s", s.addr, err, s.Log())
		}
		s.Stop()
		s.mu.Lock()
		s.stopped = false
		s.mu.Unlock()
		time.Sleep(100 * time.Millisecond)
	}
}

// DeliverMaildir puts msgs into user's INBOX in that order by writing
// them straight into the Maildir (tmp, then renamed into new, as any MDA
// does) and then has Dovecot assign their UIDs (doveadm force-resync).
// It is meant for big backlogs, where one doveadm save per message takes
// too long; the bytes are stored exactly as given.
func (s *Server) DeliverMaildir(t testing.TB, user string, msgs [][]byte) {
	t.Helper()
	// Opening INBOX creates the user's Maildir with Dovecot's owner and
	// modes.
	s.Doveadm(t, "mailbox", "status", "-u", user, "messages", "INBOX")
	uid, gid, err := dovecotIDs()
	if err != nil {
		t.Fatal(err)
	}
	md := filepath.Join(s.dir, "mail", user, "Maildir")
	now := time.Now().Unix()
	pid := os.Getpid()
	for i, m := range msgs {
		// Dovecot gives new files their UIDs in the order of their
		// names: a fixed-width counter keeps the order of msgs.
		name := fmt.Sprintf("%d.M%09dP%d.dovecottest", now, i, pid)
		tmp := filepath.Join(md, "tmp", name)
		if err := os.WriteFile(tmp, m, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(tmp, uid, gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(md, "new", name)); err != nil {
			t.Fatal(err)
		}
	}
	s.Doveadm(t, "force-resync", "-u", user, "INBOX")
}

// endLeftovers ends the processes of our Dovecot that outlived its master:
// those named dovecot/... whose working directory or an open file lies in
// our directory (an imap process works in the user's home, under mail/,
// and holds the mailbox's index files open). SIGTERM first, so that an
// imap process says BYE; SIGKILL after 10 s.
func (s *Server) endLeftovers(t testing.TB) {
	t.Helper()
	if pids := EndProcesses(s.leftovers, 10*time.Second); len(pids) > 0 {
		t.Fatalf("dovecottest: processes %v of the old Dovecot survive SIGKILL", pids)
	}
}

// EndProcesses sends SIGTERM to the processes list returns until it
// returns none, then SIGKILL after grace, and returns those that survive
// SIGKILL 5 s more.
func EndProcesses(list func() []int, grace time.Duration) []int {
	deadline := time.Now().Add(grace)
	signal := syscall.SIGTERM
	for {
		pids := list()
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			if signal == syscall.SIGKILL {
				return pids
			}
			signal, deadline = syscall.SIGKILL, time.Now().Add(5*time.Second)
		}
		for _, pid := range pids {
			syscall.Kill(pid, signal)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) leftovers() []int {
	inDir := func(link string) bool {
		p, err := os.Readlink(link)
		return err == nil && (p == s.dir || strings.HasPrefix(p, s.dir+"/"))
	}
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		proc := filepath.Join("/proc", e.Name())
		cmdline, err := os.ReadFile(filepath.Join(proc, "cmdline"))
		if err != nil || !bytes.HasPrefix(cmdline, []byte("dovecot/")) || !Alive(pid) {
			continue
		}
		ours := inDir(filepath.Join(proc, "cwd"))
		fds, _ := os.ReadDir(filepath.Join(proc, "fd"))
		for _, fd := range fds {
			ours = ours || inDir(filepath.Join(proc, "fd", fd.Name()))
		}
		if ours {
			pids = append(pids, pid)
		}
	}
	return pids
}

func dovecotIDs() (uid, gid int, err error) {
	dc, err := user.Lookup("dovecot")
	if err != nil {
		return 0, 0, fmt.Errorf("dovecottest: no dovecot user (%v); %s", err, installHint)
	}
	uid, _ = strconv.Atoi(dc.Uid)
	gid, _ = strconv.Atoi(dc.Gid)
	return uid, gid, nil
}

// Proxy is a TCP proxy on 127.0.0.1 in front of an address (normally a
// Server's Addr). Cut closes every connection that passes through it at
// that moment, as a broken network or a restarted NAT would; new
// connections are accepted as before.
type Proxy struct {
	ln     net.Listener
	target string

	mu       sync.Mutex
	conns    map[net.Conn]bool // client and upstream sides
	accepted int
	wg       sync.WaitGroup
}

// StartProxy listens on a free loopback port and forwards each connection
// to target. t.Cleanup closes it and every connection.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Accepted is how many client connections the proxy has accepted so far.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Cut closes every current connection, both sides, and returns how many
// client connections it cut.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for c, client := range p.conns {
		c.Close()
		if client {
			n++
		}
	}
	clear(p.conns)
	return n
}

// Close stops accepting, cuts every connection and waits for the proxy's
// goroutines.
func (p *Proxy) Close() {
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		p.accepted++
		p.conns[c] = true
		p.mu.Unlock()
		p.wg.Add(1)
		go p.forward(c)
	}
}

func (p *Proxy) forward(client net.Conn) {
	defer p.wg.Done()
	up, err := net.DialTimeout("tcp", p.target, 10*time.Second)
	p.mu.Lock()
	_, live := p.conns[client] // not cut meanwhile
	if err == nil && live {
		p.conns[up] = false
	}
	p.mu.Unlock()
	if err != nil || !live {
		client.Close()
		if up != nil {
			up.Close()
		}
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, err := io.Copy(dst, src)
		if err != nil && !errors.Is(err, net.ErrClosed) {
			// A reset: close both, as a broken path would.
			dst.Close()
			src.Close()
		} else if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite() // pass the EOF on
		}
		done <- struct{}{}
	}
	go pipe(up, client)
	go pipe(client, up)
	<-done
	<-done
	client.Close()
	up.Close()
	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, up)
	p.mu.Unlock()
}
