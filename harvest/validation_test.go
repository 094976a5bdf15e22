package harvest

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/testenv"
)

// TestValidationTypes (issue 15): certificates made by openssl ca with the
// S/MIME Baseline Requirements' policy OIDs (7.1.6.1) and subjects that
// name more than the CA vouches for. The verdict says what the CA
// validated, shows a name or an organization only when the validation
// type covers it, and trust.min_validation turns a signature whose CA
// validated less into untrusted.
func TestValidationTypes(t *testing.T) {
	ca := testenv.NewCA(t, "Validation CA", "")
	issued := time.Now().AddDate(0, -1, 0)
	roots := x509.NewCertPool()
	roots.AddCert(testenv.ReadCert(t, ca.Cert))
	type tc struct {
		name, subj, policy, from string
		validation, validated    string
		valid                    map[string]bool // min_validation → still valid
	}
	all := map[string]bool{MinMailbox: true, MinOrganization: true, MinIndividual: true, MinSponsor: true}
	cases := []tc{
		{"mailbox", "/CN=alice@partner.example/emailAddress=alice@partner.example", "2.23.140.1.5.1.3", "alice@partner.example",
			"mailbox-validated (strict)", "", map[string]bool{MinMailbox: true}},
		{"mailbox-with-org", "/O=Fake Corp/CN=Fake Corp/emailAddress=mallory@partner.example", "2.23.140.1.5.1.2", "mallory@partner.example",
			"mailbox-validated (multipurpose)", "", map[string]bool{MinMailbox: true}},
		{"organization", "/O=ACME GmbH/CN=ACME GmbH/emailAddress=orders@acme.example", "2.23.140.1.5.2.2", "orders@acme.example",
			"organization-validated (multipurpose)", "ACME GmbH", map[string]bool{MinMailbox: true, MinOrganization: true}},
		{"sponsor", "/O=ACME GmbH/GN=Alice/SN=Example/CN=Alice Example/emailAddress=alice@acme.example", "2.23.140.1.5.3.3", "alice@acme.example",
			"sponsor-validated (strict)", "Alice Example, ACME GmbH", all},
		{"individual", "/GN=Bob/SN=Builder/CN=Bob Builder/emailAddress=bob@home.example", "2.23.140.1.5.4.1", "bob@home.example",
			"individual-validated (legacy)", "Bob Builder", map[string]bool{MinMailbox: true, MinIndividual: true}},
		{"none", "/O=Fake Corp/GN=Mallory/SN=Impostor/CN=Mallory/emailAddress=eve@partner.example", "", "eve@partner.example",
			"unspecified", "", map[string]bool{MinMailbox: true}},
	}
	for _, c := range cases {
		cert, key := ca.IssuePolicy(t, c.name, c.subj, c.policy, issued)
		if c.policy != "" {
			// The OID is in the certificate as openssl reads it.
			if out := string(testenv.OpenSSL(t, "", "x509", "-in", cert, "-noout", "-ext", "certificatePolicies")); !strings.Contains(out, "Policy: "+c.policy) {
				t.Fatalf("%s: openssl does not see policy %s:\n%s", c.name, c.policy, out)
			}
		}
		msg := ca.Sign(t, cert, key, c.from, "order", "please ship")
		for _, min := range []string{MinMailbox, MinOrganization, MinIndividual, MinSponsor} {
			res, err := New(Options{Roots: roots, MinValidation: min}).Process(msg, time.Now())
			if err != nil || len(res.Report.Signatures) != 1 {
				t.Fatalf("%s: %+v, %v", c.name, res, err)
			}
			v := res.Report.Signatures[0]
			if v.Validation != c.validation || v.ValidatedName != c.validated || v.ValidatedBy != "Smimed Test" {
				t.Errorf("%s: validation %q, name %q, by %q; want %q, %q, by Smimed Test", c.name, v.Validation, v.ValidatedName, v.ValidatedBy, c.validation, c.validated)
			}
			switch want := c.valid[min]; {
			case want && v.Status != StatusValid:
				t.Errorf("%s, min_validation %s: %s %q, want valid", c.name, min, v.Status, v.Reason)
			case !want && (v.Status != StatusUntrusted || !strings.Contains(v.Reason, "min_validation")):
				t.Errorf("%s, min_validation %s: %s %q, want untrusted naming min_validation", c.name, min, v.Status, v.Reason)
			}
		}
	}
}
