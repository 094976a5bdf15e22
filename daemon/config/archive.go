package config

// Archive is the [archive] table: evidence (seals with trusted
// timestamps), retention and the optional WORM copy. Each part is read
// by its own file (archive_seal.go, archive_retention.go,
// archive_access.go, archive_worm.go).
type Archive struct {
	Seal      Seal
	Retention Retention
	Access    Access
	Worm      *Worm // nil: no WORM copy
}

// rawArchive mirrors the [archive] table.
type rawArchive struct {
	Seal      rawSeal      `toml:"seal"`
	Retention rawRetention `toml:"retention"`
	Access    rawAccess    `toml:"access"`
	Worm      *rawWorm     `toml:"worm"`
}

// parseArchive checks the [archive] table; dir resolves relative paths.
func parseArchive(raw rawArchive, dir string, addf func(string, ...any)) Archive {
	return Archive{
		Seal:      parseSeal(raw.Seal, dir, addf),
		Retention: parseRetention(raw.Retention, dir, addf),
		Access:    parseAccess(raw.Access, addf),
		Worm:      parseWorm(raw.Worm, dir, addf),
	}
}
