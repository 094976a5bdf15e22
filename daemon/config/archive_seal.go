package config

// Seal is [archive.seal]: sealing the archive's records with trusted timestamps.
type Seal struct{}

// rawSeal mirrors its TOML table.
type rawSeal struct{}

func parseSeal(raw rawSeal, dir string, addf func(string, ...any)) Seal {
	return Seal{}
}
