package harvest

// The chains crypto/x509 built, remembered per engine, so that the
// signatures of a correspondent's next message do not check the same
// certificate signatures again (a small signed message costs about three
// RSA operations, two of them for its chain).
//
// x509.Verify cannot be given known-good links, and building chains here
// would mean repeating all it checks (names, validity, basic constraints
// and path length, name constraints, policies, extended key usage nested
// down the chain, critical extensions, the algorithms it refuses). So what
// is kept is its whole answer, and only where that answer is certain to
// be the same:
//
//   - Verify's result is a function of the leaf, the intermediates pool
//     (its certificates, in the order they were added), the roots, the
//     options and the time. The key names the leaf and the pool by the
//     SHA-256 of each certificate; the options are always the same, and the
//     roots are the engine's own: Options.Roots never changes after New,
//     and a change of trust anchors (SIGHUP) builds a new engine, so the
//     cache, which the engine owns, goes with the old anchors.
//   - Time enters Verify only where a certificate it looks at is compared
//     with its NotBefore and NotAfter (Certificate.isValid). It looks at
//     the leaf, the pool's certificates and the roots named like the
//     issuer of one of them. A result is kept only when every such name
//     belongs to no root, or to just the root the chain ends in; and it is
//     used again only at a time on the same side of every NotBefore and
//     NotAfter of the leaf, the pool and that root as the time it was
//     computed for. Verify would then take the same steps and return the
//     same chains.
//   - Only successes are kept (failures are cheap, and their errors quote
//     the time). A leaf trusted by an administrator without a chain (a
//     pinned leaf) is not a Verify success over the engine's roots and is
//     never kept.
//
// Everything checked after Verify (KeyUsage, pins, the From binding) is
// checked on every message as before. Platforms where Verify may ask the
// operating system (Windows, macOS, iOS) do not use the cache.

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"runtime"
	"slices"
	"time"
)

// Bounds of the chain cache: a few thousand correspondents' chains.
const (
	chainCacheEntries = 4096
	chainCacheWeight  = 64 << 20
)

// chainPool is what chain building may use besides the roots: the
// certificates of a message and the harvested intermediates (in the order
// they were added to pool), with the SHA-256 of each.
type chainPool struct {
	pool  *x509.CertPool
	certs []*x509.Certificate
	sums  [][sha256.Size]byte
}

func newChainPool(certs []*x509.Certificate) *chainPool {
	p := &chainPool{pool: x509.NewCertPool(), certs: certs, sums: make([][sha256.Size]byte, len(certs))}
	for i, c := range certs {
		p.pool.AddCert(c)
		p.sums[i] = sha256.Sum256(c.Raw)
	}
	return p
}

type chainKey [sha256.Size]byte

// chainEntry is one kept result: the chain without its leaf (the engine's
// copies of the certificates), and which side of its validity period the
// leaf, each certificate of the pool and the root (in that order) were on.
type chainEntry struct {
	rest  []*x509.Certificate
	sides []int8
}

type chainCache struct {
	lru *lru[chainKey, *chainEntry]
	// rootSubjects counts the roots per raw subject name.
	rootSubjects map[string]int
	certs        *certCache
}

// newChainCache returns the cache for an engine whose trust anchors are
// roots, or nil where it must not be used.
func newChainCache(roots *x509.CertPool, certs *certCache) *chainCache {
	switch runtime.GOOS {
	case "windows", "darwin", "ios":
		return nil
	}
	cc := &chainCache{
		lru:          newLRU[chainKey, *chainEntry](chainCacheEntries, chainCacheWeight),
		rootSubjects: map[string]int{},
		certs:        certs,
	}
	// Subjects is deprecated because it lacks the roots of platform
	// verifiers, which are excluded above.
	for _, s := range roots.Subjects() {
		cc.rootSubjects[string(s)]++
	}
	return cc
}

func chainKeyOf(leaf *x509.Certificate, p *chainPool) chainKey {
	h := sha256.New()
	leafSum := sha256.Sum256(leaf.Raw)
	h.Write(leafSum[:])
	for _, s := range p.sums {
		h.Write(s[:])
	}
	var k chainKey
	h.Sum(k[:0])
	return k
}

// side tells where at lies against c's validity period, as Verify
// compares them: -1 before NotBefore, 1 after NotAfter, 0 within.
func side(c *x509.Certificate, at time.Time) int8 {
	switch {
	case at.Before(c.NotBefore):
		return -1
	case at.After(c.NotAfter):
		return 1
	}
	return 0
}

func sides(at time.Time, leaf *x509.Certificate, p *chainPool, root *x509.Certificate) []int8 {
	out := make([]int8, 0, len(p.certs)+2)
	out = append(out, side(leaf, at))
	for _, c := range p.certs {
		out = append(out, side(c, at))
	}
	return append(out, side(root, at))
}

// lookup returns the chain Verify returned for leaf and p at a time
// equivalent to at, if one is kept.
func (cc *chainCache) lookup(leaf *x509.Certificate, p *chainPool, at time.Time) ([]*x509.Certificate, bool) {
	if cc == nil {
		return nil, false
	}
	e, ok := cc.lru.get(chainKeyOf(leaf, p))
	if !ok || !slices.Equal(e.sides, sides(at, leaf, p, e.rest[len(e.rest)-1])) {
		return nil, false
	}
	return append([]*x509.Certificate{leaf}, e.rest...), true
}

// store keeps chain, which Verify returned for leaf and p at time at, when
// that is certain to be its answer at every time on the same sides of the
// validity periods (see the file comment).
func (cc *chainCache) store(leaf *x509.Certificate, p *chainPool, at time.Time, chain []*x509.Certificate) {
	if cc == nil || len(chain) < 2 {
		return
	}
	root := chain[len(chain)-1]
	for _, c := range append([]*x509.Certificate{leaf}, p.certs...) {
		switch n := cc.rootSubjects[string(c.RawIssuer)]; {
		case n == 0:
		case n == 1 && bytes.Equal(c.RawIssuer, root.RawSubject):
		default:
			return // a root Verify may have looked at is not known here
		}
	}
	e := &chainEntry{sides: sides(at, leaf, p, root)}
	weight := 256 + len(e.sides)
	for _, c := range chain[1:] {
		own, err := cc.certs.parse(c.Raw) // a copy that refers to no message
		if err != nil {
			return
		}
		e.rest = append(e.rest, own)
		weight += certWeight(own)
	}
	cc.lru.add(chainKeyOf(leaf, p), e, weight)
}
