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

// validation is what a certificate's CA asserts it validated.
type validation struct {
	kind, generation string // a BR validation type, or ValidationUnspecified and ""
	class            int    // a classic class (1–4), 0 when the CA marks none
	classBy          string // how the CA marks it
}

// certValidation returns the validation type and generation the
// certificate asserts (the first BR policy it names), or
// ValidationUnspecified and "", and its classic class (classOf).
func certValidation(c *x509.Certificate) validation {
	v := validation{kind: ValidationUnspecified}
	for _, p := range c.PolicyIdentifiers {
		if len(p) != 7 || !p[:5].Equal(oidBRSMIME) {
			continue
		}
		k, g := validationTypes[p[5]], validationGenerations[p[6]]
		if k != "" && g != "" {
			v.kind, v.generation = k, g
			break
		}
	}
	v.class, v.classBy = classOf(c)
	return v
}

// Classic classes, from before the Baseline Requirements: class 1 vouches
// for the mailbox alone, class 2 also for the name and organization in
// the subject, class 3 (and 4) for an identity checked against documents.
// A CA marks the class in a policy it defines to mean one, or in the name
// of the issuing CA ("StartCom Class 1 Primary Intermediate Client CA",
// "TC TrustCenter Class 3 L1 CA V"): the issuer's name is the CA's own
// word, certified by the chain like the rest of the certificate.

// classPolicies are policies whose CA documents them as a class.
var classPolicies = map[string]int{
	// VeriSign (later Symantec, DigiCert) Trust Network, classes 1–3.
	"2.16.840.1.113733.1.7.23.1": 1,
	"2.16.840.1.113733.1.7.23.2": 2,
	"2.16.840.1.113733.1.7.23.3": 3,
}

// classOf returns the classic class c's CA marks, and how ("policy OID",
// "issuer NAME"); 0 when none.
func classOf(c *x509.Certificate) (int, string) {
	for _, p := range c.PolicyIdentifiers {
		if n := classPolicies[p.String()]; n != 0 {
			return n, "policy " + p.String()
		}
	}
	names := append([]string{c.Issuer.CommonName}, c.Issuer.OrganizationalUnit...)
	for _, name := range names {
		f := strings.Fields(name)
		for i := 0; i+1 < len(f); i++ {
			if strings.EqualFold(f[i], "class") && len(f[i+1]) == 1 && f[i+1][0] >= '1' && f[i+1][0] <= '4' {
				return int(f[i+1][0] - '0'), "issuer " + printableName(name)
			}
		}
	}
	return 0, ""
}

// CertValidation describes what the certificate's CA asserts it
// validated ("sponsor-validated (strict)", "unspecified"), and the name
// and organization validated under it ("" when none). It does not check
// the chain: the store's certificates were judged when they came.
func CertValidation(c *x509.Certificate) (validation, validated string) {
	v := certValidation(c)
	return v.describe(), validatedIdentity(c, v)
}

// validatedIdentity is what the CA validated beyond the address, under
// its validation type: the person's name (givenName and surname, or a
// pseudonym) for individual- and sponsor-validated certificates, the
// organization's name for organization- and sponsor-validated ones. A
// certificate of no BR type whose CA marks class 2 or higher shows its
// common name (unless it is an address) and organization. "" for the
// others.
func validatedIdentity(c *x509.Certificate, v validation) string {
	kind := v.kind
	var parts []string
	if kind == ValidationIndividual || kind == ValidationSponsor {
		if name := personName(c); name != "" {
			parts = append(parts, name)
		}
	}
	if kind == ValidationUnspecified && v.class >= 2 {
		if cn := strings.TrimSpace(c.Subject.CommonName); cn != "" && !strings.Contains(cn, "@") {
			parts = append(parts, cn)
		}
		kind = ValidationOrganization
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

// describe is the signature's validation as reported: "sponsor-validated
// (strict)", "unspecified", "class 1 (issuer StartCom Class 1 …)".
func (v validation) describe() string {
	var out string
	switch {
	case v.generation != "":
		out = fmt.Sprintf("%s (%s)", v.kind, v.generation)
		if v.class != 0 {
			out += fmt.Sprintf(", class %d", v.class)
		}
	case v.class != 0:
		out = fmt.Sprintf("class %d (%s)", v.class, v.classBy)
	default:
		out = v.kind
	}
	return out
}

// Minimum validation levels ([trust] min_validation).
const (
	MinMailbox      = "mailbox"
	MinOrganization = "organization"
	MinIndividual   = "individual"
	MinSponsor      = "sponsor"
)

// meetsMin reports whether a certificate of validation v satisfies min:
// mailbox is met by every certificate whose chain holds (it vouches for
// the address); organization by organization- and sponsor-validated,
// individual by individual- and sponsor-validated, sponsor only by
// sponsor-validated. Without a BR type, class 2 meets organization and
// individual, class 3 and 4 every level.
func meetsMin(v validation, min string) bool {
	kind := v.kind
	if kind == ValidationUnspecified {
		switch {
		case v.class >= 3:
			kind = ValidationSponsor
		case v.class == 2 && min != MinSponsor:
			return true
		}
	}
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
	val := certValidation(p.cert)
	v.Validation = val.describe()
	v.ValidatedName = validatedIdentity(p.cert, val)
	if len(p.chain) > 1 {
		ca := p.chain[1].Subject
		by := ca.CommonName
		if len(ca.Organization) > 0 && ca.Organization[0] != "" {
			by = ca.Organization[0]
		}
		v.ValidatedBy = printableName(by)
	}
	if min := w.e.opts.MinValidation; !meetsMin(val, min) {
		return StatusUntrusted, fmt.Sprintf("the CA validated less than trust.min_validation = %q asks: the certificate is %s", min, v.Validation)
	}
	return StatusValid, reason
}
