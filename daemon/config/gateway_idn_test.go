package config

import (
	"slices"
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

	// One domain written both ways is one domain: the second is refused.
	dup := writeFile(t, dir, "dup.toml", `
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
encrypt = "never"
`)
	if _, err := Load(dup); err == nil {
		t.Error("Load accepted the same domain in two policies (once in U-labels, once in A-labels)")
	}
}
