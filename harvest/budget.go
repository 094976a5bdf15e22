package harvest

// What the signatures of one message may cost (issue 9, item 4). A
// stranger's message decides how many signers, certificates and keys the
// engine looks at; chain building (crypto/x509) checks the leaf against
// every certificate named like its issuer, up to 100 signature checks per
// Verify call. So, per message:
//   - keys no real CA uses are refused before any arithmetic
//     (cms.CheckPublicKey), for signers, chain candidates and harvested
//     certificates;
//   - chain building is offered at most maxChainCAs CA certificates of the
//     message, one per subject name, and at most maxStoreSameSubject
//     harvested intermediates per subject name;
//   - at most maxJudgedSigners signers are judged and at most
//     maxChainChecks chains verified;
//   - the checks stop when they have taken longer than the verify budget
//     (Options.VerifyBudget, DefaultVerifyBudget) since the first one began.
// What is not judged is reported as such and the message gets the report
// error "too expensive to verify: …", which the archive records.

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/smimed/smimed/harvest/cms"
)

// DefaultVerifyBudget is how long the signature and chain checks of one
// message may take.
const DefaultVerifyBudget = time.Second

const (
	maxJudgedSigners    = 32 // signers judged per message, all layers together
	maxChainChecks      = 64 // certificate chain verifications per message
	maxChainCAs         = 8  // CA certificates of one SignedData offered to chain building
	maxStoreSameSubject = 4  // harvested intermediates offered per subject name
)

// ErrTooExpensive is the report error of a message whose signatures were
// not all judged because they would cost too much.
var ErrTooExpensive = errors.New("too expensive to verify")

// costKind is what one call of spend accounts for.
type costKind int

const (
	costSigner costKind = iota
	costChain
)

// budget is what the signature checks of one message have used.
type budget struct {
	start   time.Time
	signers int
	chains  int
	err     error // set at the first refusal; every later call is refused too
}

// spend accounts for one more signer or chain verification and refuses it
// when the message has used its budget.
func (w *walker) spend(kind costKind) error {
	b := &w.cost
	if b.err != nil {
		return b.err
	}
	limit := w.e.opts.VerifyBudget
	if limit <= 0 {
		limit = DefaultVerifyBudget
	}
	now := time.Now()
	if b.start.IsZero() {
		b.start = now
	}
	switch {
	case now.Sub(b.start) > limit:
		b.err = fmt.Errorf("%w: the signature checks took longer than %v", ErrTooExpensive, limit)
	case kind == costSigner && b.signers >= maxJudgedSigners:
		b.err = fmt.Errorf("%w: more than %d signatures", ErrTooExpensive, maxJudgedSigners)
	case kind == costChain && b.chains >= maxChainChecks:
		b.err = fmt.Errorf("%w: more than %d certificate chain checks", ErrTooExpensive, maxChainChecks)
	}
	if b.err != nil {
		return b.err
	}
	if kind == costSigner {
		b.signers++
	} else {
		b.chains++
	}
	return nil
}

// overBudget is called before judging signer i of sd: when the message has
// used its budget, the remaining signers (up to maxSigners) are reported
// as not judged and it returns true.
func (w *walker) overBudget(sd *cms.SignedData, i, layer int) bool {
	err := w.spend(costSigner)
	if err == nil {
		return false
	}
	for ; i < len(sd.Signers) && i < maxSigners; i++ {
		w.rep.Signatures = append(w.rep.Signatures, Signature{
			Status: StatusError,
			Reason: "not judged: " + err.Error(),
			Layer:  layer,
		})
	}
	return true
}

// chainCandidates picks, from the certificates of a message and the
// harvested intermediates, those chain building may try: CA certificates
// (not self-issued: a root is only ever an anchor) whose keys pass
// cms.CheckPublicKey; of the message's, one per subject name (preferring
// one valid at receipt) and at most maxChainCAs; of the store's, at most
// maxStoreSameSubject per subject name. What was left out is noted.
func (w *walker) chainCandidates(msg, store []*x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	index := map[string]int{} // subject -> position in out
	refused, dup, over := 0, 0, 0
	var why string
	usable := func(c *x509.Certificate) bool {
		if !c.BasicConstraintsValid || !c.IsCA || bytes.Equal(c.RawSubject, c.RawIssuer) {
			return false
		}
		if err := cms.CheckCertificateKey(c); err != nil {
			if refused++; why == "" {
				why = strings.TrimPrefix(err.Error(), cms.ErrKeyRefused.Error()+": ")
			}
			return false
		}
		return true
	}
	validNow := func(c *x509.Certificate) bool {
		return !w.received.Before(c.NotBefore) && !w.received.After(c.NotAfter)
	}
	for _, c := range msg {
		if !usable(c) {
			continue
		}
		if i, ok := index[string(c.RawSubject)]; ok {
			dup++
			if !validNow(out[i]) && validNow(c) {
				out[i] = c
			}
			continue
		}
		if len(index) == maxChainCAs {
			over++
			continue
		}
		index[string(c.RawSubject)] = len(out)
		out = append(out, c)
	}
	if refused+dup+over > 0 {
		var parts []string
		if refused > 0 {
			parts = append(parts, fmt.Sprintf("%d with keys no CA uses (%s)", refused, why))
		}
		if dup > 0 {
			parts = append(parts, fmt.Sprintf("%d named like another one", dup))
		}
		if over > 0 {
			parts = append(parts, fmt.Sprintf("%d beyond the first %d", over, maxChainCAs))
		}
		w.note(fmt.Sprintf("%d CA certificates of a signature were not used to build chains: %s",
			refused+dup+over, strings.Join(parts, ", ")))
	}
	perSubject := map[string]int{}
	for _, c := range store {
		if perSubject[string(c.RawSubject)] < maxStoreSameSubject && usable(c) {
			perSubject[string(c.RawSubject)]++
			out = append(out, c)
		}
	}
	return out
}

// harvestableKey refuses to keep a certificate whose key no real mail user
// has (the signer's own key was checked already; this catches the
// certificates named by SMIMEEncryptionKeyPreference and certs-only
// content).
func (w *walker) harvestableKey(cert *x509.Certificate) bool {
	if err := cms.CheckCertificateKey(cert); err != nil {
		w.note(fmt.Sprintf("a certificate was not harvested: %v", err))
		return false
	}
	return true
}
