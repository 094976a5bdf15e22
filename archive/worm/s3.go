package worm

// A small S3 client: the few requests the WORM copy needs, signed with
// AWS Signature Version 4 (header auth, the payload's SHA-256 signed).
// Everything the server answers is read through bounded readers; XML
// answers are parsed in xml.go.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/smimed/smimed/harvest"
)

// Credentials is an S3 access key.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
}

// ClientConfig says where the bucket is and how to reach it.
type ClientConfig struct {
	// Endpoint is the server's base URL (https, or http to loopback).
	Endpoint string
	Bucket   string
	// Region signs the requests (us-east-1 when empty).
	Region string
	// PathStyle puts the bucket in the path (endpoint/bucket/key) instead
	// of the host name (bucket.endpoint/key).
	PathStyle bool
	// CAFile, if set, is the only trust anchor for the endpoint's TLS
	// certificate.
	CAFile      string
	Credentials Credentials
	// Timeout bounds each request (5 minutes when zero).
	Timeout time.Duration
}

// Client talks to one bucket. It is safe for concurrent use.
type Client struct {
	cfg  ClientConfig
	base *url.URL
	http *http.Client
	now  func() time.Time
}

// maxAnswer bounds any answer body smimed reads into memory (errors, XML).
const maxAnswer = 1 << 20

// NewClient checks cfg and returns a client; it sends nothing.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("worm: endpoint %q is not an http(s) URL", cfg.Endpoint)
	}
	if cfg.Bucket == "" || cfg.Credentials.AccessKeyID == "" || cfg.Credentials.SecretAccessKey == "" {
		return nil, errors.New("worm: bucket and credentials must be set")
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Minute
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // the archive's copy goes straight to its server
	if cfg.CAFile != "" {
		pool, err := harvest.ReadCAPool(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("worm: ca_file: %w", err)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return &Client{cfg: cfg, base: u, http: &http.Client{Transport: tr, Timeout: cfg.Timeout}, now: time.Now}, nil
}

// Bucket is the bucket's name.
func (c *Client) Bucket() string { return c.cfg.Bucket }

// Errors; returned errors wrap them.
var (
	// ErrNoSuchKey: the object (or version) does not exist.
	ErrNoSuchKey = errors.New("worm: no such object")
	// ErrNoObjectLock: the bucket has no Object Lock enabled.
	ErrNoObjectLock = errors.New("worm: bucket has no Object Lock enabled")
)

// S3Error is an error answer of the server.
type S3Error struct {
	Status  int
	Code    string
	Message string
	Op      string
}

func (e *S3Error) Error() string {
	msg := e.Message
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	if e.Code == "" {
		return fmt.Sprintf("worm: %s: HTTP %d", e.Op, e.Status)
	}
	return fmt.Sprintf("worm: %s: HTTP %d %s: %s", e.Op, e.Status, clean(e.Code), clean(msg))
}

// Is lets errors.Is(err, ErrNoSuchKey) hold for a 404 on an object.
func (e *S3Error) Is(target error) bool {
	return target == ErrNoSuchKey && e.Status == http.StatusNotFound && (e.Code == "" || e.Code == "NoSuchKey" || e.Code == "NoSuchVersion")
}

// Temporary reports whether trying again later may succeed.
func (e *S3Error) Temporary() bool {
	return e.Status >= 500 || e.Status == http.StatusTooManyRequests || e.Status == http.StatusRequestTimeout || e.Code == "RequestTimeTooSkewed"
}

// clean drops control characters from text the server sent.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// request is one signed request.
type request struct {
	op      string
	method  string
	key     string // object key, "" for the bucket
	query   url.Values
	header  http.Header
	body    io.ReadSeeker // nil: empty
	sha256  string        // hex SHA-256 of body
	size    int64
	okCodes []int // 200 when empty
}

func (c *Client) do(ctx context.Context, r request) (*http.Response, error) {
	u := *c.base
	host := u.Host
	path := u.Path
	if c.cfg.PathStyle {
		path += "/" + c.cfg.Bucket
	} else {
		host = c.cfg.Bucket + "." + host
	}
	if r.key != "" {
		path += "/" + r.key
	} else if path == "" {
		path = "/"
	}
	u.Host = host
	u.Path = path
	u.RawPath = uriEncode(path, false)
	u.RawQuery = canonicalQuery(r.query)
	var body io.Reader
	if r.body != nil {
		if _, err := r.body.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("worm: %s: %w", r.op, err)
		}
		body = r.body
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("worm: %s: %w", r.op, err)
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	if r.body != nil {
		req.ContentLength = r.size
	}
	payload := r.sha256
	if payload == "" {
		payload = emptySHA256
	}
	c.sign(req, payload)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("worm: %s: %w", r.op, err)
	}
	ok := r.okCodes
	if len(ok) == 0 {
		ok = []int{http.StatusOK}
	}
	for _, code := range ok {
		if resp.StatusCode == code {
			return resp, nil
		}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	e := parseError(b)
	e.Status, e.Op = resp.StatusCode, r.op
	return nil, e
}

var emptySHA256 = hex.EncodeToString(sha256.New().Sum(nil))

// sign adds the SigV4 headers (x-amz-date, x-amz-content-sha256,
// Authorization) to req.
func (c *Client) sign(req *http.Request, payloadSHA string) {
	now := c.now().UTC()
	amzDate := now.Format("20060102T150405Z")
	day := now.Format("20060102")
	req.Header.Set("X-Amz-Date", amzDate)
	req.Header.Set("X-Amz-Content-Sha256", payloadSHA)
	// Signed: host and every x-amz-* and content-* header.
	names := []string{"host"}
	vals := map[string]string{"host": req.URL.Host}
	for k, v := range req.Header {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "x-amz-") || lk == "content-type" || lk == "content-md5" {
			names = append(names, lk)
			vals[lk] = strings.Join(trimAll(v), ",")
		}
	}
	sort.Strings(names)
	var ch strings.Builder
	for _, n := range names {
		ch.WriteString(n + ":" + vals[n] + "\n")
	}
	signed := strings.Join(names, ";")
	canonical := strings.Join([]string{req.Method, req.URL.EscapedPath(), req.URL.RawQuery, ch.String(), signed, payloadSHA}, "\n")
	scope := day + "/" + c.cfg.Region + "/s3/aws4_request"
	h := sha256.Sum256([]byte(canonical))
	toSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(h[:])
	k := hmacSHA256([]byte("AWS4"+c.cfg.Credentials.SecretAccessKey), day)
	k = hmacSHA256(k, c.cfg.Region)
	k = hmacSHA256(k, "s3")
	k = hmacSHA256(k, "aws4_request")
	sig := hex.EncodeToString(hmacSHA256(k, toSign))
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+c.cfg.Credentials.AccessKeyID+"/"+scope+", SignedHeaders="+signed+", Signature="+sig)
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func trimAll(v []string) []string {
	out := make([]string, len(v))
	for i, s := range v {
		out[i] = strings.Join(strings.Fields(s), " ")
	}
	return out
}

// uriEncode encodes s as SigV4 wants: every byte but A-Z a-z 0-9 - _ . ~
// percent-encoded, and "/" too unless it separates path segments.
func uriEncode(s string, slash bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case 'A' <= ch && ch <= 'Z', 'a' <= ch && ch <= 'z', '0' <= ch && ch <= '9', ch == '-', ch == '_', ch == '.', ch == '~':
			b.WriteByte(ch)
		case ch == '/' && !slash:
			b.WriteByte(ch)
		default:
			fmt.Fprintf(&b, "%%%02X", ch)
		}
	}
	return b.String()
}

// canonicalQuery is the query sorted by name, each name and value
// encoded; a name without value gets "=".
func canonicalQuery(q url.Values) string {
	if len(q) == 0 {
		return ""
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		vs := append([]string(nil), q[k]...)
		sort.Strings(vs)
		for _, v := range vs {
			parts = append(parts, uriEncode(k, true)+"="+uriEncode(v, true))
		}
	}
	return strings.Join(parts, "&")
}

// Lock is a bucket's Object Lock configuration.
type Lock struct {
	Enabled bool
	// DefaultMode and the default period, if the bucket has a default
	// retention (smimed sets its own per object either way).
	DefaultMode string
}

// ObjectLock reads the bucket's Object Lock configuration; a bucket
// without one gives ErrNoObjectLock.
func (c *Client) ObjectLock(ctx context.Context) (Lock, error) {
	resp, err := c.do(ctx, request{op: "get object lock configuration", method: http.MethodGet, query: url.Values{"object-lock": {""}}})
	if err != nil {
		var se *S3Error
		if errors.As(err, &se) && (se.Code == "ObjectLockConfigurationNotFoundError" || se.Code == "ObjectLockConfigurationNotFound") {
			return Lock{}, fmt.Errorf("%w (bucket %s)", ErrNoObjectLock, c.cfg.Bucket)
		}
		return Lock{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return Lock{}, fmt.Errorf("worm: get object lock configuration: %w", err)
	}
	l, err := parseLockConfig(b)
	if err != nil {
		return Lock{}, err
	}
	if !l.Enabled {
		return l, fmt.Errorf("%w (bucket %s)", ErrNoObjectLock, c.cfg.Bucket)
	}
	return l, nil
}

// Put describes an object to write.
type Put struct {
	Key    string
	Body   io.ReadSeeker
	Size   int64
	SHA256 []byte // of Body, 32 bytes
	// Mode is "COMPLIANCE" or "GOVERNANCE"; RetainUntil when the lock ends.
	Mode        string
	RetainUntil time.Time
	LegalHold   bool
	ContentType string
}

// PutObject writes one object, locked: the server checks the SHA-256
// (x-amz-checksum-sha256) and keeps it. It returns the version id.
func (c *Client) PutObject(ctx context.Context, p Put) (string, error) {
	h := http.Header{}
	h.Set("X-Amz-Checksum-Sha256", base64.StdEncoding.EncodeToString(p.SHA256))
	h.Set("X-Amz-Object-Lock-Mode", p.Mode)
	h.Set("X-Amz-Object-Lock-Retain-Until-Date", p.RetainUntil.UTC().Format(time.RFC3339))
	if p.LegalHold {
		h.Set("X-Amz-Object-Lock-Legal-Hold", "ON")
	}
	ct := p.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	resp, err := c.do(ctx, request{op: "put " + p.Key, method: http.MethodPut, key: p.Key, header: h, body: p.Body, size: p.Size, sha256: hex.EncodeToString(p.SHA256)})
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	return resp.Header.Get("X-Amz-Version-Id"), nil
}

// Object is what HEAD tells of an object.
type Object struct {
	Size        int64
	VersionID   string
	SHA256      []byte // nil when the server keeps no SHA-256 checksum
	Mode        string
	RetainUntil time.Time
	LegalHold   bool
}

// HeadObject reads an object's metadata (the current version when
// versionID is empty); a missing object gives ErrNoSuchKey.
func (c *Client) HeadObject(ctx context.Context, key, versionID string) (Object, error) {
	q := url.Values{}
	if versionID != "" {
		q.Set("versionId", versionID)
	}
	h := http.Header{}
	h.Set("X-Amz-Checksum-Mode", "ENABLED")
	resp, err := c.do(ctx, request{op: "head " + key, method: http.MethodHead, key: key, query: q, header: h})
	if err != nil {
		return Object{}, err
	}
	resp.Body.Close()
	o := Object{Size: resp.ContentLength, VersionID: resp.Header.Get("X-Amz-Version-Id"),
		Mode: resp.Header.Get("X-Amz-Object-Lock-Mode"), LegalHold: resp.Header.Get("X-Amz-Object-Lock-Legal-Hold") == "ON"}
	if s := resp.Header.Get("X-Amz-Checksum-Sha256"); s != "" {
		if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) == sha256.Size {
			o.SHA256 = b
		}
	}
	if s := resp.Header.Get("X-Amz-Object-Lock-Retain-Until-Date"); s != "" {
		if t, err := time.Parse(time.RFC3339, s); err == nil {
			o.RetainUntil = t
		}
	}
	return o, nil
}

// ObjectSHA256 reads the object and returns its SHA-256 and size,
// streaming (no size limit: the hash is all that is kept).
func (c *Client) ObjectSHA256(ctx context.Context, key string) ([]byte, int64, error) {
	resp, err := c.do(ctx, request{op: "get " + key, method: http.MethodGet, key: key})
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return nil, 0, fmt.Errorf("worm: get %s: %w", key, err)
	}
	return h.Sum(nil), n, nil
}

// SetLegalHold turns an object's legal hold on or off (the current
// version when versionID is empty).
func (c *Client) SetLegalHold(ctx context.Context, key, versionID string, on bool) error {
	status := "OFF"
	if on {
		status = "ON"
	}
	body := []byte(`<LegalHold xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>` + status + `</Status></LegalHold>`)
	q := url.Values{"legal-hold": {""}}
	if versionID != "" {
		q.Set("versionId", versionID)
	}
	return c.small(ctx, "put legal hold "+key, http.MethodPut, key, q, body)
}

// small sends a small XML body with Content-MD5 (which S3 demands for the
// lock requests).
func (c *Client) small(ctx context.Context, op, method, key string, q url.Values, body []byte) error {
	h := http.Header{}
	sum := md5.Sum(body)
	h.Set("Content-Md5", base64.StdEncoding.EncodeToString(sum[:]))
	h.Set("Content-Type", "application/xml")
	sha := sha256.Sum256(body)
	resp, err := c.do(ctx, request{op: op, method: method, key: key, query: q, header: h,
		body: bytes.NewReader(body), size: int64(len(body)), sha256: hex.EncodeToString(sha[:]), okCodes: []int{http.StatusOK, http.StatusNoContent}})
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// DeleteObject deletes an object version (or, without versionID, puts a
// delete marker). smimed never calls it; the tests use it to show the
// lock holds.
func (c *Client) DeleteObject(ctx context.Context, key, versionID string) error {
	q := url.Values{}
	if versionID != "" {
		q.Set("versionId", versionID)
	}
	resp, err := c.do(ctx, request{op: "delete " + key, method: http.MethodDelete, key: key, query: q, okCodes: []int{http.StatusOK, http.StatusNoContent}})
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// CreateBucket creates the bucket, with Object Lock enabled when lock is
// set (setup and tests; smimed itself never creates buckets).
func (c *Client) CreateBucket(ctx context.Context, lock bool) error {
	h := http.Header{}
	if lock {
		h.Set("X-Amz-Bucket-Object-Lock-Enabled", "true")
	}
	resp, err := c.do(ctx, request{op: "create bucket", method: http.MethodPut, header: h})
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}
