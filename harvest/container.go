package harvest

// This file walks containers: the multiparts that are not themselves a
// protection layer, and the opaque signed parts inside them.

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/smimed/smimed/harvest/cms"
)

// container looks into a multipart that is not itself a protection layer
// (e.g. a signed part with a mailing-list footer around it) and judges the
// signatures of the parts it holds. Those parts stay as they are in the
// plaintext (any client can read a signed part), except an opaque signed
// part (application/pkcs7-mime signed-data), which no client shows inside
// a container: it is replaced by its content. Encrypted parts inside a
// container are not decrypted: only whole-message encryption is, so that a
// ciphertext planted in someone else's mail (EFAIL) is never turned into
// plaintext in the user's mailbox. The result is the container's new body,
// or nil when no part changed.
func (w *walker) container(ent *entity, params map[string]string, depth int) []byte {
	if depth >= MaxDepth {
		return nil
	}
	w.inPart++
	defer func() { w.inPart-- }()
	boundary := params["boundary"]
	parts := splitParts(ent.body, boundary)
	// Each part is parsed once: for what it shows and to walk it.
	ents := make([]*entity, len(parts))
	shown := make([]string, len(parts))
	for i, part := range parts {
		ents[i], _ = splitEntity(part)
		shown[i] = describeShown(part, ents[i])
	}
	if len(parts) > maxParts {
		// splitParts stopped: what follows is shown but never looked at.
		shown = append(shown, fmt.Sprintf("the parts after the first %d (not examined)", maxParts))
	}
	replaced := make([][]byte, len(parts))
	changed := false
	for i, part := range parts {
		if w.parts++; w.parts > maxParts {
			w.note(fmt.Sprintf("more than %d MIME parts; the rest was not examined", maxParts))
			break
		}
		pe := ents[i]
		if pe == nil {
			continue
		}
		mt, pp, err := pe.mediaType()
		if err != nil {
			continue
		}
		n := len(w.outside)
		for j, d := range shown {
			if j != i && d != "" {
				w.outside = append(w.outside, d)
			}
		}
		var inner []byte
		switch {
		case strings.HasPrefix(mt, "multipart/") && mt != "multipart/signed":
			if body := w.container(pe, pp, depth+1); body != nil {
				inner = rebuilt(part, pe, body)
			}
		default:
			out, err := w.entity(part, depth+1)
			if err != nil {
				w.note(fmt.Sprintf("a part could not be read: %v", err))
			} else if isOpaqueSigned(mt, pp) && !sameBytes(out, part) {
				inner = out
			}
		}
		w.outside = w.outside[:n]
		if inner != nil {
			if bytes.Contains(inner, []byte("--"+boundary)) {
				w.note("an unwrapped part holds its container's boundary and was left as it is")
				continue
			}
			replaced[i], changed = inner, true
		}
	}
	if !changed {
		return nil
	}
	// The body with each replaced part's bytes swapped in place; a part's
	// offset in the body follows from the capacities of the two slices.
	var out []byte
	last := 0
	for i, r := range replaced {
		if r == nil {
			continue
		}
		start := cap(ent.body) - cap(parts[i])
		out = append(out, ent.body[last:start]...)
		out = append(out, r...)
		last = start + len(parts[i])
	}
	return append(out, ent.body[last:]...)
}

// rebuilt returns the entity raw (parsed as ent) with body as its new body.
func rebuilt(raw []byte, ent *entity, body []byte) []byte {
	head := raw[:len(raw)-len(ent.body)]
	out := make([]byte, 0, len(head)+len(body))
	return append(append(out, head...), body...)
}

// isOpaqueSigned tells an application/pkcs7-mime part that says it is
// signed-data.
func isOpaqueSigned(mt string, params map[string]string) bool {
	return (mt == "application/pkcs7-mime" || mt == "application/x-pkcs7-mime") && strings.EqualFold(params["smime-type"], "signed-data")
}

// opaquePart handles an application/pkcs7-mime part inside a container.
// Opaque signed data (Outlook's default) is unwrapped and judged like a
// detached signed part: it is not encrypted, so no EFAIL question arises.
// Anything else is left as it is.
func (w *walker) opaquePart(raw []byte, ent *entity, depth int) ([]byte, error) {
	der, err := ent.decodedBody()
	if err != nil {
		w.note("an S/MIME part inside a multipart could not be decoded and was left as it is")
		return raw, nil
	}
	ci, err := cms.ParseContentInfo(der)
	if err != nil || !ci.Type.Equal(cms.OIDSignedData) {
		w.note("an S/MIME part inside a multipart was left as it is (only whole-message encryption is decrypted)")
		return raw, nil
	}
	sd, err := cms.ParseSignedDataWith(ci, w.e.certs.parse)
	if err != nil || len(sd.Signers) == 0 || !sd.EContentType.Equal(cms.OIDData) || sd.EContent == nil {
		w.note("a signed-data part inside a multipart could not be read and was left as it is")
		return raw, nil
	}
	if err := w.layerRoom(); err != nil {
		return nil, err
	}
	layer := w.addLayer("signed-data (part)")
	w.note("a signature covers only one part of the message; the rest is unsigned")
	w.judge(sd, sd.EContent, nil, layer)
	w.signedLayers++
	defer func() { w.signedLayers-- }()
	return w.entity(sd.EContent, depth+1)
}
