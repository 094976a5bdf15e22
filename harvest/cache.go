package harvest

// This file holds what the engine remembers from one message to the next
// to save work: parsed certificates (certCache) and the chains crypto/x509
// built for them (chaincache.go). Neither may ever change a verdict, and
// neither may keep a reference into a message's memory (the engine writes
// the plaintext into its own buffers, and a cached certificate must not
// keep a message alive): cached certificates are parsed from private
// copies of their DER.

import (
	"bytes"
	"container/list"
	"crypto/sha256"
	"crypto/x509"
	"sync"
)

// lru is a map bounded by its number of entries and their total weight
// (an estimate of the memory each holds), which drops the least recently
// used entries first. It is safe for concurrent use.
type lru[K comparable, V any] struct {
	mu         sync.Mutex
	maxEntries int
	maxWeight  int
	weight     int
	items      map[K]*list.Element
	order      list.List // of *lruEntry; front: most recently used
}

type lruEntry[K comparable, V any] struct {
	key    K
	val    V
	weight int
}

func newLRU[K comparable, V any](maxEntries, maxWeight int) *lru[K, V] {
	return &lru[K, V]{maxEntries: maxEntries, maxWeight: maxWeight, items: map[K]*list.Element{}}
}

func (c *lru[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*lruEntry[K, V]).val, true
}

// add stores v under k (replacing what was there) unless its weight alone
// is over the bound, then drops old entries until the bounds hold.
func (c *lru[K, V]) add(k K, v V, weight int) {
	if weight > c.maxWeight {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.remove(e)
	}
	c.items[k] = c.order.PushFront(&lruEntry[K, V]{key: k, val: v, weight: weight})
	c.weight += weight
	for len(c.items) > c.maxEntries || c.weight > c.maxWeight {
		c.remove(c.order.Back())
	}
}

func (c *lru[K, V]) remove(e *list.Element) {
	le := c.order.Remove(e).(*lruEntry[K, V])
	delete(c.items, le.key)
	c.weight -= le.weight
}

// len is the number of entries.
func (c *lru[K, V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}

// Bounds of the certificate cache: a few thousand certificates of
// ordinary size (1–2 KB of DER, about 5 KB parsed).
const (
	certCacheEntries = 4096
	certCacheWeight  = 32 << 20
	// certCacheMaxDER: a larger certificate (no real signer has one) is
	// parsed every time.
	certCacheMaxDER = 16 << 10
)

// certCache keeps certificates parsed, by the SHA-256 of their DER, so
// that the signer and CA certificates every message of a correspondent
// carries, and those read from the store, are parsed once.
type certCache struct {
	lru *lru[[sha256.Size]byte, *x509.Certificate]
}

func newCertCache() *certCache {
	return &certCache{lru: newLRU[[sha256.Size]byte, *x509.Certificate](certCacheEntries, certCacheWeight)}
}

// parse is x509.ParseCertificate through the cache. The certificate it
// returns is shared: nobody may change it. It never refers to der.
func (cc *certCache) parse(der []byte) (*x509.Certificate, error) {
	sum := sha256.Sum256(der)
	if c, ok := cc.lru.get(sum); ok {
		return c, nil
	}
	c, err := x509.ParseCertificate(bytes.Clone(der))
	if err != nil {
		return nil, err
	}
	if len(der) <= certCacheMaxDER {
		cc.lru.add(sum, c, certWeight(c))
	}
	return c, nil
}

// certWeight estimates what a parsed certificate holds in memory: its DER,
// which the parsed fields refer to, and a share for every name, address,
// extension and policy crypto/x509 allocates on its own (a certificate of
// many tiny SAN entries costs up to 15 times its size).
func certWeight(c *x509.Certificate) int {
	n := len(c.DNSNames) + len(c.EmailAddresses) + len(c.IPAddresses) + len(c.URIs) +
		len(c.Extensions) + len(c.Subject.Names) + len(c.Issuer.Names) + len(c.Policies) +
		len(c.PermittedEmailAddresses) + len(c.ExcludedEmailAddresses) +
		len(c.PermittedDNSDomains) + len(c.ExcludedDNSDomains) + len(c.PermittedURIDomains) + len(c.ExcludedURIDomains) +
		len(c.PermittedIPRanges) + len(c.ExcludedIPRanges) + len(c.ExtKeyUsage) + len(c.UnknownExtKeyUsage)
	return 2*len(c.Raw) + 1024 + 128*n
}
