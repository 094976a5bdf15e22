package config

import (
	"os"
	"strings"
	"testing"
)

func TestWormConfig(t *testing.T) {
	dir, creds := t.TempDir(), t.TempDir()
	writeFile(t, creds, "s3.cred", "# the key\naccess_key_id = AKIDEXAMPLE\nsecret_access_key = \"wJalr/K7MDENG\"\n")
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	p := writeFile(t, dir, "smimed.toml", `
[archive.worm]
endpoint = "https://s3.example:9000"
bucket = "smimed-archive"
credentials_file = "s3.cred"
ca_file = "s3-ca.pem"
`)
	cfg, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	w := cfg.Archive.Worm
	if w == nil || w.Mode != "compliance" || w.S3Mode() != "COMPLIANCE" || w.Region != "us-east-1" || w.PathStyle || w.DefaultYears != 10 ||
		w.CredentialsFile != creds+"/s3.cred" || w.CAFile != dir+"/s3-ca.pem" {
		t.Fatalf("Worm = %+v", w)
	}
	c, err := ReadWormCredentials(w.CredentialsFile)
	if err != nil || c.AccessKeyID != "AKIDEXAMPLE" || c.SecretAccessKey != "wJalr/K7MDENG" {
		t.Fatalf("ReadWormCredentials = %+v, %v", c, err)
	}
	// No [archive.worm]: no WORM copy.
	if cfg, err := Load(writeFile(t, dir, "none.toml", "")); err != nil || cfg.Archive.Worm != nil {
		t.Fatalf("without [archive.worm]: %+v, %v", cfg.Archive.Worm, err)
	}
}

func TestWormConfigProblems(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ table, want string }{
		{`endpoint = "http://s3.example:9000"` + "\nbucket = \"b-1\"\ncredentials_file = \"c\"", "only allowed to a loopback address"},
		{`endpoint = "ftp://s3.example"` + "\nbucket = \"b-1\"\ncredentials_file = \"c\"", "want https"},
		{`endpoint = "https://s3.example/?x=1"` + "\nbucket = \"b-1\"\ncredentials_file = \"c\"", "only scheme, host, port and path"},
		{`bucket = "b-1"` + "\ncredentials_file = \"c\"", "archive.worm.endpoint: must be set"},
		{`endpoint = "https://s3.example"` + "\nbucket = \"Bad_Name\"\ncredentials_file = \"c\"", "archive.worm.bucket"},
		{`endpoint = "https://s3.example"` + "\nbucket = \"b-1\"", "archive.worm.credentials_file: must be set"},
		{`endpoint = "https://s3.example"` + "\nbucket = \"b-1\"\ncredentials_file = \"c\"\nmode = \"strict\"", `archive.worm.mode: "strict"`},
		{`endpoint = "https://s3.example"` + "\nbucket = \"b-1\"\ncredentials_file = \"c\"\ndefault_years = 0", "archive.worm.default_years"},
		{`endpoint = "http://127.0.0.1:9000"` + "\nbucket = \"b-1\"\ncredentials_file = \"c\"\nca_file = \"ca.pem\"", "archive.worm.ca_file"},
		{`endpoint = "https://s3.example"` + "\nbucket = \"b-1\"\ncredentials_file = \"c\"\nsecret = \"x\"", "archive.worm.secret"},
	} {
		_, err := Load(writeFile(t, dir, "smimed.toml", "[archive.worm]\n"+c.table+"\n"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("[archive.worm] %q: Load() = %v, want %q", c.table, err, c.want)
		}
	}
	// http to loopback is fine (a local gateway).
	if _, err := Load(writeFile(t, dir, "smimed.toml", "[archive.worm]\nendpoint = \"http://127.0.0.1:7070\"\nbucket = \"b-1\"\ncredentials_file = \"c\"\n")); err != nil {
		t.Errorf("http to loopback: %v", err)
	}
}

func TestWormCredentialsProblems(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ body, want string }{
		{"access_key_id = A\n", "needs both"},
		{"access_key_id A\nsecret_access_key = S\n", "line 1: want NAME = VALUE"},
		{"access_key_id = A\nsecret = S\n", "line 2: unknown name"},
	} {
		p := writeFile(t, dir, "c", c.body)
		_, err := ReadWormCredentials(p)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("credentials %q: %v, want %q", c.body, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "S\n") {
			t.Errorf("the error shows a value: %v", err)
		}
	}
	p := writeFile(t, dir, "open", "access_key_id = A\nsecret_access_key = S\n")
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadWormCredentials(p); err == nil || !strings.Contains(err.Error(), "readable by group or others") {
		t.Errorf("a credentials file others can read: %v", err)
	}
}
