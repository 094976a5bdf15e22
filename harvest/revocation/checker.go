package revocation

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"

	"github.com/smimed/smimed/harvest/state"
)

// Modes of [trust] revocation.
const (
	Off  = "off"  // not checked
	Soft = "soft" // checked; no answer: the verdict stands, with the reason
	Hard = "hard" // checked; no answer: the signer is untrusted
)

// Defaults of Config.
const (
	DefaultTimeout = 5 * time.Second
	DefaultMaxSize = 20 << 20
	// retryFailed is how long a distribution point that failed is not
	// asked again: messages do not each wait for a server that is down.
	retryFailed = 5 * time.Minute
)

// bucketCRLs holds the CRLs: issuerKey + "\x00" + scope → storedCRL.
var bucketCRLs = []byte("revocation_crls")

func init() {
	state.Register(state.Bucket{Name: string(bucketCRLs), Version: 1})
}

// Config configures a Checker.
type Config struct {
	Timeout time.Duration // per fetch (DefaultTimeout when 0)
	MaxSize int64         // bytes per CRL (DefaultMaxSize when 0)
	// Fetch allows fetching CRLs; without it only what is in the state
	// file is used (imported, or fetched by the service).
	Fetch bool
	// OCSP asks a certificate's OCSP responder first (ocsp.go); needs
	// Fetch.
	OCSP bool
	// Client fetches; nil: a client with Timeout that follows no
	// redirect to another scheme than http.
	Client *http.Client
	Log    *slog.Logger
	Now    func() time.Time
}

// Status of an Answer.
type Status int

const (
	Good    Status = iota // not revoked when the message arrived
	Revoked               // revoked by then
	Unknown               // no CRL could be had: Reason says why
)

// Answer is what is known of one certificate.
type Answer struct {
	Status Status
	// NotOffered (with Unknown): the certificate names no distribution
	// point at all; its CA offers nothing to check.
	NotOffered bool
	// Reason: for Revoked, when, why and whose CRL says so; for Unknown,
	// why no answer could be had; for Good, "" .
	Reason string
	// At (Revoked) is when the revocation takes effect for messages.
	At time.Time
	// Code (Revoked) is the CRL entry's reason code (RFC 5280 5.3.1);
	// ReasonHold is a suspension the CA may lift.
	Code int
}

// ReasonHold is the reason code certificateHold.
const ReasonHold = 6

// Checker answers from the CRLs it has, fetching those it lacks. It is safe
// for concurrent use.
type Checker struct {
	cfg    Config
	db     *state.DB // nil: memory only
	client *http.Client

	mu       sync.Mutex
	crls     map[string]*crl       // by storage key, parsed
	loaded   map[string]bool       // storage keys read from db (present or not)
	flights  *flights              // CRL fetches and OCSP requests
	reread   map[string]time.Time  // storage key → when a stale CRL was last read again
	ocsp     map[string]ocspAnswer // ocspKey → the last answer, until its nextUpdate
	enclosed map[string]any        // enclosedKey → a checked *ocsp.Response or *crl
	respDown map[string]failure    // OCSP responder and CA → its last failure
	ocspOn   atomic.Bool           // SetOCSP
}

// SetOCSP turns the OCSP checks on or off (a reload of [trust] ocsp).
func (c *Checker) SetOCSP(on bool) { c.ocspOn.Store(on) }

// rereadStale is how often a stale CRL is read again from the state file.
const rereadStale = 30 * time.Second

// fetchKey names a fetch: a distribution point for one CA (a re-keyed CA
// may serve its new CRL where the old certificates point).
func fetchKey(dp string, issuer *x509.Certificate) string { return dp + "\x00" + issuerKey(issuer) }

// storedCRL is a CRL in the state file.
type storedCRL struct {
	DER     []byte    `json:"der"`
	Issuer  []byte    `json:"issuer"` // the CA certificate that signed it (DER)
	Source  string    `json:"source"` // the URL fetched, or "import"
	Fetched time.Time `json:"fetched"`
}

// New returns a Checker keeping its CRLs in db (nil: in memory only).
func New(db *state.DB, cfg Config) *Checker {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = DefaultMaxSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{
			Timeout: cfg.Timeout,
			// A redirect stays on the distribution point's own host:
			// the answer of a plain-HTTP server is anyone's, and must
			// not send the service to other (internal) hosts.
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= 3 || req.URL.Scheme != "http" || req.URL.Host != via[0].URL.Host {
					return errors.New("redirected too often, to another host, or away from http")
				}
				return nil
			},
		}
	}
	return &Checker{
		cfg: cfg, db: db, client: client,
		crls: map[string]*crl{}, loaded: map[string]bool{},
		flights: newFlights(cfg.Now), reread: map[string]time.Time{}, ocsp: map[string]ocspAnswer{},
		enclosed: map[string]any{}, respDown: map[string]failure{},
	}
}

func storageKey(issuer, scope string) string { return issuer + "\x00" + scope }

// Check judges cert, issued by issuer (the next certificate of its
// verified chain), at time at (the message's arrival). It fetches a CRL it
// lacks, or one past its nextUpdate, within ctx and the configured
// timeout.
func (c *Checker) Check(ctx context.Context, cert, issuer *x509.Certificate, at time.Time) Answer {
	return c.CheckEnclosed(ctx, cert, issuer, at, Enclosed{})
}

// CheckEnclosed is Check that first looks at what the message encloses
// (enclosed.go).
func (c *Checker) CheckEnclosed(ctx context.Context, cert, issuer *x509.Certificate, at time.Time, enc Enclosed) Answer {
	if ans, ok := c.fromEnclosed(cert, issuer, at, enc); ok {
		return ans
	}
	ocspWhy := ""
	if (c.cfg.OCSP || c.ocspOn.Load()) && c.cfg.Fetch && len(cert.OCSPServer) > 0 {
		ans, ok, why := c.checkOCSP(ctx, cert, issuer, at)
		if ok {
			return ans
		}
		ocspWhy = why + "; "
	}
	ans := c.checkCRL(ctx, cert, issuer, at)
	if ans.Status == Unknown && ocspWhy != "" {
		ans.Reason, ans.NotOffered = ocspWhy+ans.Reason, false
	}
	return ans
}

// checkCRL is Check by the CRLs.
func (c *Checker) checkCRL(ctx context.Context, cert, issuer *x509.Certificate, at time.Time) Answer {
	key := issuerKey(issuer)
	dps := httpPoints(cert.CRLDistributionPoints)
	now := c.cfg.Now()
	if cr := c.current(key, cert, dps, now); cr != nil {
		return answerFrom(cr, cert, at)
	}
	if len(cert.CRLDistributionPoints) == 0 {
		return Answer{Status: Unknown, NotOffered: true, Reason: "the certificate names no CRL distribution point"}
	}
	if len(dps) == 0 {
		return Answer{Status: Unknown, Reason: fmt.Sprintf("only unsupported CRL distribution points (%s): HTTP only", strings.Join(cert.CRLDistributionPoints, ", "))}
	}
	if !c.cfg.Fetch {
		return Answer{Status: Unknown, Reason: "no current CRL of " + issuer.Subject.String() + " in the state (this command does not fetch)"}
	}
	var errs []string
	for _, dp := range dps {
		if err := c.fetch(ctx, dp, issuer); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if cr := c.current(key, cert, dps, c.cfg.Now()); cr != nil {
			return answerFrom(cr, cert, at)
		}
		errs = append(errs, dp+": the CRL fetched is not current or does not cover the certificate")
	}
	return Answer{Status: Unknown, Reason: "no current CRL: " + strings.Join(errs, "; ")}
}

func answerFrom(cr *crl, cert *x509.Certificate, at time.Time) Answer {
	r, ok := cr.lookup(cert.SerialNumber, at)
	if !ok {
		return Answer{Status: Good}
	}
	when := effective(r)
	reason := fmt.Sprintf("revoked %s (%s) by the CRL of %s", when.UTC().Format(time.RFC3339), ReasonName(r.reason), cr.issuerName)
	if !when.Equal(r.at) {
		reason += fmt.Sprintf(", published %s", r.at.UTC().Format(time.RFC3339))
	}
	return Answer{Status: Revoked, Reason: reason, At: when, Code: r.reason}
}

// httpPoints are the http URLs of dps.
func httpPoints(dps []string) []string {
	var out []string
	for _, dp := range dps {
		if u, err := url.Parse(dp); err == nil && u.Scheme == "http" && u.Host != "" {
			out = append(out, dp)
		}
	}
	return out
}

// current returns a CRL of issuer, current at now, that covers cert, which
// names dps (its own scope, or the issuer's full CRL).
func (c *Checker) current(issuer string, cert *x509.Certificate, dps []string, now time.Time) *crl {
	keys := []string{}
	for _, dp := range dps {
		keys = append(keys, storageKey(issuer, dp))
	}
	keys = append(keys, storageKey(issuer, ""))
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		cr := c.loadLocked(k)
		if cr != nil && !cr.freshAt(now) && c.db != nil && now.Sub(c.reread[k]) >= rereadStale {
			// Another checker on the state file (the service's refresh)
			// may have kept a newer one; looked for at most so often
			// while the distribution point is down.
			c.reread[k] = now
			delete(c.crls, k)
			delete(c.loaded, k)
			cr = c.loadLocked(k)
		}
		if cr != nil && cr.freshAt(now) && cr.covers(cert, dps) {
			return cr
		}
	}
	return nil
}

// loadLocked returns the CRL stored under key, reading the state file the
// first time; its signature is checked again with the CA certificate
// stored with it.
func (c *Checker) loadLocked(key string) *crl {
	if cr, ok := c.crls[key]; ok || c.loaded[key] || c.db == nil {
		return cr
	}
	c.loaded[key] = true
	var st storedCRL
	err := c.db.Bolt().View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketCRLs).Get([]byte(key))
		if v == nil {
			return nil
		}
		return json.Unmarshal(v, &st)
	})
	if err != nil || st.DER == nil {
		return nil
	}
	cr, err := parseStored(st)
	if err != nil {
		c.cfg.Log.Warn("stored CRL unreadable; it will be fetched again", "err", err)
		return nil
	}
	c.crls[key] = cr
	return cr
}

// parseStored parses a CRL from the state file, checking it against the
// issuer stored with it as when it was fetched.
func parseStored(st storedCRL) (*crl, error) {
	issuer, err := x509.ParseCertificate(st.Issuer)
	if err != nil {
		return nil, fmt.Errorf("%w: stored issuer: %v", ErrCRL, err)
	}
	return parseCRL(st.DER, issuer)
}

// fetch gets the CRL at dp, checks it against issuer, and keeps it, as
// one of c's flights.
func (c *Checker) fetch(ctx context.Context, dp string, issuer *x509.Certificate) error {
	_, err := c.flights.do(ctx, fetchKey(dp, issuer), func(ctx context.Context) (any, error) {
		return nil, c.fetchOnce(ctx, dp, issuer)
	}, func(err error) {
		c.cfg.Log.Warn("CRL not fetched; not asked again for 5m", "url", dp, "err", err)
	})
	return err
}

func (c *Checker) fetchOnce(ctx context.Context, dp string, issuer *x509.Certificate) error {
	body, err := fetchBounded(ctx, c.client, c.cfg.Timeout, http.MethodGet, dp, nil, c.cfg.MaxSize)
	if err != nil {
		return err
	}
	der, err := Decode(body)
	if err != nil {
		return fmt.Errorf("%s: %w", dp, err)
	}
	cr, err := parseCRL(der, issuer)
	if err != nil {
		return fmt.Errorf("%s: %w", dp, err)
	}
	if len(cr.scopes) > 0 && !slices.Contains(cr.scopes, dp) {
		return fmt.Errorf("%s: %w: its issuing distribution point names %s", dp, ErrCRL, strings.Join(cr.scopes, ", "))
	}
	now := c.cfg.Now()
	if !cr.freshAt(now) {
		return fmt.Errorf("%s: %w: valid %s to %s, not now", dp, ErrCRL, cr.thisUpdate.UTC().Format(time.RFC3339), cr.nextUpdate.UTC().Format(time.RFC3339))
	}
	if err := c.keep(cr, dp, now); err != nil && !errors.Is(err, ErrNotNewer) {
		return err
	}
	c.cfg.Log.Info("CRL fetched", "url", dp, "issuer", cr.issuerName, "entries", len(cr.entries), "next_update", cr.nextUpdate)
	return nil
}

// ErrNotNewer says a CRL of the same CA and scope, issued at the same
// time or later, is kept already.
var ErrNotNewer = errors.New("revocation: a CRL at least as new is kept already")

// keep stores cr (fetched from source, or "import") unless a CRL of the
// same CA and scope at least as new is kept (ErrNotNewer). The state file
// is written outside the checker's lock, so checks go on meanwhile.
func (c *Checker) keep(cr *crl, source string, now time.Time) error {
	key := storageKey(cr.issuer, cr.scopeKey(source))
	c.mu.Lock()
	old := c.loadLocked(key)
	c.mu.Unlock()
	if old != nil && !cr.thisUpdate.After(old.thisUpdate) {
		return fmt.Errorf("%w (issued %s)", ErrNotNewer, old.thisUpdate.UTC().Format(time.RFC3339))
	}
	if c.db != nil && !c.db.ReadOnly() {
		v, err := json.Marshal(storedCRL{DER: cr.der, Issuer: cr.issuerCert.Raw, Source: source, Fetched: now.UTC()})
		if err != nil {
			return err
		}
		err = c.db.Commit(func(tx *bbolt.Tx) error {
			return tx.Bucket(bucketCRLs).Put([]byte(key), v)
		})
		if err != nil {
			return fmt.Errorf("revocation: storing the CRL of %s: %w", cr.issuerName, err)
		}
	}
	c.mu.Lock()
	c.crls[key], c.loaded[key] = cr, true
	c.mu.Unlock()
	return nil
}

// Import keeps a CRL an administrator brought (DER or PEM), after checking
// it against the CA certificates cas (trust anchors and intermediates):
// one of them must have signed it. It returns what was imported.
func (c *Checker) Import(data []byte, cas []*x509.Certificate) (Info, error) {
	der, err := Decode(data)
	if err != nil {
		return Info{}, err
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return Info{}, fmt.Errorf("%w: %v", ErrCRL, err)
	}
	var lastErr error = fmt.Errorf("%w: issued by %q, which is none of the trust anchors and intermediates known", ErrCRL, rl.Issuer.String())
	for _, ca := range cas {
		if ca.RawSubject == nil || string(ca.RawSubject) != string(rl.RawIssuer) {
			continue
		}
		cr, err := parseCRL(der, ca)
		if err != nil {
			lastErr = err
			continue
		}
		if now := c.cfg.Now(); !cr.freshAt(now) {
			return Info{}, fmt.Errorf("%w: valid %s to %s, not now: bring the CA's current CRL", ErrCRL,
				cr.thisUpdate.UTC().Format(time.RFC3339), cr.nextUpdate.UTC().Format(time.RFC3339))
		}
		if err := c.keep(cr, "import", c.cfg.Now()); err != nil {
			return Info{}, err
		}
		return info(cr, "import"), nil
	}
	return Info{}, lastErr
}

// Info describes a kept CRL.
type Info struct {
	Issuer     string    `json:"issuer"`
	Scope      string    `json:"scope,omitempty"` // issuing distribution point; "" for all of the issuer's certificates
	Source     string    `json:"source"`
	Fetched    time.Time `json:"fetched,omitzero"`
	ThisUpdate time.Time `json:"this_update"`
	NextUpdate time.Time `json:"next_update,omitzero"`
	Entries    int       `json:"entries"`
	Number     string    `json:"number,omitempty"`
}

func info(cr *crl, source string) Info {
	in := Info{Issuer: cr.issuerName, Scope: strings.Join(cr.scopes, " "), Source: source, ThisUpdate: cr.thisUpdate.UTC(),
		NextUpdate: cr.nextUpdate.UTC(), Entries: len(cr.entries)}
	if cr.number != nil {
		in.Number = cr.number.String()
	}
	return in
}

// List describes the CRLs in the state file, by issuer.
func (c *Checker) List() ([]Info, error) {
	kept, err := c.kept()
	var out []Info
	for _, k := range kept {
		in := info(k.crl, k.source)
		in.Fetched = k.fetched
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Issuer+a.Scope, b.Issuer+b.Scope) })
	return out, err
}

// kept reads every CRL in the state file (copied out of the read
// transaction, parsed after it: a CRL may be megabytes); an unreadable
// one is logged and left out.
func (c *Checker) kept() ([]keptCRL, error) {
	if c.db == nil {
		return nil, nil
	}
	var stored []storedCRL
	err := c.db.Bolt().View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketCRLs).ForEach(func(_, v []byte) error {
			var st storedCRL
			if err := json.Unmarshal(v, &st); err != nil {
				c.cfg.Log.Warn("stored CRL unreadable; left out", "err", err)
				return nil
			}
			stored = append(stored, st)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("revocation: reading the kept CRLs: %w", err)
	}
	var out []keptCRL
	for _, st := range stored {
		cr, err := parseStored(st)
		if err != nil {
			c.cfg.Log.Warn("stored CRL unreadable; left out", "err", err)
			continue
		}
		out = append(out, keptCRL{cr, st.Source, st.Fetched})
	}
	return out, nil
}

type keptCRL struct {
	*crl
	source  string
	fetched time.Time
}

// Refresh fetches again every kept CRL that came from a URL and is three
// quarters through its validity (or past it), so that messages seldom
// wait for a fetch. The service calls it every few minutes.
func (c *Checker) Refresh(ctx context.Context) {
	if !c.cfg.Fetch {
		return
	}
	kept, err := c.kept()
	if err != nil {
		c.cfg.Log.Warn("CRLs not refreshed", "err", err)
		return
	}
	now := c.cfg.Now()
	for _, k := range kept {
		if ctx.Err() != nil {
			return
		}
		if strings.HasPrefix(k.source, "http://") && now.After(k.thisUpdate.Add(k.nextUpdate.Sub(k.thisUpdate)*3/4)) {
			c.fetch(ctx, k.source, k.issuerCert) // logged there
		}
	}
}

// RevokedAmong judges certs against the kept CRLs only, at the present,
// for certificates whose chain is not at hand (the store's, swept by the
// service): a kept CRL counts for a certificate its CA signed (by name and
// signature) and that it covers. It returns the answers of the revoked
// ones, by index into certs. Each CRL is parsed once.
func (c *Checker) RevokedAmong(certs []*x509.Certificate) map[int]Answer {
	kept, err := c.kept()
	if err != nil {
		c.cfg.Log.Warn("revocation sweep: the kept CRLs cannot be read", "err", err)
	}
	byIssuer := map[string][]*crl{}
	now := c.cfg.Now()
	for _, k := range kept {
		if k.freshAt(now) {
			name := string(k.issuerCert.RawSubject)
			byIssuer[name] = append(byIssuer[name], k.crl)
		}
	}
	out := map[int]Answer{}
	for i, cert := range certs {
		dps := httpPoints(cert.CRLDistributionPoints)
		for _, cr := range byIssuer[string(cert.RawIssuer)] {
			if !cr.covers(cert, dps) || cert.CheckSignatureFrom(cr.issuerCert) != nil {
				continue
			}
			if ans := answerFrom(cr, cert, now); ans.Status == Revoked {
				out[i] = ans
				break
			}
		}
	}
	return out
}
