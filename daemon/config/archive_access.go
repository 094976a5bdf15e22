package config

import (
	"regexp"
	"strings"
	"time"

	"github.com/smimed/smimed/archive"
)

// Access is [archive.access]: the auditor role.
type Access struct {
	// AuditorGroup is the group whose members are auditors: they may
	// read and export (restricted mail too), nothing else; "" none.
	AuditorGroup string
	// AuditorQuery, if set, limits what auditors see (the list filters).
	AuditorQuery *archive.Query
}

type rawAccess struct {
	AuditorGroup string         `toml:"auditor_group"`
	AuditorQuery *rawSavedQuery `toml:"auditor_query"`
}

// rawSavedQuery is a query in the configuration: the list filters.
type rawSavedQuery struct {
	From    string `toml:"from"`
	To      string `toml:"to"`
	Subject string `toml:"subject"`
	Account string `toml:"account"`
	Since   string `toml:"since"`
	Until   string `toml:"until"`
}

var groupNamePattern = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}\$?$`)

func parseAccess(raw rawAccess, addf func(string, ...any)) Access {
	a := Access{AuditorGroup: raw.AuditorGroup}
	if a.AuditorGroup != "" && !groupNamePattern.MatchString(a.AuditorGroup) {
		addf("archive.access.auditor_group: %q is not a group name", a.AuditorGroup)
		a.AuditorGroup = ""
	}
	if q := raw.AuditorQuery; q != nil {
		aq := &archive.Query{From: q.From, To: q.To, Subject: q.Subject, Account: q.Account}
		for _, d := range []struct {
			key string
			in  string
			out *time.Time
		}{{"since", q.Since, &aq.Since}, {"until", q.Until, &aq.Until}} {
			if d.in == "" {
				continue
			}
			t, err := time.Parse(time.DateOnly, d.in)
			if err != nil {
				addf("archive.access.auditor_query.%s: %q: want a date YYYY-MM-DD", d.key, d.in)
				continue
			}
			if d.key == "until" {
				t = t.AddDate(0, 0, 1) // the whole day included
			}
			*d.out = t
		}
		if err := aq.Check(); err != nil {
			addf("archive.access.auditor_query: %v", err)
		}
		if *aq == (archive.Query{}) {
			addf("archive.access.auditor_query: no filter given (leave the table out to let auditors see everything)")
		}
		if strings.TrimSpace(aq.From+aq.To+aq.Subject+aq.Account) != aq.From+aq.To+aq.Subject+aq.Account {
			addf("archive.access.auditor_query: a filter starts or ends with spaces")
		}
		a.AuditorQuery = aq
	}
	return a
}
