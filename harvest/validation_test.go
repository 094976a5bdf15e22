package harvest

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
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
	// Classic classes: marked by a policy documented as one (VeriSign's
	// class 3), or by the name of the issuing CA.
	classCA := testenv.NewCA(t, "Partner Class 2 Client CA", "")
	roots.AddCert(testenv.ReadCert(t, classCA.Cert))
	type classed struct {
		tc
		ca *testenv.CA
	}
	var all2 []classed
	for _, c := range cases {
		all2 = append(all2, classed{c, ca})
	}
	all2 = append(all2,
		classed{tc{"verisign-class-3", "/O=ACME GmbH/CN=Alice Example/emailAddress=alice@acme.example", "2.16.840.1.113733.1.7.23.3", "alice@acme.example",
			"class 3 (policy 2.16.840.1.113733.1.7.23.3)", "Alice Example, ACME GmbH", all}, ca},
		classed{tc{"class-2-issuer", "/O=Partner GmbH/CN=Carol Example/emailAddress=carol@partner.example", "", "carol@partner.example",
			"class 2 (issuer Partner Class 2 Client CA)", "Carol Example, Partner GmbH", map[string]bool{MinMailbox: true, MinOrganization: true, MinIndividual: true}}, classCA},
		classed{tc{"class-2-address-only", "/CN=dave@partner.example/emailAddress=dave@partner.example", "", "dave@partner.example",
			"class 2 (issuer Partner Class 2 Client CA)", "", map[string]bool{MinMailbox: true, MinOrganization: true, MinIndividual: true}}, classCA},
		classed{tc{"br-and-class", "/CN=erin@partner.example/emailAddress=erin@partner.example", "2.23.140.1.5.1.3", "erin@partner.example",
			"mailbox-validated (strict), class 2", "", map[string]bool{MinMailbox: true}}, classCA},
	)
	for _, cc := range all2 {
		c, ca := cc.tc, cc.ca
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

// TestValidationCorpus (issue 15): what real public S/MIME certificates in
// the shared corpus assert, read out of the messages by openssl. None of
// them carries a Baseline Requirements policy (they were
// issued before 2023); the StartCom ones are class 1 by their issuing
// CA's name, the TC TrustCenter one class 3, the Comodo and Actalis ones
// mark no class.
func TestValidationCorpus(t *testing.T) {
	dir := testenv.CorpusPath()
	if _, err := os.Stat(filepath.Join(dir, "MANIFEST.md")); err != nil {
		testenv.SkipNoCorpus(t, dir, err)
	}
	for _, c := range []struct {
		file, email           string
		validation, validated string
	}{
		{"mimekit/thunderbird-signed.eml", "fejj@gnome.org", "class 1 (issuer StartCom Class 1 Primary Intermediate Client CA)", ""},
		{"bouncycastle-mail/3nnn_smime.eml", "bruce_hoff@hotmail.com", "class 1 (issuer StartCom Class 1 Primary Intermediate Client CA)", ""},
		{"bouncycastle-mail/multi-alternative.eml", "EDIFACT@landenergie.de", "class 3 (issuer TC TrustCenter Class 3 L1 CA V)", "Landenergie Team Certificate, Maschinenringe Deutschland GmbH"},
		{"bouncycastle-mail/qp-soft-break.eml", "martijn@izecom.com", ValidationUnspecified, ""},
		{"kde-messagelib/smime-signed-apple.mbox", "diana.goncalves@kdab.com", ValidationUnspecified, ""},
		{"simple-java-mail/messages/SMIME_signed_and_clear_text.eml", "shatzing5@outlook.com", ValidationUnspecified, ""},
	} {
		p7 := testenv.OpenSSL(t, "", "smime", "-pk7out", "-in", filepath.Join(dir, c.file))
		certsPEM := testenv.OpenSSLInput(t, "", p7, "pkcs7", "-print_certs")
		var found *x509.Certificate
		for rest := certsPEM; ; {
			var block *pem.Block
			if block, rest = pem.Decode(rest); block == nil {
				break
			}
			cert, err := x509.ParseCertificate(block.Bytes)
			if err == nil && slices.Contains(cert.EmailAddresses, c.email) {
				found = cert
			}
		}
		if found == nil {
			t.Errorf("%s: openssl finds no certificate for %s", c.file, c.email)
			continue
		}
		if v, name := CertValidation(found); v != c.validation || name != c.validated {
			t.Errorf("%s (%s): validation %q, validated %q; want %q, %q", c.file, c.email, v, name, c.validation, c.validated)
		}
	}
}
