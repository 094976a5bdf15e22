package config

import (
	"crypto/x509"
	"log/slog"

	"github.com/smimed/smimed/harvest"
	"github.com/smimed/smimed/harvest/cms"
	"github.com/smimed/smimed/harvest/revocation"
	"github.com/smimed/smimed/harvest/state"
)

// Crypto is what the configuration's keys and trust anchors hold, read
// from their files once.
type Crypto struct {
	Keys []*cms.Key
	// KeyAccounts, beside Keys, is the accounts each key is limited to
	// (nil: every mailbox).
	KeyAccounts [][]string
	// Warnings has one line per key loaded for decryption only
	// (LoadKeysWarn).
	Warnings []string
	Roots    *x509.CertPool
}

// LoadCrypto reads the configured keys and trust anchors. Its errors are
// the configuration's (*Error).
func (c *Config) LoadCrypto() (*Crypto, error) {
	keys, from, warnings, err := c.loadKeys()
	if err != nil {
		return nil, err
	}
	var limits [][]string
	for i := range keys {
		if acc := c.Keys[from[i]].Accounts; acc != nil {
			if limits == nil {
				limits = make([][]string, len(keys))
			}
			limits[i] = acc
		}
	}
	roots, err := c.TrustPool()
	if err != nil {
		return nil, err
	}
	return &Crypto{Keys: keys, KeyAccounts: limits, Warnings: warnings, Roots: roots}, nil
}

// NewEngine is the harvest engine the configuration describes: every
// service and command that reads mail builds its engine here. store may
// be nil (no certificates to look up); harvesting writes the certificates
// of valid signatures into store. rev answers revocation questions (see
// NewRevocation); nil: none are asked.
func (c *Config) NewEngine(cr *Crypto, store *harvest.Store, harvesting bool, net *Network) *harvest.Engine {
	return harvest.New(c.EngineOptions(cr, store, harvesting, net))
}

// Network is what the engine may ask over the network, kept across
// reloads: the CRLs (NewRevocation) and issuer certificates fetched by
// their URL. nil: nothing.
type Network struct {
	CRLs    *revocation.Checker
	Issuers *revocation.IssuerFetcher
}

// NewNetwork is the Network of a service or command, its CRLs kept in db
// (nil: in memory only).
func NewNetwork(db *state.DB, log *slog.Logger) *Network {
	return &Network{CRLs: NewRevocation(db, log), Issuers: revocation.NewIssuerFetcher(0, false)}
}

// EngineOptions are the options NewEngine builds its engine with, for a
// caller that sets more of them.
func (c *Config) EngineOptions(cr *Crypto, store *harvest.Store, harvesting bool, net *Network) harvest.Options {
	opts := harvest.Options{
		Keys:          cr.Keys,
		KeyAccounts:   cr.KeyAccounts,
		Roots:         cr.Roots,
		Store:         store,
		Harvest:       harvesting && store != nil,
		RejectSHA1:    c.Trust.RejectSHA1,
		MinValidation: c.Trust.MinValidation,
	}
	if net == nil {
		return opts
	}
	if c.Trust.Revocation != revocation.Off && net.CRLs != nil {
		opts.Revocation, opts.RevocationMode = net.CRLs, c.Trust.Revocation
		net.CRLs.SetOCSP(c.Trust.OCSP)
	}
	if c.Trust.FetchIntermediates {
		opts.Issuers = net.Issuers
	}
	return opts
}

// NewRevocation is the revocation checker for the CRLs kept in db (nil:
// in memory only), fetching those it lacks: one per service, kept across
// reloads (trust.revocation = off only stops the engine from asking).
func NewRevocation(db *state.DB, log *slog.Logger) *revocation.Checker {
	return revocation.New(db, revocation.Config{Fetch: true, Log: log})
}
