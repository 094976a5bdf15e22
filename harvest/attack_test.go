package harvest

import (
	"path/filepath"
	"testing"
)

// Regression tests for the attacks of the "trust under attack" review: each
// message is made by OpenSSL with the fixture PKI, and the expected verdict
// follows from the attack's premise (who really signed what), never from
// the engine's own output.

// signAs signs entity with the fixture certificate name (alice, bob, …,
// issued under the intermediate) and returns the multipart/signed message
// under the given outer header.
func signAs(t *testing.T, dir, name, header string, entity []byte) []byte {
	t.Helper()
	key := privateCopy(t, dir, name+".key")
	out := osslIn(t, dir, entity, "cms", "-sign", "-signer", filepath.Join(testdataDir, "pki", name+".crt"), "-inkey", key,
		"-certfile", filepath.Join(testdataDir, "pki", "intermediate.pem"))
	return append([]byte(header), out...)
}

// Attack 2: bob holds a trusted certificate for bob@elsewhere.example and
// dresses his From field up as alice's.
func TestLookalikeFrom(t *testing.T) {
	needOpenSSL(t)
	dir := t.TempDir()
	entity := []byte("Content-Type: text/plain\r\n\r\nPlease change our bank details.\r\n")
	eng := New(Options{Roots: fixtureRoots(t)})
	for _, tc := range []struct{ header, want string }{
		{"From: bob@elsewhere.example\r\n", StatusValid}, // the control: bob as himself
		{"From: Bob Example <bob@elsewhere.example>\r\n", StatusValid},
		{"From: \"Bob (bob@elsewhere.example)\" <bob@elsewhere.example>\r\n", StatusValid},
		{"From: \"Sales @ Elsewhere\" <bob@elsewhere.example>\r\n", StatusValid},
		{"From: =?utf-8?q?Re=3A_Bob?= <bob@elsewhere.example>\r\n", StatusValid},
		// group syntax: the group name is shown, net/mail drops it
		{"From: \"alice@partner.example\": bob@elsewhere.example;\r\n", StatusMismatch},
		{"From: Alice: bob@elsewhere.example;\r\n", StatusMismatch},
		// at-sign lookalikes in the display name
		{"From: \"alice\uff20partner.example\" <bob@elsewhere.example>\r\n", StatusMismatch},
		{"From: \"alice\ufe6bpartner.example\" <bob@elsewhere.example>\r\n", StatusMismatch},
		{"From: \"alice @ partner.example\" <bob@elsewhere.example>\r\n", StatusMismatch},
		{"From: \"alice\u200b@partner.example\" <bob@elsewhere.example>\r\n", StatusMismatch},
		{"From: \"\uff41lice@partner\uff0eexample\" <bob@elsewhere.example>\r\n", StatusMismatch},
		// the same in an encoded word, and in a comment
		{"From: =?utf-8?b?YWxpY2XvvKBwYXJ0bmVyLmV4YW1wbGU=?= <bob@elsewhere.example>\r\n", StatusMismatch},
		{"From: bob@elsewhere.example (alice@partner.example)\r\n", StatusMismatch},
		{"From: alice@partner.example <bob@elsewhere.example>\r\n", StatusMismatch},
	} {
		res := process(t, eng, signAs(t, dir, "bob", tc.header, entity))
		if s := res.Report.Signatures; len(s) != 1 || s[0].Status != tc.want {
			t.Errorf("%q: signatures = %+v, want %s", tc.header, s, tc.want)
		} else if tc.want == StatusMismatch && s[0].Reason == "" {
			t.Errorf("%q: mismatch without a reason", tc.header)
		}
	}
}
