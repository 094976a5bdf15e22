package harvest

// This file asks whether the certificates of a valid chain were revoked
// when the message arrived (harvest/revocation), after every signature of
// the message was judged, so that a fetch does not count against the
// message's verify budget.

import (
	"context"
	"time"

	"github.com/smimed/smimed/harvest/revocation"
)

// checkRevocation judges the chain of p, whose chain check said valid
// (with reason and notes so far), against revocation: a revoked signer or
// CA makes the signature revoked; no answer leaves it valid with a note
// (soft) or makes it untrusted (hard). A chain of one (a certificate an
// administrator trusted) has no CA to ask. All the checks of one message
// share one deadline.
func (w *walker) checkRevocation(p pendingSig, reason string, notes []string) (string, string, []string) {
	rc := w.e.opts.Revocation
	if rc == nil || len(p.chain) < 2 {
		return StatusValid, reason, notes
	}
	ctx := w.netCtx()
	var enc revocation.Enclosed
	if p.sd != nil {
		enc = revocation.Enclosed{CRLs: p.sd.CRLs, OCSP: p.sd.OCSPResponses}
	}
	for i := 0; i+1 < len(p.chain); i++ {
		ans := rc.CheckEnclosed(ctx, p.chain[i], p.chain[i+1], w.received, enc)
		what := "the signer's certificate"
		if i > 0 {
			what = "the CA certificate " + p.chain[i].Subject.String()
		}
		switch ans.Status {
		case revocation.Revoked:
			// The store must never offer the certificate to encrypt to
			// again (a revoked CA revokes what it issued).
			// A hold (certificateHold) is a suspension the CA may lift:
			// the verdict is revoked, the store is not marked for good.
			leafFP, why := Fingerprint(p.chain[0]), what+" was "+ans.Reason
			if ans.Code != revocation.ReasonHold {
				w.storeWrite(leafFP, "", func(st *Store, _ Sighting) error {
					_, err := st.MarkRevoked(leafFP, ans.At, why)
					return err
				})
			}
			return StatusRevoked, why, notes
		case revocation.Unknown:
			if ans.NotOffered && w.e.opts.RevocationMode != revocation.Hard {
				continue // the CA offers no revocation list to check
			}
			if w.e.opts.RevocationMode == revocation.Hard {
				return StatusUntrusted, "revocation unknown (trust.revocation = hard): " + what + ": " + ans.Reason, notes
			}
			notes = append(notes, "revocation unknown: "+what+": "+ans.Reason)
		}
	}
	return StatusValid, reason, notes
}

// revocationDeadline bounds what one message may ask over the network
// (CRLs, OCSP, issuer certificates): beyond it they give no answer.
const revocationDeadline = 10 * time.Second

// netCtx is the message's context for network questions, started by the
// first; Process cancels it.
func (w *walker) netCtx() context.Context {
	if w.revCtx == nil {
		w.revCtx, w.revCancel = context.WithTimeout(context.Background(), revocationDeadline)
	}
	return w.revCtx
}
