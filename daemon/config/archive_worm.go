package config

// Worm is [archive.worm]: the WORM copy.
type Worm struct{}

// rawWorm mirrors its TOML table.
type rawWorm struct{}

func parseWorm(raw *rawWorm, dir string, addf func(string, ...any)) *Worm {
	if raw == nil {
		return nil
	}
	return &Worm{}
}
