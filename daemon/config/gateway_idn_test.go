package config

import (
	"slices"
	"strings"
	"testing"
)

// Domains with non-ASCII labels are kept in A-labels, the form of
// certificates and of SMTP without SMTPUTF8, so that a rule written
// "münchen.example" meets mail to "x@xn--mnchen-3ya.example" and the other
// way round. The A-labels are Python's (str.encode("idna")), not ours.
func TestGatewayInternationalDomains(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "smimed.toml", `
state_dir = "state"
[gateway]
listen = "127.0.0.1:10025"
relay = "127.0.0.1:10026"
internal_domains = ["Bücher.example", "org.example."]
[[gateway.policy]]
match = "MÜNCHEN.example"
encrypt = "always"
[[gateway.policy]]
match = "*.ドメイン.テスト"
encrypt = "never"
[[gateway.policy]]
match = "Anna@Bücher.example"
sign = "never"
[[gateway.policy]]
match = "xn--bcher-kva.test"
encrypt = "always"
`)
	cfg, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.Gateway
	if want := []string{"xn--bcher-kva.example", "org.example"}; !slices.Equal(g.InternalDomains, want) {
		t.Errorf("internal_domains = %q, want %q", g.InternalDomains, want)
	}
	var got []string
	for _, r := range g.Policies {
		got = append(got, r.Match)
	}
	if want := []string{"xn--mnchen-3ya.example", "*.xn--eckwd4c7c.xn--zckzah", "anna@xn--bcher-kva.example", "xn--bcher-kva.test"}; !slices.Equal(got, want) {
		t.Errorf("policy matches = %q, want %q", got, want)
	}

	// One domain written both ways is one domain: with the same settings
	// one rule (a configuration that listed both spellings still loads),
	// with others refused, naming both entries.
	both := func(name, second string) string {
		return writeFile(t, dir, name, `
state_dir = "state"
[gateway]
listen = "127.0.0.1:10025"
relay = "127.0.0.1:10026"
internal_domains = ["org.example"]
[[gateway.policy]]
match = "bücher.test"
encrypt = "always"
[[gateway.policy]]
match = "xn--bcher-kva.test"
encrypt = "`+second+`"
`)
	}
	if cfg, err := Load(both("same.toml", "always")); err != nil || len(cfg.Gateway.Policies) != 1 {
		t.Errorf("Load with both spellings, same settings = %v; want one rule", err)
	}
	dup := both("dup.toml", "never")
	if _, err := Load(dup); err == nil || !strings.Contains(err.Error(), `gateway.policy[1].match: "xn--bcher-kva.test" is the same as gateway.policy[0]'s "bücher.test"`) {
		t.Errorf("Load with both spellings, other settings = %v; want the second refused, naming the first", err)
	}
}
