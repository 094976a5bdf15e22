package config

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"

	"github.com/smimed/smimed/archive/worm"
	"github.com/smimed/smimed/harvest"
)

// Worm is [archive.worm]: the WORM copy, every original, plaintext and
// record also written to an S3 bucket with Object Lock.
type Worm struct {
	Endpoint string
	Bucket   string
	// Mode is "compliance" or "governance".
	Mode            string
	CredentialsFile string
	Region          string
	CAFile          string
	PathStyle       bool
	// DefaultYears is the retention in years after the end of the receipt
	// year for a record no retention class covers.
	DefaultYears int
}

// rawWorm mirrors its TOML table.
type rawWorm struct {
	Endpoint        *string `toml:"endpoint"`
	Bucket          *string `toml:"bucket"`
	Mode            *string `toml:"mode"`
	CredentialsFile *string `toml:"credentials_file"`
	Region          *string `toml:"region"`
	CAFile          *string `toml:"ca_file"`
	PathStyle       *bool   `toml:"path_style"`
	DefaultYears    *int    `toml:"default_years"`
}

// DefaultWormYears is default_years when not set: the longest period
// common rules ask for (books, 10 years), so no object's lock ends before
// its retention does.
const DefaultWormYears = 10

// bucketName is what S3 accepts as a bucket name (3 to 63 lower-case
// letters, digits, dots and hyphens).
var bucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

func parseWorm(raw *rawWorm, dir string, addf func(string, ...any)) *Worm {
	if raw == nil {
		return nil
	}
	w := &Worm{Mode: "compliance", Region: "us-east-1", DefaultYears: DefaultWormYears}
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return strings.TrimSpace(*p)
	}
	w.Endpoint = str(raw.Endpoint)
	if w.Endpoint == "" {
		addf("archive.worm.endpoint: must be set (e.g. \"https://s3.example:9000\")")
	} else if err := checkEndpoint(w.Endpoint); err != nil {
		addf("archive.worm.endpoint: %v", err)
	} else if u, _ := url.Parse(w.Endpoint); u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		addf("archive.worm.endpoint: %q: give only scheme, host, port and path", w.Endpoint)
	}
	w.Bucket = str(raw.Bucket)
	if !bucketName.MatchString(w.Bucket) {
		addf("archive.worm.bucket: %q is not an S3 bucket name (3 to 63 lower-case letters, digits, dots and hyphens)", w.Bucket)
	}
	if m := str(raw.Mode); m != "" {
		w.Mode = m
	}
	if w.Mode != "compliance" && w.Mode != "governance" {
		addf("archive.worm.mode: %q: want compliance or governance", w.Mode)
	}
	if f := str(raw.CredentialsFile); f == "" {
		addf("archive.worm.credentials_file: must be set (a file with access_key_id and secret_access_key)")
	} else {
		w.CredentialsFile = resolveCredential(dir, f)
	}
	if r := str(raw.Region); r != "" {
		w.Region = r
	}
	if f := str(raw.CAFile); f != "" {
		w.CAFile = resolve(dir, f)
	}
	if u, err := url.Parse(w.Endpoint); err == nil && u.Scheme == "http" && w.CAFile != "" {
		addf("archive.worm.ca_file: set, but the endpoint is http")
	}
	if raw.PathStyle != nil {
		w.PathStyle = *raw.PathStyle
	}
	parseIntRange("archive.worm.default_years", raw.DefaultYears, 1, 100, &w.DefaultYears, addf)
	return w
}

// S3Mode is the mode as S3 spells it (COMPLIANCE or GOVERNANCE).
func (w *Worm) S3Mode() string { return strings.ToUpper(w.Mode) }

// ReadWormCredentials reads the credentials file: private as a password
// file must be (harvest.CheckPrivateFile), with the lines
//
//	access_key_id = AKIA…
//	secret_access_key = …
//
// (blank lines and lines starting with # ignored, values optionally
// quoted). Errors name the file and the line, never a value.
func ReadWormCredentials(path string) (worm.Credentials, error) {
	var c worm.Credentials
	if err := harvest.CheckPrivateFile(path); err != nil {
		return c, fmt.Errorf("archive.worm.credentials_file: %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("archive.worm.credentials_file: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k, v = strings.TrimSpace(k), strings.Trim(strings.TrimSpace(v), `"'`)
		switch {
		case !ok:
			return c, fmt.Errorf("archive.worm.credentials_file %s: line %d: want NAME = VALUE", path, n)
		case k == "access_key_id":
			c.AccessKeyID = v
		case k == "secret_access_key":
			c.SecretAccessKey = v
		default:
			return c, fmt.Errorf("archive.worm.credentials_file %s: line %d: unknown name (want access_key_id or secret_access_key)", path, n)
		}
	}
	if err := sc.Err(); err != nil {
		return c, fmt.Errorf("archive.worm.credentials_file %s: %w", path, err)
	}
	if c.AccessKeyID == "" || c.SecretAccessKey == "" {
		return c, fmt.Errorf("archive.worm.credentials_file %s: needs both access_key_id and secret_access_key", path)
	}
	return c, nil
}

// Client is the S3 client of w, its credentials read.
func (w *Worm) Client() (*worm.Client, error) {
	cred, err := ReadWormCredentials(w.CredentialsFile)
	if err != nil {
		return nil, err
	}
	return worm.NewClient(worm.ClientConfig{Endpoint: w.Endpoint, Bucket: w.Bucket, Region: w.Region,
		PathStyle: w.PathStyle, CAFile: w.CAFile, Credentials: cred})
}

// CheckWorm checks what [archive.worm] needs at run time: the credentials
// file (private, both values) and the ca_file. Nil without [archive.worm].
func (c *Config) CheckWorm() error {
	w := c.Archive.Worm
	if w == nil {
		return nil
	}
	if _, err := w.Client(); err != nil {
		return &Error{Path: c.Path, Problems: []string{strings.TrimPrefix(err.Error(), "worm: ")}}
	}
	return nil
}

// CheckLock asks the bucket whether Object Lock is enabled: an error
// wrapping worm.ErrNoObjectLock when it is not (smimed refuses to start),
// another error when the bucket cannot be asked.
func (w *Worm) CheckLock(ctx context.Context, c *worm.Client) (worm.Lock, error) {
	l, err := c.ObjectLock(ctx)
	if err != nil {
		return l, fmt.Errorf("archive.worm: bucket %s at %s: %w", w.Bucket, w.Endpoint, err)
	}
	return l, nil
}
