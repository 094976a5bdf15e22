package config

import (
	"reflect"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// knownKeys lists the keys of each table of the file ("" for the top
// level), read from rawConfig's toml tags.
var knownKeys = func() map[string][]string {
	out := map[string][]string{}
	var walk func(table string, t reflect.Type)
	walk = func(table string, t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return
		}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if name == "" && f.Anonymous {
				walk(table, f.Type) // embedded: its keys are the table's
				continue
			}
			if name == "" || name == "-" {
				continue
			}
			ft := f.Type
			for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft != reflect.TypeFor[struct{}]() {
				walk(strings.TrimPrefix(table+"."+name, "."), ft)
				continue
			}
			out[table] = append(out[table], name)
		}
	}
	walk("", reflect.TypeFor[rawConfig]())
	return out
}()

// unknownKey is the problem of a key the file has and smimed does not
// know, with a hint: the table it belongs in, or the known key of its
// table it is closest to.
func unknownKey(k toml.Key) string {
	table, name := strings.Join(k[:len(k)-1], "."), k[len(k)-1]
	msg := k.String() + ": unknown key"
	var elsewhere []string
	for t, keys := range knownKeys {
		if t != table && slices.Contains(keys, name) {
			elsewhere = append(elsewhere, tableName(t))
		}
	}
	if len(elsewhere) > 0 {
		slices.Sort(elsewhere)
		return msg + "; " + name + " belongs in " + strings.Join(elsewhere, " or ")
	}
	best, bestDist := "", 3
	for _, known := range knownKeys[table] {
		if d := editDistance(name, known); d < bestDist {
			best, bestDist = known, d
		}
	}
	if best != "" {
		return msg + "; did you mean " + best + "?"
	}
	return msg
}

// tableName is how the file writes table t.
func tableName(t string) string {
	switch t {
	case "":
		return "the top level (before any table)"
	case "keys", "accounts":
		return "[[" + t + "]]"
	}
	return "[" + t + "]"
}

// editDistance is the Levenshtein distance of a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
