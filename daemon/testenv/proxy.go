package testenv

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP proxy on 127.0.0.1 in front of an address (normally a
// Dovecot's Addr). Cut closes every connection that passes through it at
// that moment, as a broken network or a restarted NAT would; new
// connections are accepted as before. HoldAt keeps a client's command
// from the server until Release, as a slow server would, so that a test
// can look at the client while it waits.
type Proxy struct {
	ln     net.Listener
	target string

	mu       sync.Mutex
	conns    map[net.Conn]bool // client and upstream sides
	accepted int
	hold     []byte        // nil: nothing held back
	release  chan struct{} // closed by Release
	held     int           // client sends held back so far
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

// HoldAt holds back, from now until Release, whatever a client sends
// that contains word (such as "FETCH"), and everything that client sends
// after it: the server never sees the command, so the client waits for
// its answer.
func (p *Proxy) HoldAt(word string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hold, p.release = []byte(word), make(chan struct{})
}

// Held is how many client connections have been held back by HoldAt.
func (p *Proxy) Held() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held
}

// Release passes on what HoldAt held back, and holds nothing more.
func (p *Proxy) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.release != nil {
		close(p.release)
	}
	p.hold, p.release = nil, nil
}

// Close stops accepting, cuts every connection and waits for the proxy's
// goroutines.
func (p *Proxy) Close() {
	p.ln.Close()
	p.Release()
	p.Cut()
	p.wg.Wait()
}

// copyHolding copies src to dst like io.Copy, waiting for Release before
// it passes on a read that holds HoldAt's word (also across two reads).
func (p *Proxy) copyHolding(dst, src net.Conn) error {
	buf := make([]byte, 32*1024)
	var tail []byte // the end of the last read, for a word cut in two
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			word, release := p.hold, p.release
			seen := word != nil && bytes.Contains(append(tail, buf[:n]...), word)
			if seen {
				p.held++
			}
			p.mu.Unlock()
			if seen {
				<-release
			}
			tail = append(tail[:0], buf[max(0, n-len(word)):n]...)
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
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
		var err error
		if dst == up {
			err = p.copyHolding(dst, src)
		} else {
			_, err = io.Copy(dst, src)
		}
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
