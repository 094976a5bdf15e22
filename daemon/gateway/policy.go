package gateway

// This file is the gateway's policy: which mail is the organisation's,
// which settings apply to a recipient ([[gateway.policy]], most specific
// first), and the decision for one message.

import (
	"fmt"
	"slices"
	"strings"

	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/harvest"
)

// Policy is the part of [gateway] that a reload may change.
type Policy struct {
	Internal       []string // lower-case domains
	Sign           string   // config.SignAlways or SignNever
	Encrypt        string   // config.EncryptIfPossible, EncryptAlways or EncryptNever
	EncryptTrigger string
	ProtectHeaders bool
	Rules          []config.GatewayPolicy
}

// PolicyOf is the policy of a [gateway] table.
func PolicyOf(g *config.Gateway) *Policy {
	return &Policy{
		Internal: g.InternalDomains, Sign: g.Sign, Encrypt: g.Encrypt,
		EncryptTrigger: g.EncryptTrigger, ProtectHeaders: g.ProtectHeaders, Rules: g.Policies,
	}
}

// IsInternal tells whether addr is in one of the organisation's domains
// (a subdomain is not: internal_domains lists each).
func (p *Policy) IsInternal(addr string) bool {
	d := harvest.AddressDomain(addr)
	return d != "" && slices.Contains(p.Internal, d)
}

// For is the sign and encrypt settings for the recipient addr: the rule
// for the address, else for its domain, else for the nearest *.domain
// above it, else [gateway]'s. A rule without a setting leaves it to the
// next.
func (p *Policy) For(addr string) (sign, encrypt string) {
	// As the store compares it: "a@partner.example." is delivered to
	// partner.example, so it meets partner.example's rules, and
	// "a@bücher.example" is "a@xn--bcher-kva.example".
	addr = harvest.NormalizeAddress(addr)
	sign, encrypt = "", ""
	for _, m := range matchOrder(addr) {
		for _, r := range p.Rules {
			if r.Match != m {
				continue
			}
			if sign == "" {
				sign = r.Sign
			}
			if encrypt == "" {
				encrypt = r.Encrypt
			}
		}
	}
	if sign == "" {
		sign = p.Sign
	}
	if encrypt == "" {
		encrypt = p.Encrypt
	}
	return sign, encrypt
}

// matchOrder lists the matches that apply to addr, most specific first:
// the address, the domain, then *.parent for each parent domain.
func matchOrder(addr string) []string {
	d := harvest.AddressDomain(addr)
	if d == "" {
		return []string{addr}
	}
	out := []string{addr, d}
	for rest := d; ; {
		_, parent, ok := strings.Cut(rest, ".")
		if !ok || parent == "" {
			break
		}
		out = append(out, "*."+parent)
		rest = parent
	}
	return out
}

// Action is what the gateway does with a message.
type Action int

const (
	Pass        Action = iota // handed on unchanged
	SignOnly                  // signed
	EncryptOnly               // encrypted, not signed
	SignEncrypt               // signed, then encrypted
	Refuse                    // not handed on
)

func (a Action) String() string {
	return [...]string{"pass", "sign", "encrypt", "sign+encrypt", "refuse"}[a]
}

// Decision is the policy's answer for one message.
type Decision struct {
	Action  Action
	Reasons []string // why, one short sentence each (archived, logged)
	// Missing are the external recipients without a usable certificate.
	Missing []string
	// Recipients to encrypt to (escrow added by the caller).
	Recipients []Recipient
	Signer     *Signer
	Unsigned   bool // sign = always, and no identity covers the sender
	Trigger    bool // the Subject held encrypt_trigger (removed)
}

// Facts are what the decision is made from.
type Facts struct {
	EnvelopeFrom string
	From         []string // the From field's addresses; nil when unreadable
	FromErr      error    // why From is nil
	Recipients   []string
	Trigger      bool
	// Allowed says whether the sender may sign as addr (submission: the
	// upstream accepted it for the login); nil: any.
	Allowed func(addr string) bool
}

// Lookup finds certificates and identities.
type Lookup interface {
	RecipientCert(addr string) (*Recipient, error) // nil, nil: none usable
	Signer(addr string) *Signer                    // nil: no identity
}

// Decide is the policy's decision for one message. An error is a local
// failure (the certificate store could not be read): the message must
// not be sent.
func (p *Policy) Decide(f Facts, look Lookup) (Decision, error) {
	var d Decision
	d.Trigger = f.Trigger
	reason := func(format string, args ...any) { d.Reasons = append(d.Reasons, fmt.Sprintf(format, args...)) }
	envInternal := p.IsInternal(f.EnvelopeFrom)
	if !envInternal && !slices.ContainsFunc(f.From, p.IsInternal) {
		reason("envelope sender %q is not in internal_domains", f.EnvelopeFrom)
		return d, nil
	}
	rcpts := make([]string, len(f.Recipients))
	for i, r := range f.Recipients {
		rcpts[i] = p.destination(r)
	}
	// The strongest encrypt setting of the recipients: always beats
	// if-possible beats never (never leaks nothing by encrypting).
	encrypt, sign := config.EncryptNever, config.SignNever
	for _, r := range rcpts {
		if p.IsInternal(r) {
			continue
		}
		s, e := p.For(r)
		if s == config.SignAlways {
			sign = s
		}
		if rank(e) > rank(encrypt) {
			encrypt = e
		}
	}
	allInternal := encrypt == config.EncryptNever && sign == config.SignNever && !slices.ContainsFunc(rcpts, func(r string) bool { return !p.IsInternal(r) })
	if allInternal {
		// Internal mail follows [gateway]'s own settings for signing;
		// it is encrypted only on request (trigger).
		sign = p.Sign
	}
	if f.Trigger {
		encrypt = config.EncryptAlways
		reason("the Subject held encrypt_trigger")
	}
	if !envInternal {
		// A From of the organisation with a foreign envelope sender (a
		// null sender, a bounce address): not the organisation's mail,
		// but it must not leave in clear where encryption is required.
		reason("envelope sender %q is not in internal_domains", f.EnvelopeFrom)
		if encrypt == config.EncryptAlways {
			d.Action = Refuse
			reason("encryption is required and the mail is not wholly the organisation's")
		}
		return d, nil
	}
	if f.From == nil {
		if encrypt == config.EncryptAlways {
			d.Action = Refuse
			reason("the From field cannot be read (%v) and the message must be encrypted", f.FromErr)
			return d, nil
		}
		reason("the From field cannot be read (%v): passed unchanged", f.FromErr)
		return d, nil
	}
	for _, a := range f.From {
		if !p.IsInternal(a) {
			reason("From %q is not in internal_domains", a)
			if encrypt == config.EncryptAlways {
				// Passing it would send in clear what must be
				// encrypted: an internal sender could escape the
				// policy with a foreign From.
				d.Action = Refuse
				reason("encryption is required and the mail is not wholly the organisation's")
			}
			return d, nil
		}
	}
	if f.Allowed != nil {
		for _, a := range f.From {
			if a != strings.ToLower(f.EnvelopeFrom) && !f.Allowed(a) {
				d.Action = Refuse
				reason("From %q is neither the envelope sender nor an address the upstream accepted for this login", a)
				return d, nil
			}
		}
	}

	if sign == config.SignAlways {
		switch {
		case len(f.From) != 1:
			reason("%d From addresses: not signed", len(f.From))
		case f.Allowed == nil && f.From[0] != strings.ToLower(f.EnvelopeFrom):
			// A filter knows no login: the envelope sender, which the
			// MTA checked, is the only address it may sign as.
			reason("From %s is not the envelope sender: not signed", f.From[0])
		default:
			d.Signer = look.Signer(f.From[0])
		}
		if d.Signer == nil {
			d.Unsigned = true
			reason("no signing identity for %s: sent unsigned", strings.Join(f.From, ", "))
		}
	}

	var external int
	if encrypt != config.EncryptNever {
		for _, r := range rcpts {
			if p.IsInternal(r) {
				continue // read through the escrow key
			}
			external++
			rc, err := look.RecipientCert(r)
			if err != nil {
				return d, fmt.Errorf("certificate of %s: %w", r, err)
			}
			if rc == nil {
				d.Missing = append(d.Missing, r)
				continue
			}
			rc.Address = r
			d.Recipients = append(d.Recipients, *rc)
		}
	}
	switch {
	case encrypt == config.EncryptAlways && len(d.Missing) > 0:
		d.Action = Refuse
		d.Recipients = nil
		reason("encryption required and no usable certificate for %s", strings.Join(d.Missing, ", "))
		return d, nil
	case encrypt == config.EncryptIfPossible && len(d.Missing) > 0:
		reason("not encrypted: no usable certificate for %s", strings.Join(d.Missing, ", "))
		d.Recipients = nil
	case encrypt == config.EncryptIfPossible && external == 0:
		reason("not encrypted: internal recipients only")
	case encrypt == config.EncryptNever:
		reason("encrypt = never for these recipients")
	default:
		if f.Trigger || encrypt == config.EncryptAlways {
			reason("encrypted: required")
		} else {
			reason("encrypted: every external recipient has a certificate")
		}
		if d.Signer != nil {
			d.Action = SignEncrypt
		} else {
			d.Action = EncryptOnly
		}
		return d, nil
	}
	d.Recipients = nil
	if d.Signer != nil {
		d.Action = SignOnly
	}
	return d, nil
}

// destination is where an MTA delivers the recipient addr, normalised
// (harvest.NormalizeAddress): for an address in internal_domains whose local part routes
// on ("carol%partner.example@org.example", "partner.example!carol@org.example";
// Postfix's allow_percent_hack and swap_bangpath, both on by default,
// rewrite these for its own domains) the address it routes to, so that
// it meets that address's policy and certificate and is not taken for
// an internal recipient.
//
// A recipient without a domain (RCPT TO:<postmaster>, RFC 5321 4.1.1.3)
// is local to the next hop, which qualifies it with its own domain: it
// is taken in the first of internal_domains (and routed on from there),
// rather than looked up in the certificate store, which refuses an
// address without a domain (and the message was answered 451 for ever).
func (p *Policy) destination(addr string) string {
	addr = harvest.NormalizeAddress(addr)
	if !strings.Contains(addr, "@") && addr != "" && len(p.Internal) > 0 {
		addr += "@" + p.Internal[0]
	}
	for range 8 {
		i := strings.LastIndexByte(addr, '@')
		if i <= 0 || addr[0] == '"' || !p.IsInternal(addr) {
			return addr
		}
		local := addr[:i]
		if j := strings.LastIndexByte(local, '%'); j >= 0 {
			addr = harvest.NormalizeAddress(local[:j] + "@" + local[j+1:])
		} else if j := strings.IndexByte(local, '!'); j >= 0 {
			addr = harvest.NormalizeAddress(local[j+1:] + "@" + local[:j])
		} else {
			return addr
		}
	}
	return addr
}

func rank(encrypt string) int {
	switch encrypt {
	case config.EncryptAlways:
		return 2
	case config.EncryptIfPossible:
		return 1
	}
	return 0
}
