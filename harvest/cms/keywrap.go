package cms

import (
	"crypto/aes"
	"crypto/subtle"
	"encoding/binary"
)

// envKeyWrapIV is the default initial value of RFC 3394 section 2.2.3.1.
var envKeyWrapIV = [8]byte{0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6}

// envAESKeyUnwrap is the AES key unwrap of RFC 3394 section 2.2.2 (index-based
// form). The integrity value is compared in constant time; on failure no
// part of the unwrapped key is returned.
func envAESKeyUnwrap(kek, wrapped []byte) ([]byte, error) {
	if len(wrapped)%8 != 0 || len(wrapped) < 24 {
		return nil, envErrf(ErrDecrypt, "key unwrap: wrapped key is %d bytes (need a multiple of 8, at least 24)", len(wrapped))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, envErrf(ErrDecrypt, "key unwrap: %v", err)
	}
	n := len(wrapped)/8 - 1
	r := make([]byte, n*8)
	copy(r, wrapped[8:])
	var a [8]byte
	copy(a[:], wrapped[:8])
	var b [16]byte
	for j := 5; j >= 0; j-- {
		for i := n; i >= 1; i-- {
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(b[:8], binary.BigEndian.Uint64(a[:])^t)
			ri := r[(i-1)*8 : i*8]
			copy(b[8:], ri)
			block.Decrypt(b[:], b[:])
			copy(a[:], b[:8])
			copy(ri, b[8:])
		}
	}
	clear(b[:])
	if subtle.ConstantTimeCompare(a[:], envKeyWrapIV[:]) != 1 {
		clear(r)
		return nil, envErrf(ErrDecrypt, "key unwrap: integrity check failed")
	}
	return r, nil
}
