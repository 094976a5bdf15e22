package config

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"time"
)

// Seal is [archive.seal]: sealing the archive's records with trusted
// timestamps (RFC 3161). Sealing is on when at least one TSA is
// configured.
type Seal struct {
	EveryRecords int           // seal after this many records
	Interval     time.Duration // and at least this often (when something is unsealed)
	Require      int           // TSAs that must have answered for a seal to count as sealed
	Timeout      time.Duration // for one request to a TSA
	TSAs         []SealTSA
}

// SealTSA is one [[archive.seal.tsa]].
type SealTSA struct {
	URL    string
	CAFile string // resolved path: the TSA's trust anchor (PEM)
}

// Seal defaults.
const (
	DefaultSealEveryRecords = 1000
	DefaultSealInterval     = time.Hour
	DefaultSealTimeout      = 30 * time.Second
)

// Enabled reports whether seals are made.
func (s *Seal) Enabled() bool { return len(s.TSAs) > 0 }

// Roots reads the TSAs' trust anchors: the pool and the files' bytes
// (PEM, one after the other).
func (s *Seal) Roots() (*x509.CertPool, []byte, error) {
	pool := x509.NewCertPool()
	var all []byte
	for i, t := range s.TSAs {
		b, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("archive.seal.tsa[%d].ca_file: %w", i, err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, nil, fmt.Errorf("archive.seal.tsa[%d].ca_file: %s holds no PEM certificate", i, t.CAFile)
		}
		all = append(all, b...)
	}
	return pool, all, nil
}

// rawSeal mirrors its TOML table.
type rawSeal struct {
	EveryRecords *int    `toml:"every_records"`
	Interval     *string `toml:"interval"`
	Require      *int    `toml:"require"`
	Timeout      *string `toml:"timeout"`
	TSA          []struct {
		URL    string `toml:"url"`
		CAFile string `toml:"ca_file"`
	} `toml:"tsa"`
}

func parseSeal(raw rawSeal, dir string, addf func(string, ...any)) Seal {
	s := Seal{EveryRecords: DefaultSealEveryRecords, Interval: DefaultSealInterval, Require: 1, Timeout: DefaultSealTimeout}
	parseIntRange("archive.seal.every_records", raw.EveryRecords, 1, 1_000_000, &s.EveryRecords, addf)
	dur := func(key string, v *string, min time.Duration, dst *time.Duration) {
		parseDuration("archive.seal."+key, v, min, dst, addf)
	}
	dur("interval", raw.Interval, time.Minute, &s.Interval)
	dur("timeout", raw.Timeout, time.Second, &s.Timeout)
	for i, t := range raw.TSA {
		key := fmt.Sprintf("archive.seal.tsa[%d]", i)
		u, err := url.Parse(t.URL)
		switch {
		case t.URL == "":
			addf("%s.url: missing", key)
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			addf("%s.url: %q is not an http:// or https:// URL", key, t.URL)
		}
		if t.CAFile == "" {
			addf("%s.ca_file: missing (the TSA's trust anchor, PEM)", key)
		}
		s.TSAs = append(s.TSAs, SealTSA{URL: t.URL, CAFile: resolve(dir, t.CAFile)})
	}
	if raw.Require != nil {
		switch {
		case *raw.Require < 1:
			addf("archive.seal.require: %d must be at least 1", *raw.Require)
		case *raw.Require > len(raw.TSA):
			addf("archive.seal.require: %d, but only %d [[archive.seal.tsa]] configured", *raw.Require, len(raw.TSA))
		default:
			s.Require = *raw.Require
		}
	}
	return s
}
