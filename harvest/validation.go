package harvest

// Who vouched for what (issue 15): the validation type a CA asserts in a
// signer certificate's policies, as the CA/Browser Forum's S/MIME Baseline
// Requirements define them (section 7.1.6.1, OID arc 2.23.140.1.5), and
// the names the CA validated under that type. A verdict shows a subject
// name only when the CA says it validated it.

import (
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"strings"
)

// Validation types (S/MIME BR 7.1.6.1), and what a certificate without one
// is taken for: its chain vouches for the mailbox address alone.
const (
	ValidationMailbox      = "mailbox-validated"
	ValidationOrganization = "organization-validated"
	ValidationSponsor      = "sponsor-validated"
	ValidationIndividual   = "individual-validated"
	// ValidationUnspecified: the certificate asserts no BR validation
	// type (a private CA, or one issued before the BR): only the address
	// counts as vouched for.
	ValidationUnspecified = "unspecified"
)

var validationTypes = map[int]string{1: ValidationMailbox, 2: ValidationOrganization, 3: ValidationSponsor, 4: ValidationIndividual}
var validationGenerations = map[int]string{1: "legacy", 2: "multipurpose", 3: "strict"}

// oidBRSMIME is the arc 2.23.140.1.5: smime-baseline.
var oidBRSMIME = asn1.ObjectIdentifier{2, 23, 140, 1, 5}

// Subject attributes a validation type may vouch for (RFC 4519).
var (
	oidGivenName = asn1.ObjectIdentifier{2, 5, 4, 42}
	oidSurname   = asn1.ObjectIdentifier{2, 5, 4, 4}
	oidPseudonym = asn1.ObjectIdentifier{2, 5, 4, 65}
)

// certValidation returns the validation type and generation the
// certificate asserts (the first BR policy it names), or
// ValidationUnspecified and "".
func certValidation(c *x509.Certificate) (kind, generation string) {
	for _, p := range c.PolicyIdentifiers {
		if len(p) != 7 || !p[:5].Equal(oidBRSMIME) {
			continue
		}
		k, g := validationTypes[p[5]], validationGenerations[p[6]]
		if k != "" && g != "" {
			return k, g
		}
	}
	return ValidationUnspecified, ""
}

// CertValidation describes what the certificate's CA asserts it
// validated ("sponsor-validated (strict)", "unspecified"), and the name
// and organization validated under it ("" when none). It does not check
// the chain: the store's certificates were judged when they came.
func CertValidation(c *x509.Certificate) (validation, validated string) {
	kind, gen := certValidation(c)
	return describeValidation(kind, gen), validatedIdentity(c, kind)
}

// validatedIdentity is what the CA validated beyond the address, under
// its validation type: the person's name (givenName and surname, or a
// pseudonym) for individual- and sponsor-validated certificates, the
// organization's name for organization- and sponsor-validated ones; ""
// for the others.
func validatedIdentity(c *x509.Certificate, kind string) string {
	var parts []string
	if kind == ValidationIndividual || kind == ValidationSponsor {
		if name := personName(c); name != "" {
			parts = append(parts, name)
		}
	}
	if kind == ValidationOrganization || kind == ValidationSponsor {
		if len(c.Subject.Organization) > 0 && strings.TrimSpace(c.Subject.Organization[0]) != "" {
			parts = append(parts, strings.TrimSpace(c.Subject.Organization[0]))
		}
	}
	return printableName(strings.Join(parts, ", "))
}

// personName is givenName and surname, or the pseudonym, from the
// subject (the attributes the BR let a CA validate for a person).
func personName(c *x509.Certificate) string {
	var given, sur, pseudo string
	for _, a := range c.Subject.Names {
		v, ok := a.Value.(string)
		if !ok {
			continue
		}
		switch {
		case a.Type.Equal(oidGivenName) && given == "":
			given = v
		case a.Type.Equal(oidSurname) && sur == "":
			sur = v
		case a.Type.Equal(oidPseudonym) && pseudo == "":
			pseudo = v
		}
	}
	if name := strings.TrimSpace(strings.TrimSpace(given) + " " + strings.TrimSpace(sur)); name != "" {
		return name
	}
	return strings.TrimSpace(pseudo)
}

// maxValidatedName bounds the name shown (the CA validated it, but it is
// still the subscriber's text).
const maxValidatedName = 200

// printableName keeps the printable characters of s (no controls, no
// bidirectional overrides), at most maxValidatedName bytes.
func printableName(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0x200e || r == 0x200f {
			continue
		}
		if b.Len()+len(string(r)) > maxValidatedName {
			break
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}

// describeValidation is the signature's validation as reported:
// "sponsor-validated (strict)", "unspecified".
func describeValidation(kind, generation string) string {
	if generation == "" {
		return kind
	}
	return fmt.Sprintf("%s (%s)", kind, generation)
}

// Minimum validation levels ([trust] min_validation).
const (
	MinMailbox      = "mailbox"
	MinOrganization = "organization"
	MinIndividual   = "individual"
	MinSponsor      = "sponsor"
)

// meetsMin reports whether a certificate of validation type kind satisfies
// min: mailbox is met by every certificate whose chain holds (it vouches
// for the address); organization by organization- and sponsor-validated,
// individual by individual- and sponsor-validated, sponsor only by
// sponsor-validated.
func meetsMin(kind, min string) bool {
	switch min {
	case "", MinMailbox:
		return true
	case MinOrganization:
		return kind == ValidationOrganization || kind == ValidationSponsor
	case MinIndividual:
		return kind == ValidationIndividual || kind == ValidationSponsor
	case MinSponsor:
		return kind == ValidationSponsor
	}
	return false
}

// judgeValidation records in v what the CA of p's chain (which holds)
// validated, and makes a signature whose CA validated less than
// Options.MinValidation untrusted.
func (w *walker) judgeValidation(v *Signature, p pendingSig, reason string) (string, string) {
	kind, gen := certValidation(p.cert)
	v.Validation = describeValidation(kind, gen)
	v.ValidatedName = validatedIdentity(p.cert, kind)
	if len(p.chain) > 1 {
		ca := p.chain[1].Subject
		by := ca.CommonName
		if len(ca.Organization) > 0 && ca.Organization[0] != "" {
			by = ca.Organization[0]
		}
		v.ValidatedBy = printableName(by)
	}
	if min := w.e.opts.MinValidation; !meetsMin(kind, min) {
		return StatusUntrusted, fmt.Sprintf("the CA validated less than trust.min_validation = %q asks: the certificate is %s", min, v.Validation)
	}
	return StatusValid, reason
}
