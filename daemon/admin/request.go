package admin

// The control socket's requests: the line a client sends, the operations
// there are, and their decoding (bounded, every field checked).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/smimed/smimed/archive"
	"github.com/smimed/smimed/harvest"
)

// controlRequest is the line a client sends.
type controlRequest struct {
	Op       string         `json:"op"`
	Query    *archive.Query `json:"query,omitempty"`    // list
	ID       uint64         `json:"id,omitempty"`       // get, message
	Original bool           `json:"original,omitempty"` // message
	Evidence bool           `json:"evidence,omitempty"` // verify: the seals' tokens too
	OpenSSL  bool           `json:"openssl,omitempty"`  // verify with evidence: and by openssl ts -verify
	IDs      []uint64       `json:"ids,omitempty"`      // retry; none: every undecryptable record
	Since    time.Time      `json:"since,omitzero"`     // audit
	Match    string         `json:"match,omitempty"`    // certs_*: an address or a fingerprint
	All      bool           `json:"all,omitempty"`      // certs_trust: for every address
	Data     []byte         `json:"data,omitempty"`     // certs_crl_import: the CRL; certs_import: the certificates (base64 in JSON)
	Emails   []string       `json:"emails,omitempty"`   // certs_import: the addresses (none: the certificate's)
	Trust    bool           `json:"trust,omitempty"`    // certs_import: also trust it (pinned)
	// Command is the admin command making the request (WithAuditCommand).
	Command string `json:"command,omitempty"`
	// hold_add, hold_remove: the case; hold_add, restrict: the reason;
	// restrict: lift; purge_approve: the plan.
	Case   string `json:"case,omitempty"`
	Reason string `json:"reason,omitempty"`
	Lift   bool   `json:"lift,omitempty"`
	Plan   string `json:"plan,omitempty"`
}

func (r *controlRequest) query() archive.Query {
	if r.Query == nil {
		return archive.Query{}
	}
	return *r.Query
}

// The ops of the certificate store and of the daemon's state.
const (
	opCertsList        = "certs_list"
	opCertsEmail       = "certs_email"
	opCertsFingerprint = "certs_fingerprint"
	opCertsCertificate = "certs_certificate"
	opCertsIMs         = "certs_intermediates"
	opCertsTrust       = "certs_trust"
	opCertsUntrust     = "certs_untrust"
	opCRLs             = "certs_crls"
	opCRLImport        = "certs_crl_import"
	opCertsImport      = "certs_import"
	opStatus           = "status"
	opHolds            = "holds"
	opHoldAdd          = "hold_add"
	opHoldRemove       = "hold_remove"
	opRestrict         = "restrict"
	opPurgePlan        = "purge_plan"
	opPurgeApprove     = "purge_approve"
)

var controlOps = []string{"ping", "list", "get", "message", "verify", "proof", opVerifyWorm, "retry", "backup", "audit",
	opCertsList, opCertsEmail, opCertsFingerprint, opCertsCertificate, opCertsIMs, opCertsTrust, opCertsUntrust, opCRLs, opCRLImport, opCertsImport, opStatus,
	opHolds, opHoldAdd, opHoldRemove, opRestrict, opPurgePlan, opPurgeApprove}

// importOp reports whether op carries a file (a CRL, certificates), and
// so may be larger than other requests (up to maxImportRequestSize).
func importOp(op string) bool { return op == opCRLImport || op == opCertsImport }

// decodeRequest reads and checks a request line: exactly one JSON object,
// no unknown fields, a known op with what it needs.
func decodeRequest(line []byte) (*controlRequest, error) {
	if len(line) > maxImportRequestSize {
		return nil, fmt.Errorf("request larger than %d KiB", maxImportRequestSize>>10)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var req controlRequest
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("not a JSON request: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("more than one JSON value on the request line")
	}
	if !slices.Contains(controlOps, req.Op) {
		return nil, fmt.Errorf("unknown op %q (want one of %s)", req.Op, strings.Join(controlOps, ", "))
	}
	if len(line) > maxRequestSize && !importOp(req.Op) {
		return nil, fmt.Errorf("request larger than %d KiB", maxRequestSize>>10)
	}
	switch req.Op {
	case "list":
		q := req.query()
		if err := q.Check(); err != nil {
			return nil, fmt.Errorf("query: %w", err)
		}
	case opHoldAdd, opHoldRemove:
		if req.Case == "" {
			return nil, fmt.Errorf("%s needs a case name", req.Op)
		}
		q := req.query()
		if err := q.Check(); err != nil {
			return nil, fmt.Errorf("query: %w", err)
		}
	case opPurgeApprove:
		if req.Plan == "" {
			return nil, fmt.Errorf("%s needs a plan", req.Op)
		}
	case "get", "message", "proof", opRestrict:
		if req.ID == 0 {
			return nil, fmt.Errorf("%s needs a record id", req.Op)
		}
	case "retry":
		if len(req.IDs) > maxRetryIDs {
			return nil, fmt.Errorf("retry of %d records: at most %d at once", len(req.IDs), maxRetryIDs)
		}
	case opCertsEmail, opCertsFingerprint, opCertsCertificate, opCertsTrust, opCertsUntrust:
		if req.Match == "" {
			return nil, fmt.Errorf("%s needs an address or fingerprint (match)", req.Op)
		}
	case opCRLImport:
		if len(req.Data) == 0 || len(req.Data) > MaxCRLImport {
			return nil, fmt.Errorf("%s needs the CRL (data), at most %d bytes", req.Op, MaxCRLImport)
		}
	case opCertsImport:
		if len(req.Data) == 0 || len(req.Data) > MaxCRLImport {
			return nil, fmt.Errorf("%s needs the certificates (data), at most %d bytes", req.Op, MaxCRLImport)
		}
		if len(req.Emails) > harvest.MaxCertificates {
			return nil, fmt.Errorf("%s: at most %d addresses", req.Op, harvest.MaxCertificates)
		}
	}
	switch req.Command {
	case "", CommandFailed, CommandExport:
	default:
		return nil, fmt.Errorf("unknown command %q", req.Command)
	}
	return &req, nil
}
