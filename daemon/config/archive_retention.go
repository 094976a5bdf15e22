package config

// Retention is [archive.retention]: retention classes.
type Retention struct{}

// rawRetention mirrors its TOML table.
type rawRetention struct{}

func parseRetention(raw rawRetention, dir string, addf func(string, ...any)) Retention {
	return Retention{}
}
