package timestamp

import (
	"testing"
)

// FuzzParseResponse: a TSA's answer is hostile input.
func FuzzParseResponse(f *testing.F) {
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x02})
	f.Add([]byte{0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseResponse(b)
		if err == nil {
			r.Matches(make([]byte, 32))
			r.Verify(make([]byte, 32), nil, nil)
		}
	})
}

// FuzzParseTSTInfo: the token's content.
func FuzzParseTSTInfo(f *testing.F) {
	f.Add([]byte{0x30, 0x00})
	f.Add([]byte("\x30\x3a\x02\x01\x01\x06\x03\x2a\x03\x04\x30\x2f\x30\x0b\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x04\x20" +
		"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
		"\x02\x01\x01\x18\x0f20260101000000Z"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseTSTInfo(b)
	})
}
