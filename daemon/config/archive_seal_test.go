package config

import (
	"strings"
	"testing"
	"time"
)

func TestArchiveSeal(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "smimed.toml", `state_dir = "s"
[archive.seal]
every_records = 50
interval = "10m"
require = 2
[[archive.seal.tsa]]
url = "http://tsa.example/tsr"
ca_file = "tsa/a.pem"
[[archive.seal.tsa]]
url = "https://tsa2.example/"
ca_file = "/etc/b.pem"
`)
	cfg, err := Load(p)
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	s := cfg.Archive.Seal
	if !s.Enabled() || s.EveryRecords != 50 || s.Interval != 10*time.Minute || s.Require != 2 || s.Timeout != DefaultSealTimeout ||
		len(s.TSAs) != 2 || s.TSAs[0].CAFile != dir+"/tsa/a.pem" || s.TSAs[1].CAFile != "/etc/b.pem" {
		t.Errorf("Seal = %+v", s)
	}
	if _, _, err := s.Roots(); err == nil || !strings.Contains(err.Error(), "archive.seal.tsa[0].ca_file") {
		t.Errorf("Roots() of missing files = %v", err)
	}

	p = writeFile(t, dir, "bad.toml", `state_dir = "s"
[archive.seal]
every_records = 0
interval = "soon"
require = 3
[[archive.seal.tsa]]
url = "ftp://tsa.example/"
[[archive.seal.tsa]]
ca_file = "x.pem"
`)
	_, err = Load(p)
	for _, want := range []string{
		"archive.seal.every_records: 0 must be between",
		`archive.seal.interval: "soon" is not a duration`,
		"archive.seal.require: 3, but only 2",
		`archive.seal.tsa[0].url: "ftp://tsa.example/" is not an http:// or https:// URL`,
		"archive.seal.tsa[0].ca_file: missing",
		"archive.seal.tsa[1].url: missing",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load(bad) = %v, want %q", err, want)
		}
	}
	cfg, err = Load(writeFile(t, dir, "off.toml", "state_dir = \"s\"\n"))
	if err != nil || cfg.Archive.Seal.Enabled() {
		t.Errorf("no [archive.seal]: Enabled = %v, %v", cfg.Archive.Seal.Enabled(), err)
	}
}
