package revocation

// Fetching a missing issuer certificate from the URL a certificate names
// in its authority information access (caIssuers, RFC 5280 4.2.2.1), for
// [trust] fetch_intermediates. The certificate that names the URL has no
// chain yet: the URL is a stranger's. So only http, only to public
// addresses (never loopback, private, link-local or unspecified ones: a
// stranger must not make smimed ask the organisation's own servers), the
// same size and time limits as CRLs, one fetch per URL at a time, and a
// URL that failed is not asked again for 5 minutes.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"syscall"
	"time"
)

// MaxIssuerSize bounds a fetched issuer certificate (DER, or a PKCS#7
// certs-only bundle).
const MaxIssuerSize = 1 << 20

// ErrNotPublic refuses a URL whose host is not a public address.
var ErrNotPublic = errors.New("revocation: not a public address")

// IssuerFetcher gets issuer certificates by their caIssuers URL. It is safe
// for concurrent use.
type IssuerFetcher struct {
	client  *http.Client
	timeout time.Duration

	flights *flights
	mu      sync.Mutex
	done    map[string][]byte // URL → what it gave (kept for the fetcher's life)
}

// NewIssuerFetcher returns a fetcher; allowPrivate lets it reach loopback
// and private addresses (tests only).
func NewIssuerFetcher(timeout time.Duration, allowPrivate bool) *IssuerFetcher {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	dialer := &net.Dialer{Timeout: timeout}
	if !allowPrivate {
		dialer.Control = func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %s", ErrNotPublic, address)
			}
			a := ap.Addr().Unmap()
			if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsUnspecified() || a.IsMulticast() {
				return fmt.Errorf("%w: %s", ErrNotPublic, a)
			}
			return nil
		}
	}
	client := &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{DialContext: dialer.DialContext, Proxy: nil, MaxResponseHeaderBytes: 16 << 10},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			return errors.New("redirects are not followed for issuer certificates")
		},
	}
	return &IssuerFetcher{client: client, timeout: timeout, flights: newFlights(time.Now), done: map[string][]byte{}}
}

// Fetch returns the body at the caIssuers URL u (at most MaxIssuerSize
// bytes), from memory when it was fetched before.
func (f *IssuerFetcher) Fetch(ctx context.Context, u string) ([]byte, error) {
	pu, err := url.Parse(u)
	if err != nil || pu.Scheme != "http" || pu.Host == "" {
		return nil, fmt.Errorf("revocation: issuer URL %q: http only", u)
	}
	f.mu.Lock()
	body, ok := f.done[u]
	f.mu.Unlock()
	if ok {
		return body, nil
	}
	v, err := f.flights.do(ctx, u, func(ctx context.Context) (any, error) { return f.get(ctx, u) }, nil)
	if err != nil {
		return nil, err
	}
	body = v.([]byte)
	f.mu.Lock()
	if len(f.done) >= 1000 {
		clear(f.done) // bounded: a stranger's URLs must not fill memory
	}
	f.done[u] = body
	f.mu.Unlock()
	return body, nil
}

func (f *IssuerFetcher) get(ctx context.Context, u string) ([]byte, error) {
	return fetchBounded(ctx, f.client, f.timeout, http.MethodGet, u, nil, MaxIssuerSize)
}

// fetchBounded sends one request to u (a POST of body as an OCSP request
// when body is not nil) within timeout, and returns the answer of an HTTP
// 200 of at most max bytes. Errors name u. The connection is not kept:
// some responders (openssl ocsp among them) serve one at a time, and an
// idle kept-alive one would hold them; the fetches are seldom anyway.
func fetchBounded(ctx context.Context, client *http.Client, timeout time.Duration, method, u string, body []byte, max int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/ocsp-request")
	}
	req.Close = true
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %s", u, resp.Status)
	}
	answer, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	if int64(len(answer)) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes", u, max)
	}
	return answer, nil
}
