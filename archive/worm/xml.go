package worm

// The server's XML answers: an error (<Error><Code/><Message/></Error>)
// and a bucket's Object Lock configuration
// (<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled>
// <Rule><DefaultRetention><Mode/>…</DefaultRetention></Rule>…).
// Both come from a server smimed does not control: bounded by the caller
// (maxAnswer), parsed with encoding/xml, which neither expands entities
// nor fetches anything.

import (
	"encoding/xml"
	"fmt"
	"strings"
)

// parseError reads an S3 error body; a body that is not one gives an
// S3Error without code (the caller fills in status and operation).
func parseError(b []byte) *S3Error {
	var e struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	if xml.Unmarshal(b, &e) != nil {
		return &S3Error{}
	}
	return &S3Error{Code: limit(strings.TrimSpace(e.Code), 100), Message: limit(strings.TrimSpace(e.Message), 500)}
}

func limit(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// parseLockConfig reads a GetObjectLockConfiguration answer.
func parseLockConfig(b []byte) (Lock, error) {
	var c struct {
		XMLName xml.Name `xml:"ObjectLockConfiguration"`
		Enabled string   `xml:"ObjectLockEnabled"`
		Rule    struct {
			Mode string `xml:"DefaultRetention>Mode"`
		} `xml:"Rule"`
	}
	if err := xml.Unmarshal(b, &c); err != nil {
		return Lock{}, fmt.Errorf("worm: get object lock configuration: the answer is not an ObjectLockConfiguration: %v", limit(err.Error(), 200))
	}
	return Lock{Enabled: strings.TrimSpace(c.Enabled) == "Enabled", DefaultMode: limit(clean(strings.TrimSpace(c.Rule.Mode)), 20)}, nil
}
