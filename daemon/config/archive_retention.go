package config

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/harvest"
)

// Retention is [archive.retention]: retention classes, the rules that
// pick one, and the calendar whose years count.
type Retention struct {
	DefaultClass string
	// Classes maps each class to its period in years.
	Classes map[string]int
	Rules   []RetentionRule
	// EInvoiceClass is the least class of a message with an e-invoice
	// attached; "" none.
	EInvoiceClass string
	TimeZone      string
	Location      *time.Location
}

// RetentionRule is one [[archive.retention.rule]]: the class of mail
// matching every list given.
type RetentionRule struct {
	Class                                     string
	FromDomains, ToDomains, Folders, Accounts []string
}

// DefaultRetention is the policy without an [archive.retention] table:
// letters 6 years, bookings 8, books 10 (the GoBD periods), letters by
// default, e-invoices bookings, calendar years in UTC.
func DefaultRetention() Retention {
	return Retention{DefaultClass: "letters", Classes: map[string]int{"letters": 6, "bookings": 8, "books": 10},
		EInvoiceClass: "bookings", TimeZone: "UTC", Location: time.UTC}
}

// Policy is the archive's form of r.
func (r Retention) Policy() *archive.Retention {
	p := &archive.Retention{Classes: r.Classes, Default: r.DefaultClass, EInvoiceClass: r.EInvoiceClass, Location: r.Location}
	for _, ru := range r.Rules {
		p.Rules = append(p.Rules, archive.RetentionRule{Class: ru.Class, FromDomains: ru.FromDomains, ToDomains: ru.ToDomains, Folders: ru.Folders, Accounts: ru.Accounts})
	}
	return p
}

// ClassNames lists the classes, shortest period first.
func (r Retention) ClassNames() []string {
	var out []string
	for c := range r.Classes {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if r.Classes[out[i]] != r.Classes[out[j]] {
			return r.Classes[out[i]] < r.Classes[out[j]]
		}
		return out[i] < out[j]
	})
	return out
}

// rawRetention mirrors its TOML table.
type rawRetention struct {
	DefaultClass  *string            `toml:"default_class"`
	Classes       map[string]string  `toml:"classes"`
	EInvoiceClass *string            `toml:"einvoice_class"`
	TimeZone      *string            `toml:"time_zone"`
	Rule          []rawRetentionRule `toml:"rule"`
}

type rawRetentionRule struct {
	Class      string   `toml:"class"`
	FromDomain []string `toml:"from_domain"`
	ToDomain   []string `toml:"to_domain"`
	Folder     []string `toml:"folder"`
	Account    []string `toml:"account"`
}

var (
	classNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)
	yearsPattern     = regexp.MustCompile(`^([0-9]{1,3})y$`)
)

// maxRetentionYears bounds a class's period.
const maxRetentionYears = 100

func parseRetention(raw rawRetention, dir string, addf func(string, ...any)) Retention {
	r := DefaultRetention()
	if raw.Classes != nil {
		r.Classes = map[string]int{}
		for name, v := range raw.Classes {
			m := yearsPattern.FindStringSubmatch(v)
			n := -1
			if m != nil {
				n, _ = strconv.Atoi(m[1])
			}
			switch {
			case !classNamePattern.MatchString(name):
				addf("archive.retention.classes.%s: a class name is 1-32 of a-z 0-9 _ -, starting with a letter or digit", name)
			case n < 0 || n > maxRetentionYears:
				addf("archive.retention.classes.%s: %q: want a number of years such as \"6y\" (0y to %dy)", name, v, maxRetentionYears)
			default:
				r.Classes[name] = n
			}
		}
	}
	known := func(key, class string) bool {
		if _, ok := r.Classes[class]; ok {
			return true
		}
		addf("%s: class %q is not one of archive.retention.classes (%s)", key, class, strings.Join(r.ClassNames(), ", "))
		return false
	}
	if raw.DefaultClass != nil {
		r.DefaultClass = *raw.DefaultClass
	}
	if raw.DefaultClass != nil || raw.Classes != nil {
		known("archive.retention.default_class", r.DefaultClass)
	}
	if raw.EInvoiceClass != nil {
		r.EInvoiceClass = *raw.EInvoiceClass
	} else if _, ok := r.Classes[r.EInvoiceClass]; !ok {
		r.EInvoiceClass = "" // classes of its own without "bookings"
	}
	if r.EInvoiceClass != "" {
		known("archive.retention.einvoice_class", r.EInvoiceClass)
	}
	if raw.TimeZone != nil {
		loc, err := time.LoadLocation(*raw.TimeZone)
		if err != nil || *raw.TimeZone == "" || *raw.TimeZone == "Local" {
			addf("archive.retention.time_zone: %q: want an IANA time zone such as \"Europe/Berlin\" or \"UTC\"", *raw.TimeZone)
		} else {
			r.TimeZone, r.Location = *raw.TimeZone, loc
		}
	}
	for i, ru := range raw.Rule {
		key := fmt.Sprintf("archive.retention.rule[%d]", i)
		if ru.Class == "" {
			addf("%s: class is required", key)
			continue
		}
		if !known(key+".class", ru.Class) {
			continue
		}
		if len(ru.FromDomain)+len(ru.ToDomain)+len(ru.Folder)+len(ru.Account) == 0 {
			addf("%s: give at least one of from_domain, to_domain, folder, account (the default class covers all other mail)", key)
			continue
		}
		rule := RetentionRule{Class: ru.Class, Folders: ru.Folder, Accounts: ru.Account}
		for _, lists := range []struct {
			name string
			in   []string
			out  *[]string
		}{{"from_domain", ru.FromDomain, &rule.FromDomains}, {"to_domain", ru.ToDomain, &rule.ToDomains}} {
			for _, d := range lists.in {
				d = harvest.ASCIIDomain(strings.TrimPrefix(strings.TrimSpace(d), "@"))
				if d == "" || strings.ContainsAny(d, "@ \t") {
					addf("%s.%s: %q is not a domain", key, lists.name, d)
					continue
				}
				*lists.out = append(*lists.out, d)
			}
		}
		if slices.Contains(ru.Folder, "") || slices.Contains(ru.Account, "") {
			addf("%s: an empty folder or account name", key)
			continue
		}
		r.Rules = append(r.Rules, rule)
	}
	return r
}

// RetentionWarnings names each retention rule's account or folder that no
// [[accounts]] entry has: most likely a typo, which would give the mail it
// meant the default class (a rule may name an account removed since, whose
// archived mail it still matches, so this is a warning).
func (c *Config) RetentionWarnings() []string {
	accounts, folders := map[string]bool{}, map[string]bool{}
	for _, a := range c.Accounts {
		accounts[a.Name] = true
		for _, f := range a.Folders {
			folders[f] = true
		}
	}
	var out []string
	for i, ru := range c.Archive.Retention.Rules {
		for _, a := range ru.Accounts {
			if !accounts[a] {
				out = append(out, fmt.Sprintf("archive.retention.rule[%d].account: %q is the name of no [[accounts]] entry (names are compared exactly)", i, a))
			}
		}
		for _, f := range ru.Folders {
			if !folders[f] {
				out = append(out, fmt.Sprintf("archive.retention.rule[%d].folder: %q is in no [[accounts]] entry's folders (names are compared exactly)", i, f))
			}
		}
	}
	return out
}
