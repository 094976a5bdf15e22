package archive

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// hostileHeaderCase is one header value a sender controls, the field it
// goes into, and what the record must hold (written by hand: invalid UTF-8
// is U+FFFD per byte, as JSON stores it; NUL, CR and LF are a space;
// leading and trailing spaces go; a value over 2048 bytes is cut there
// and ends in "…").
type hostileHeaderCase struct {
	name  string
	field string // From, To, Cc, Subject, Message-ID
	raw   string // the field's value on the wire
	want  string // the record's value (From, Subject, Message-ID) or one of its To addresses
	query Query  // finds it by the raw value
}

var longLocal = strings.Repeat("x", 3000)

func hostileHeaderCases() []hostileHeaderCase {
	cut := strings.Repeat("x", maxField) + "…"
	return []hostileHeaderCase{
		{"message-id invalid UTF-8", "Message-ID", "<\xff\xfe@evil.example>", "<\ufffd\ufffd@evil.example>", Query{MessageID: "<\xff\xfe@evil.example>"}},
		{"message-id NUL", "Message-ID", "<a\x00b@evil.example>", "<a b@evil.example>", Query{MessageID: "<a\x00b@evil.example>"}},
		{"message-id CR", "Message-ID", "<a\rb@evil.example>", "<a b@evil.example>", Query{MessageID: "<a\rb@evil.example>"}},
		{"message-id overlong", "Message-ID", "<" + longLocal + "@evil.example>", "<" + cut[:maxField-1] + "…", Query{MessageID: "<" + longLocal + "@evil.example>"}},
		{"subject invalid UTF-8", "Subject", "pay \xff\xfe now", "pay \ufffd\ufffd now", Query{Subject: "\xff\xfe"}},
		{"subject NUL", "Subject", "pay\x00now", "pay now", Query{Subject: "pay\x00now"}},
		{"subject CR", "Subject", "pay\rnow", "pay now", Query{Subject: "pay\rnow"}},
		{"subject overlong", "Subject", longLocal, cut, Query{Subject: longLocal}},
		{"from invalid UTF-8", "From", "m\xffllory@evil.example", "m\ufffdllory@evil.example", Query{From: "m\xffllory@evil.example"}},
		{"from NUL", "From", "mal\x00lory@evil.example", "mal lory@evil.example", Query{From: "mal\x00lory@evil.example"}},
		{"from CR", "From", "mal\rlory@evil.example", "mal lory@evil.example", Query{From: "mal\rlory@evil.example"}},
		{"from overlong", "From", longLocal + "@evil.example", cut, Query{From: longLocal + "@evil.example"}},
		{"to invalid UTF-8", "To", "c\xffo@org.example", "c\ufffdo@org.example", Query{To: "c\xffo@org.example"}},
		{"cc invalid UTF-8", "Cc", "\"x\" <c\xfe\xffo@org.example>", "c\ufffd\ufffdo@org.example", Query{To: "c\xfe\xffo@org.example"}},
		{"to NUL", "To", "c\x00o@org.example", "o@org.example", Query{To: "o@org.example"}},
		{"cc CR", "Cc", "c\ro@org.example", "o@org.example", Query{To: "o@org.example"}},
		{"to overlong", "To", longLocal + "@org.example", cut, Query{To: longLocal + "@org.example"}},
	}
}

// hostileMessage is a plain message with one hostile field; the others
// are ordinary.
func hostileMessage(tc hostileHeaderCase) []byte {
	fields := map[string]string{
		"From": "alice@partner.example", "To": "ceo@org.example", "Subject": "hello",
		"Message-ID": "<ok@partner.example>", "Date": "Mon, 2 Mar 2026 10:00:00 +0100",
	}
	fields[tc.field] = tc.raw
	var b strings.Builder
	for _, k := range []string{"From", "To", "Cc", "Subject", "Message-ID", "Date"} {
		if v, ok := fields[k]; ok {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\nbody\r\n")
	return []byte(b.String())
}

// TestHostileHeaderValuesIndexed: every indexed header value with invalid
// UTF-8, NUL, CR or an overlong value is stored as one sanitised string
// the indexes are built from, so verify finds nothing wrong and a query
// by the raw value (or by the value as list shows it) finds the record.
func TestHostileHeaderValuesIndexed(t *testing.T) {
	eng := engine(t)
	for _, tc := range hostileHeaderCases() {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := openTest(t)
			rec, _ := put(t, a, eng, src(1), hostileMessage(tc))
			stored, err := a.Get(rec.ID)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			switch tc.field {
			case "Message-ID":
				got = []string{stored.MessageID}
			case "Subject":
				got = []string{stored.Subject}
			case "From":
				got = []string{stored.From}
			default:
				got = stored.To
			}
			if !slices.Contains(got, tc.want) {
				t.Errorf("record %s = %q, want %q among them", tc.field, got, tc.want)
			}
			if rec.MessageID != stored.MessageID || rec.Subject != stored.Subject || rec.From != stored.From || !slices.Equal(rec.To, stored.To) {
				t.Errorf("Put returned %q/%q/%q/%q, the store holds %q/%q/%q/%q", rec.MessageID, rec.Subject, rec.From, rec.To, stored.MessageID, stored.Subject, stored.From, stored.To)
			}
			res, err := a.Verify(nil)
			if err != nil || !res.OK() {
				t.Fatalf("Verify = %+v, %v; want no problems", res, err)
			}
			find := func(q Query) bool {
				found := false
				if err := a.List(q, func(r *Record) error { found = found || r.ID == rec.ID; return nil }); err != nil {
					t.Fatalf("List(%#v) = %v", q, err)
				}
				return found
			}
			if !find(tc.query) {
				t.Errorf("List(%#v) by the raw value does not find the record", tc.query)
			}
			// The value as stored (and shown by list) finds it too.
			shown := tc.query
			switch {
			case shown.MessageID != "":
				shown.MessageID = stored.MessageID
			case shown.Subject != "":
				shown.Subject = stored.Subject
			case shown.From != "":
				shown.From = stored.From
			case shown.To != "":
				shown.To = tc.want
			}
			if !find(shown) {
				t.Errorf("List(%#v) by the stored value does not find the record", shown)
			}
		})
	}
}
