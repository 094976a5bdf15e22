// Package harvest reads everything out of one mail: which S/MIME layers
// protect it (RFC 8551), its decryption with the organisation's keys, a
// verdict on every signature (RFC 5652 section 5.6, RFC 8550 section 3 for
// the From binding), the certificates worth keeping, and a readable
// plaintext copy. It also holds the certificate store those certificates go
// into.
package harvest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	_ "github.com/emersion/go-message/charset" // decode non-UTF-8 Subject lines
	"github.com/emersion/go-message/mail"

	"github.com/smimed/smimed/harvest/cms"
	"github.com/smimed/smimed/harvest/revocation"
)

// MaxDepth is the deepest nesting of S/MIME layers the engine follows.
const MaxDepth = 8

// internalError starts the report error of a message whose processing hit
// a bug (a recovered panic).
const internalError = "internal error (please report)"

// futureSlack is how far a signing time may lie after receipt before it is
// no longer believed.
const futureSlack = 5 * time.Minute

var (
	// ErrTooDeep is reported when layers nest deeper than MaxDepth.
	ErrTooDeep = errors.New("harvest: S/MIME layers nested too deeply")
	// ErrNotSMIME marks a CMS object that is not S/MIME content.
	ErrNotSMIME = errors.New("harvest: unsupported CMS content")
)

// Options configures an Engine.
type Options struct {
	Keys []*cms.Key // organisation keys for decryption, old and new
	// KeyAccounts, beside Keys, limits a key to the mailboxes it names
	// (by account name, or the block of a users list: "staff" for
	// "staff/alice@org.example"); a nil entry, or none, means every
	// mailbox. ProcessFor applies it.
	KeyAccounts [][]string
	Roots       *x509.CertPool // trust anchors; nil means none
	Store       *Store         // optional: signer certificates and intermediates; target of harvesting
	// Certs, when set, is read instead of Store for certificates,
	// intermediates and pins (a running daemon's store, read through its
	// control socket).
	Certs   CertReader
	Harvest bool // write harvested certificates to Store
	// DeferWrites leaves the writes of harvesting to the caller: Process
	// does not write to Store but returns them as Result.Write.
	DeferWrites bool
	RejectSHA1  bool // judge SHA-1 signatures invalid instead of flagging them weak
	// Now, when set, is the present for verdicts that mention it ("expired
	// since"); tests set it. Messages are judged at their arrival.
	Now func() time.Time
	// VerifyBudget bounds the time the signature checks of one message
	// may take (budget.go); 0 means DefaultVerifyBudget.
	VerifyBudget time.Duration
	// Revocation checks whether the certificates of a valid chain were
	// revoked when the message arrived (revocation.go); nil: not checked.
	Revocation *revocation.Checker
	// RevocationMode is revocation.Soft or revocation.Hard: what a
	// signature whose revocation cannot be known becomes.
	RevocationMode string
	// Issuers fetches missing issuer certificates by their caIssuers URL
	// ([trust] fetch_intermediates; aia.go); nil: none are fetched.
	Issuers *revocation.IssuerFetcher
	// MinValidation is the least a signer's CA must have validated for a
	// valid verdict (MinMailbox, the default, MinOrganization,
	// MinIndividual, MinSponsor; validation.go).
	MinValidation string
}

// Engine processes messages. It is safe for concurrent use.
type Engine struct {
	opts   Options
	certs  *certCache  // certificates of messages, parsed (cache.go)
	chains *chainCache // chains built for them (chaincache.go); nil: none kept
}

// New returns an engine with the given options. Options.Roots must not
// change afterwards: the engine keeps chains built to them. New trust
// anchors take a new engine.
func New(opts Options) *Engine {
	if opts.Roots == nil {
		opts.Roots = x509.NewCertPool()
	}
	certs := newCertCache()
	return &Engine{opts: opts, certs: certs, chains: newChainCache(opts.Roots, certs)}
}

// Result is the outcome of processing one message.
type Result struct {
	Report Report
	// Plaintext is the readable message: the innermost content under the
	// outer message's headers; the original bytes when nothing could be
	// unwrapped.
	Plaintext []byte
	// Write, with Options.DeferWrites, writes what harvesting found to
	// the store (nil when there is nothing to write). Its error is one of
	// our own, after which the message should be processed again.
	Write func() error
}

// Process reads one raw message received at the given time. Problems with
// the message are part of the report; the error is non-nil only for a
// failure of our own (the certificate store could not be written) after
// which the message should be processed again later.
func (e *Engine) Process(raw []byte, received time.Time) (res *Result, err error) {
	return e.ProcessFor(raw, received, "")
}

// ProcessFor is Process for a message of the mailbox account, decrypting
// with the keys Options.KeyAccounts allows it; "" allows every key (an
// administrator's command).
func (e *Engine) ProcessFor(raw []byte, received time.Time, account string) (res *Result, err error) {
	defer func() {
		// A bug of ours must cost one message its analysis, never the
		// daemon. The fuzz targets fail on this error text.
		if r := recover(); r != nil {
			res = &Result{Plaintext: raw, Report: Report{
				Layers: []string{}, Signatures: []Signature{}, Harvested: []Harvested{},
				Decryption: Decryption{Status: DecryptNone},
				Error:      fmt.Sprintf("%s: %v", internalError, r),
			}}
			err = nil
		}
	}()
	w := &walker{e: e, received: received, keys: e.keysFor(account)}
	w.rep.Layers = []string{}
	w.rep.Signatures = []Signature{}
	w.rep.Harvested = []Harvested{}
	w.rep.Decryption.Status = DecryptNone
	res = &Result{Plaintext: raw}
	raw = stripMboxLine(raw)
	outer, err := splitEntity(raw)
	if err != nil {
		w.rep.Error = err.Error()
		res.Report = w.rep
		return res, nil
	}
	w.readHeader(outer)
	w.headroom = plaintextHeadroom(outer.rawHeader)
	defer func() {
		if w.revCancel != nil {
			w.revCancel()
		}
	}()
	inner, err := w.walk(raw, outer, 0)
	w.finish(outer)
	switch {
	case err != nil:
		w.rep.Error = err.Error()
	case !sameBytes(inner, raw):
		res.Plaintext = buildPlaintext(outer.rawHeader, inner, w.protected, w.rep.Unprotected, w.scratch)
	}
	w.bound()
	res.Report = w.rep
	if writes := w.writes; len(writes) > 0 {
		res.Write = func() error {
			for _, write := range writes {
				if err := write(); err != nil {
					return err
				}
			}
			return nil
		}
	}
	return res, w.storeErr
}

type walker struct {
	e          *Engine
	received   time.Time
	keys       []*cms.Key // the keys that may decrypt for this mailbox
	rep        Report
	from       string // lower-cased From address
	fromIssue  string // why From cannot be bound to a certificate, if it cannot
	inPart     int    // >0 while inside a container that is not a protection layer
	pools      map[*cms.SignedData]*chainPool
	storeIMs   []*x509.Certificate
	storeIMsOK bool
	storeCerts []*x509.Certificate
	storeRead  bool
	storeErr   error
	writes     []func() error // Options.DeferWrites: the store writes left to the caller
	parts      int            // MIME parts looked at, bounded by maxParts

	// outside names the content a reader is shown beside the entity being
	// walked and that no signature around it covers: the other parts of
	// every container on the way down (see coverage.go).
	outside []string
	// pending holds the signatures whose chain was checked; their From
	// binding, coverage and harvesting are decided in finish, once the
	// protected header section (if any) is known.
	pending []pendingSig
	// protected is the header section inside the cryptographic payload
	// (RFC 9788, or a message/rfc822 wrapper per RFC 8551 section 3.1).
	protected *protectedHeader
	// signedLayers counts the signature layers around the entity being
	// walked.
	signedLayers int
	cost         budget
	// revCtx bounds the revocation checks of the message (revocation.go);
	// nil until the first.
	revCtx    context.Context
	revCancel context.CancelFunc

	// headroom is the room left free before the body of a decoded
	// pkcs7-mime part, and scratch the last such buffer whose content
	// was decrypted in place: the engine's own memory, which nothing
	// needs once the walk is done, so that the plaintext can be built in
	// it (buildPlaintext) instead of in a copy of the message.
	headroom int
	scratch  []byte
}

func (w *walker) readHeader(ent *entity) {
	hi := readHeaderInfo(ent)
	w.from, w.fromIssue = hi.from, hi.fromIssue
	w.rep.From, w.rep.Subject, w.rep.MessageID = hi.shownFrom, hi.subject, hi.messageID
}

// headerInfo is what the engine reads out of a header section.
type headerInfo struct {
	from, shownFrom, fromIssue string
	subject, messageID         string
}

func readHeaderInfo(ent *entity) headerInfo {
	h := mail.Header{Header: ent.header}
	var hi headerInfo
	hi.from, hi.shownFrom, hi.fromIssue = readFrom(h)
	if s, err := h.Subject(); err == nil {
		hi.subject = s
	} else {
		hi.subject = h.Get("Subject")
	}
	if id, err := h.MessageID(); err == nil && id != "" {
		hi.messageID = "<" + id + ">"
	} else {
		hi.messageID = strings.TrimSpace(h.Get("Message-Id"))
	}
	return hi
}

// readFrom returns the address of a header's From field as
// NormalizeAddress gives it (the form CertEmails compares), the address as
// written (or the field's text when it has none), and why the field cannot
// be bound to a certificate (RFC 8550 section 3), if it cannot: a From
// that names more than one mailbox, or shows another address anywhere in
// it.
func readFrom(h mail.Header) (addr, shown, issue string) {
	fields := len(h.Values("From"))
	addrs, err := h.AddressList("From")
	switch {
	case err == nil && len(addrs) > 0:
		addr, shown = NormalizeAddress(addrs[0].Address), addrs[0].Address
	default:
		shown = strings.TrimSpace(h.Get("From"))
	}
	switch {
	case fields == 0 || err != nil || len(addrs) == 0:
		issue = "the message has no readable From address"
	case fields > 1:
		issue = fmt.Sprintf("the message has %d From fields", fields)
	case len(addrs) > 1:
		issue = fmt.Sprintf("From names %d mailboxes", len(addrs))
	default:
		text, terr := h.Text("From")
		if terr != nil {
			text = h.Get("From")
		}
		// What the reader sees is compared as written (lower-cased), not
		// in A-labels: a lookalike that IDNA maps to the mailbox's domain
		// is still another address on the screen.
		issue = fromIssue(h.Get("From"), text, strings.ToLower(addrs[0].Address))
	}
	return addr, shown, issue
}

// layerRoom refuses one more protection layer beyond MaxDepth.
func (w *walker) layerRoom() error {
	if len(w.rep.Layers) >= MaxDepth {
		return fmt.Errorf("%w: more than %d layers", ErrTooDeep, MaxDepth)
	}
	return nil
}

// entity unwraps one MIME entity and returns the innermost readable entity.
func (w *walker) entity(raw []byte, depth int) ([]byte, error) {
	// Protection layers and wrapped messages each count one level.
	if depth > 2*MaxDepth {
		return nil, fmt.Errorf("%w: more than %d nested entities", ErrTooDeep, 2*MaxDepth)
	}
	ent, err := splitEntity(raw)
	if err != nil {
		if depth == 0 {
			return nil, err
		}
		return raw, nil // not MIME: readable as it is
	}
	return w.walk(raw, ent, depth)
}

// walk is entity for raw already split as ent.
func (w *walker) walk(raw []byte, ent *entity, depth int) ([]byte, error) {
	mt, params, err := ent.mediaType()
	if err != nil {
		return raw, nil
	}
	smimeMime := mt == "application/pkcs7-mime" || mt == "application/x-pkcs7-mime"
	if mt == "application/octet-stream" {
		name := strings.ToLower(ent.fileName(params))
		smimeMime = strings.HasSuffix(name, ".p7m") || strings.HasSuffix(name, ".p7c")
	}
	switch {
	case mt == "multipart/signed":
		switch strings.ToLower(params["protocol"]) {
		case "application/pkcs7-signature", "application/x-pkcs7-signature":
			if err := w.layerRoom(); err != nil {
				return nil, err
			}
			return w.multipartSigned(ent, params, depth)
		}
		return raw, nil
	case smimeMime && w.inPart > 0:
		return w.opaquePart(raw, ent, depth)
	case smimeMime:
		if err := w.layerRoom(); err != nil {
			return nil, err
		}
		return w.pkcs7Mime(raw, ent, depth)
	}
	if mt == "message/rfc822" && depth > 0 && w.inPart == 0 {
		// A message wrapped inside a protection layer (RFC 8551 sections
		// 3.1 and 3.7): its header section is protected. An attached
		// message in a container is a message of its own.
		body, err := ent.decodedBody()
		if err != nil {
			return raw, nil
		}
		if inner, err := splitEntity(body); err == nil {
			w.protect(inner, "message/rfc822 wrapper")
		}
		return w.entity(body, depth+1)
	}
	if depth > 0 && w.inPart == 0 {
		// The cryptographic payload's root: RFC 9788 marks its header
		// section as protected with the hp parameter.
		switch hp := strings.ToLower(params["hp"]); hp {
		case "clear", "cipher":
			w.protect(ent, "hp=\""+hp+"\"")
		}
	}
	switch mt {
	case "multipart/mixed", "multipart/alternative", "multipart/related", "multipart/report", "multipart/parallel", "multipart/digest":
		if body := w.container(ent, params, depth); body != nil {
			return rebuilt(raw, ent, body), nil
		}
	}
	return raw, nil
}

// maxParts bounds how many MIME parts of containers one message may make
// the engine look at.
const maxParts = 200

func (w *walker) note(s string) {
	for _, n := range w.rep.Notes {
		if n == s {
			return
		}
	}
	w.rep.Notes = append(w.rep.Notes, s)
}

// sameBytes reports whether a and b are the same slice of memory.
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

func (w *walker) addLayer(name string) int {
	w.rep.Layers = append(w.rep.Layers, name)
	return len(w.rep.Layers) - 1
}

func (w *walker) multipartSigned(ent *entity, params map[string]string, depth int) ([]byte, error) {
	name := "multipart/signed"
	if w.inPart > 0 {
		// The signature covers one part of the message, not all of it.
		name = "multipart/signed (part)"
		w.note("a signature covers only one part of the message; the rest is unsigned")
	}
	layer := w.addLayer(name)
	signed, sigPart, extra, err := splitSigned(ent.body, params["boundary"])
	if extra > 0 {
		// RFC 1847 allows two parts; a reader that falls back to
		// multipart/mixed shows the others, which nothing signed.
		n := len(w.outside)
		w.outside = append(w.outside, fmt.Sprintf("%d part(s) after the signature in the multipart/signed", extra))
		defer func() { w.outside = w.outside[:n] }()
	}
	if err != nil {
		w.sigError(layer, fmt.Sprintf("multipart/signed: %v", err))
		return nil, fmt.Errorf("multipart/signed: %w", err)
	}
	if sigPart == nil {
		w.sigError(layer, "multipart/signed without its signature part")
	} else if sd, err := w.signedData(sigPart); err != nil {
		w.sigError(layer, fmt.Sprintf("signature part: %v", err))
	} else {
		w.judge(sd, canonicalCRLF(signed), signed, layer)
	}
	w.signedLayers++
	defer func() { w.signedLayers-- }()
	return w.entity(signed, depth+1)
}

// signedData reads the SignedData out of a signature part.
func (w *walker) signedData(part []byte) (*cms.SignedData, error) {
	ent, err := splitEntity(part)
	if err != nil {
		return nil, err
	}
	der, err := ent.decodedBody()
	if err != nil {
		return nil, err
	}
	ci, err := cms.ParseContentInfo(der)
	if err != nil {
		return nil, err
	}
	if !ci.Type.Equal(cms.OIDSignedData) {
		return nil, fmt.Errorf("%w: %s where signed-data was expected", ErrNotSMIME, cms.TypeName(ci.Type))
	}
	return cms.ParseSignedDataWith(ci, w.e.certs.parse)
}

func (w *walker) pkcs7Mime(raw []byte, ent *entity, depth int) ([]byte, error) {
	der, buf, err := ent.decodedBodyRoom(w.headroom)
	if err != nil {
		w.addLayer("pkcs7-mime")
		w.unreadableCiphertext(ent, err)
		return nil, fmt.Errorf("pkcs7-mime: %w", err)
	}
	ci, err := cms.ParseContentInfo(der)
	if err != nil {
		w.addLayer("pkcs7-mime")
		w.unreadableCiphertext(ent, err)
		return nil, fmt.Errorf("pkcs7-mime: %w", err)
	}
	switch {
	case ci.Type.Equal(cms.OIDSignedData):
		sd, err := cms.ParseSignedDataWith(ci, w.e.certs.parse)
		if err != nil {
			w.addLayer("signed-data")
			return nil, fmt.Errorf("signed-data: %w", err)
		}
		if len(sd.Signers) == 0 {
			w.addLayer("certs-only")
			w.certsOnly(sd)
			return raw, nil
		}
		layer := w.addLayer("signed-data")
		if !sd.EContentType.Equal(cms.OIDData) {
			w.sigError(layer, fmt.Sprintf("signed-data encapsulates %s, not a MIME entity", cms.TypeName(sd.EContentType)))
			return nil, fmt.Errorf("signed-data: content type %s is not S/MIME", cms.TypeName(sd.EContentType))
		}
		if sd.EContent == nil {
			w.sigError(layer, "signed-data without content (a detached signature outside multipart/signed)")
			return nil, errors.New("signed-data: no encapsulated content")
		}
		w.judge(sd, sd.EContent, nil, layer)
		w.keepScratch(buf)
		w.signedLayers++
		defer func() { w.signedLayers-- }()
		return w.entity(sd.EContent, depth+1)
	case ci.Type.Equal(cms.OIDEnvelopedData), ci.Type.Equal(cms.OIDAuthEnvelopedData):
		name := cms.TypeName(ci.Type)
		w.addLayer(name)
		// A transfer-decoded body is a buffer of the engine's own, which
		// nothing needs after decryption; an identity-encoded one is the
		// caller's message and must not change.
		content, err := w.decrypt(ci, buf != nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		w.keepScratch(buf)
		return w.entity(content, depth+1)
	}
	w.addLayer(cms.TypeName(ci.Type))
	return nil, fmt.Errorf("%w: %s", ErrNotSMIME, cms.TypeName(ci.Type))
}

// keepScratch notes buf, a decoded pkcs7-mime body whose content is
// being walked, as the buffer the plaintext may be built in: what lies
// before the content in it (the CMS structure, the header sections of the
// entities on the way) is read by then. nil is ignored.
func (w *walker) keepScratch(buf []byte) {
	if buf != nil {
		w.scratch = buf
	}
}

// unreadableCiphertext records an application/pkcs7-mime body that cannot
// be read as CMS at all as undecryptable when it is declared (or, without
// smime-type, presumed) to be encrypted: it is mail the organisation
// cannot read, and belongs in that inventory (archive failed).
func (w *walker) unreadableCiphertext(ent *entity, err error) {
	_, params, perr := ent.mediaType()
	if perr != nil {
		return
	}
	switch strings.ToLower(params["smime-type"]) {
	case "", "enveloped-data", "authenveloped-data":
		if w.rep.Decryption.Status != DecryptFailed {
			w.rep.Decryption = Decryption{Status: DecryptFailed, Reason: DecryptUnparsable, Error: err.Error()}
		}
	}
}

// decryptReason classifies why a decryption failed.
func decryptReason(err error) string {
	switch {
	case errors.Is(err, cms.ErrNoRecipient):
		return DecryptNoKey
	case errors.Is(err, cms.ErrDecrypt):
		return DecryptCorrupt
	case errors.Is(err, cms.ErrUnsupported):
		return DecryptUnsupported
	}
	return DecryptUnparsable
}

// decrypt decrypts ci; inPlace allows it to overwrite ci.Content.
func (w *walker) decrypt(ci *cms.ContentInfo, inPlace bool) ([]byte, error) {
	decrypt := cms.Decrypt
	if inPlace {
		decrypt = cms.DecryptInPlace
	}
	d, err := decrypt(ci, w.keys)
	first := w.rep.Decryption.Status == DecryptNone
	if err != nil {
		if first || w.rep.Decryption.Status == DecryptOK {
			w.rep.Decryption = Decryption{Status: DecryptFailed, Reason: decryptReason(err), Error: err.Error()}
		}
		if rs, rerr := cms.Recipients(ci); rerr == nil {
			for i, r := range rs {
				if i == maxReportList-1 && len(rs) > maxReportList {
					w.rep.Recipients = append(w.rep.Recipients, fmt.Sprintf("… and %d more", len(rs)-i))
					break
				}
				w.rep.Recipients = append(w.rep.Recipients, r.Kind+" "+r.ID.String())
			}
		}
		return nil, err
	}
	if first {
		w.rep.Decryption = Decryption{
			Status:       DecryptOK,
			Cipher:       d.Cipher,
			KeyTransport: d.KeyTransport,
		}
		if d.Key != nil && d.Key.Cert != nil {
			w.rep.Decryption.Key = Fingerprint(d.Key.Cert)
		}
	}
	return d.Content, nil
}

func (w *walker) sigError(layer int, reason string) {
	w.rep.Signatures = append(w.rep.Signatures, Signature{Status: StatusError, Reason: reason, Layer: layer})
}

func (w *walker) storeCertificates() []*x509.Certificate {
	if w.storeRead || w.e.reader() == nil {
		return w.storeCerts
	}
	w.storeRead = true
	certs, err := w.e.reader().Certificates()
	if err == nil {
		w.storeCerts = certs
	}
	return w.storeCerts
}

// Bounds on what one SignedData may make the engine do.
const (
	maxSigners   = 16  // signers judged per SignedData
	maxCerts     = 256 // message certificates used for chain building
	maxAddresses = 20  // addresses harvested per certificate
)

// pool returns the intermediates for chains of sd's signers: the message's
// certificates and the intermediates harvested earlier, built once.
func (w *walker) pool(sd *cms.SignedData) *chainPool {
	if p, ok := w.pools[sd]; ok {
		return p
	}
	if !w.storeIMsOK && w.e.reader() != nil {
		w.storeIMsOK = true
		if ims, err := w.e.reader().Intermediates(); err == nil {
			w.storeIMs = ims
		}
	}
	p := newChainPool(w.chainCandidates(sd.Certificates, w.storeIMs))
	if w.pools == nil {
		w.pools = map[*cms.SignedData]*chainPool{}
	}
	w.pools[sd] = p
	return p
}

// altForms gives the other byte forms a detached signature may have been
// made over, computed once: the part as transmitted (when canonicalisation
// changed it) and with bare LF line ends (seen from NSS). None when the
// part holds a lone CR, which would let differently displayed text verify.
type altForms struct {
	raw, canonical []byte
	done           bool
	forms          [][]byte
}

func (a *altForms) get() [][]byte {
	if a == nil || a.raw == nil {
		return nil
	}
	if !a.done {
		a.done = true
		for i, c := range a.raw {
			if c == '\r' && (i+1 == len(a.raw) || a.raw[i+1] != '\n') {
				return nil
			}
		}
		if !bytes.Equal(a.raw, a.canonical) {
			a.forms = append(a.forms, a.raw)
		}
		if lf := crlfToLF(a.raw); !bytes.Equal(lf, a.raw) {
			a.forms = append(a.forms, lf)
		}
	}
	return a.forms
}

// judge gives one verdict per signer. content is what the signature is
// expected to cover; alt, when non-nil, is the same part as transmitted,
// whose other forms are tried when the canonical form's digest does not
// match.
func (w *walker) judge(sd *cms.SignedData, content, alt []byte, layer int) {
	forms := &altForms{raw: alt, canonical: content}
	for i, si := range sd.Signers {
		if i == maxSigners {
			w.note(fmt.Sprintf("only the first %d of %d signers were judged", maxSigners, len(sd.Signers)))
			break
		}
		if w.overBudget(sd, i, layer) {
			break
		}
		v := Signature{
			Layer:      layer,
			Digest:     si.DigestName,
			Algorithm:  si.Algorithm,
			WeakDigest: si.Digest == crypto.SHA1,
		}
		cert := sd.FindCertificate(si, nil)
		if cert == nil {
			cert = sd.FindCertificate(si, w.storeCertificates())
		}
		if cert == nil {
			v.Status = StatusError
			v.Reason = fmt.Sprintf("signer certificate %s is neither in the message nor in the store", si.ID.String())
			w.rep.Signatures = append(w.rep.Signatures, v)
			continue
		}
		v.Fingerprint = Fingerprint(cert)
		v.Serial = strings.ToUpper(cert.SerialNumber.Text(16))
		v.Issuer = cert.Issuer.String()
		v.Signer = w.signerAddress(cert)
		err := sd.Verify(si, cert, content)
		if errors.Is(err, cms.ErrDigestMismatch) {
			for _, form := range forms.get() {
				if sd.Verify(si, cert, form) == nil {
					err = nil
					break
				}
			}
		}
		switch {
		case errors.Is(err, cms.ErrDigestMismatch), errors.Is(err, cms.ErrBadSignature):
			v.Status, v.Reason = StatusInvalid, err.Error()
		case err != nil:
			v.Status, v.Reason = StatusError, err.Error()
		case v.WeakDigest && w.e.opts.RejectSHA1:
			v.Status, v.Reason = StatusInvalid, "SHA-1 signatures are rejected by configuration (trust.reject_sha1)"
		default:
			w.judgeCertificate(&v, si, sd, cert)
		}
		w.rep.Signatures = append(w.rep.Signatures, v)
	}
}

// judgeCertificate checks the chain of a cryptographically correct
// signature at the time of judgement (the message's arrival). Binding to
// From, coverage and harvesting follow in finish.
func (w *walker) judgeCertificate(v *Signature, si *cms.SignerInfo, sd *cms.SignedData, cert *x509.Certificate) {
	var notes []string
	if !si.SigningTime.IsZero() {
		v.SigningTime = si.SigningTime.UTC()
		if si.SigningTime.After(w.received.Add(futureSlack)) {
			notes = append(notes, fmt.Sprintf("signing time %s lies after receipt (%s); the signature is judged at receipt",
				si.SigningTime.UTC().Format(time.RFC3339), w.received.UTC().Format(time.RFC3339)))
		}
	}
	chain, status, reason := w.checkChain(cert, w.pool(sd), w.received)
	if status == StatusValid && w.now().After(cert.NotAfter) {
		notes = append(notes, fmt.Sprintf("certificate expired since %s (valid when the message arrived)", cert.NotAfter.UTC().Format(time.RFC3339)))
	}
	v.Status = status
	w.pending = append(w.pending, pendingSig{
		idx: len(w.rep.Signatures), si: si, sd: sd, cert: cert, chain: chain,
		status: status, reason: reason, notes: notes,
		part: w.inPart > 0, outside: slices.Clone(w.outside),
	})
}

const reasonNoChain = "no chain to a trust anchor"

func (w *walker) signerAddress(c *x509.Certificate) string {
	es := CertEmails(c)
	if contains(es, w.from) {
		return w.from
	}
	if len(es) > 0 {
		return es[0]
	}
	return ""
}

// keysFor returns the keys that decrypt for the mailbox account (every
// key for ""): those Options.KeyAccounts does not limit, and those whose
// list names the account or its block.
func (e *Engine) keysFor(account string) []*cms.Key {
	if account == "" || len(e.opts.KeyAccounts) == 0 {
		return e.opts.Keys
	}
	block, _, _ := strings.Cut(account, "/")
	var out []*cms.Key
	for i, k := range e.opts.Keys {
		if i >= len(e.opts.KeyAccounts) || e.opts.KeyAccounts[i] == nil ||
			slices.Contains(e.opts.KeyAccounts[i], account) || slices.Contains(e.opts.KeyAccounts[i], block) {
			out = append(out, k)
		}
	}
	return out
}

// reader is where the engine reads certificates: Options.Certs, else
// Options.Store; nil when neither is set.
func (e *Engine) reader() CertReader {
	if e.opts.Certs != nil {
		return e.opts.Certs
	}
	if e.opts.Store != nil {
		return e.opts.Store
	}
	return nil
}
