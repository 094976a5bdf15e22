package archive

// Retention: every message record gets a retention class and the date
// until which it must be kept (retain-until), chosen when it is archived
// by a Retention policy the service sets (SetRetention).
//
// Retention is counted from the end of the calendar year of receipt (as
// German GoBD and most retention laws count it): a message received on
// any day of year Y in a class of N years is kept until the end of
// December 31 of year Y+N in the policy's time zone. Record.RetainUntil
// holds that last second (23:59:59 local, stored in UTC); the message is
// expired from the first second of the year after.

import (
	"slices"
	"sync/atomic"
	"time"

	"github.com/smimed/smimed/harvest"
)

// Retention is the policy that gives a record its class.
type Retention struct {
	// Classes maps each class name to its period in years.
	Classes map[string]int
	// Default is the class of a record no rule picks.
	Default string
	// Rules are tried in order; the first that matches picks the class.
	Rules []RetentionRule
	// EInvoiceClass is the class of a message with an e-invoice attached
	// (XRechnung, ZUGFeRD/Factur-X: IsEInvoice); "" leaves e-invoices to
	// the rules. It never shortens: when a rule picks a class with a
	// longer period, that class stays.
	EInvoiceClass string
	// Location is the time zone whose calendar years count; nil is UTC.
	Location *time.Location
}

// RetentionRule picks Class for a record that matches every list given
// (an empty list matches all); within one list any entry matches.
type RetentionRule struct {
	Class       string
	FromDomains []string // the From address's domain (harvest.AddressDomain)
	ToDomains   []string // the domain of any To or Cc address (the same)
	Folders     []string // the IMAP folder fetched from, exactly
	Accounts    []string // the account (mailbox) fetched for, exactly
}

func (ru *RetentionRule) match(r *Record) bool {
	if len(ru.FromDomains) > 0 && !slices.Contains(ru.FromDomains, harvest.AddressDomain(r.From)) {
		return false
	}
	if len(ru.ToDomains) > 0 && !slices.ContainsFunc(r.To, func(a string) bool {
		return slices.Contains(ru.ToDomains, harvest.AddressDomain(a))
	}) {
		return false
	}
	if len(ru.Folders) > 0 && !slices.Contains(ru.Folders, r.Folder) {
		return false
	}
	if len(ru.Accounts) > 0 && !slices.Contains(ru.Accounts, r.Account) {
		return false
	}
	return true
}

// Class returns the class of r: the first matching rule's, else the
// default; an e-invoice (einvoice true) is at least EInvoiceClass.
func (p *Retention) Class(r *Record, einvoice bool) string {
	class := p.Default
	for i := range p.Rules {
		if p.Rules[i].match(r) {
			class = p.Rules[i].Class
			break
		}
	}
	if einvoice && p.EInvoiceClass != "" && p.Classes[p.EInvoiceClass] > p.Classes[class] {
		class = p.EInvoiceClass
	}
	return class
}

// RetainUntil is the last second a message received at received must
// be kept in a class of years: 23:59:59 on December 31 of the receipt
// year plus years, in loc (nil: UTC), returned in UTC.
func RetainUntil(received time.Time, years int, loc *time.Location) time.Time {
	if loc == nil {
		loc = time.UTC
	}
	y := received.In(loc).Year() + years
	return time.Date(y, 12, 31, 23, 59, 59, 0, loc).UTC()
}

// Expired reports whether r's retention has ended at now: now is after
// its RetainUntil's last second. A record without a retain-until (not a
// message, or no policy) never expires.
func (r *Record) Expired(now time.Time) bool {
	return !r.RetainUntil.IsZero() && !now.Before(r.RetainUntil.Add(time.Second))
}

// SetRetention sets the policy that classifies records from now on (and
// records written before retention existed, when they are read); nil:
// none.
func (a *Archive) SetRetention(p *Retention) { a.retention.Store(p) }

// retentionPolicy is the current policy, or nil.
func (a *Archive) retentionPolicy() *Retention { return a.retention.Load() }

// classify sets r's class and retain-until from the policy, if any;
// plaintext (nil when not fetched) is searched for an e-invoice.
func (a *Archive) classify(r *Record, plaintext []byte) {
	p := a.retentionPolicy()
	if p == nil {
		return
	}
	r.Class = p.Class(r, plaintext != nil && IsEInvoice(plaintext))
	if years, ok := p.Classes[r.Class]; ok {
		r.RetainUntil = RetainUntil(r.When(), years, p.Location)
	}
}

// fillRetention gives a message record archived before retention
// existed a class and retain-until computed from the current policy
// (rules and default only: its plaintext is not read for an e-invoice),
// marked RetentionFromConfig. Nothing is written.
func (a *Archive) fillRetention(r *Record) {
	if r.Kind != KindMessage || r.Class != "" {
		return
	}
	p := a.retentionPolicy()
	if p == nil {
		return
	}
	r.Class = p.Class(r, false)
	if years, ok := p.Classes[r.Class]; ok {
		r.RetainUntil = RetainUntil(r.When(), years, p.Location)
	}
	r.RetentionFromConfig = true
}

// retentionPointer is the policy's holder (an atomic pointer, so the
// service can swap it on reload while messages are archived).
type retentionPointer = atomic.Pointer[Retention]
