package config

import (
	"crypto/x509"

	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/cms"
)

// Crypto is what the configuration's keys and trust anchors hold, read
// from their files once.
type Crypto struct {
	Keys []*cms.Key
	// Warnings has one line per key loaded for decryption only
	// (LoadKeysWarn).
	Warnings []string
	Roots    *x509.CertPool
}

// LoadCrypto reads the configured keys and trust anchors. Its errors are
// the configuration's (*Error).
func (c *Config) LoadCrypto() (*Crypto, error) {
	keys, warnings, err := c.LoadKeysWarn()
	if err != nil {
		return nil, err
	}
	roots, err := c.TrustPool()
	if err != nil {
		return nil, err
	}
	return &Crypto{Keys: keys, Warnings: warnings, Roots: roots}, nil
}

// NewEngine is the harvest engine the configuration describes: every
// service and command that reads mail builds its engine here. store may
// be nil (no certificates to look up); harvesting writes the certificates
// of valid signatures into store.
func (c *Config) NewEngine(cr *Crypto, store *harvest.Store, harvesting bool) *harvest.Engine {
	return harvest.New(c.EngineOptions(cr, store, harvesting))
}

// EngineOptions are the options NewEngine builds its engine with, for a
// caller that sets more of them.
func (c *Config) EngineOptions(cr *Crypto, store *harvest.Store, harvesting bool) harvest.Options {
	return harvest.Options{
		Keys:       cr.Keys,
		Roots:      cr.Roots,
		Store:      store,
		Harvest:    harvesting && store != nil,
		RejectSHA1: c.Trust.RejectSHA1,
	}
}
