package cms

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"slices"
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

// envDES3WrapIV is the fixed IV of RFC 3217 section 3.
var envDES3WrapIV = [8]byte{0x4a, 0xdd, 0xa2, 0x2c, 0x79, 0xe8, 0x21, 0x05}

// envDES3KeyUnwrap is the Triple-DES key unwrap of RFC 3217 section 3.2
// (id-alg-CMS3DESwrap), which OpenSSL uses for ECDH recipients when the
// content cipher is des-ede3-cbc. The CMS key checksum (the first 8 octets
// of SHA-1 of the key) is compared in constant time.
func envDES3KeyUnwrap(kek, wrapped []byte) ([]byte, error) {
	if len(wrapped) != 40 {
		return nil, envErrf(ErrDecrypt, "key unwrap: 3DES-wrapped key is %d bytes, want 40", len(wrapped))
	}
	block, err := des.NewTripleDESCipher(kek)
	if err != nil {
		return nil, envErrf(ErrDecrypt, "key unwrap: %v", err)
	}
	// TEMP3 = CBC-decrypt(wrapped, IV 4adda22c79e82105); TEMP2 = reverse.
	tmp := make([]byte, 40)
	cipher.NewCBCDecrypter(block, envDES3WrapIV[:]).CryptBlocks(tmp, wrapped)
	slices.Reverse(tmp)
	// TEMP2 = IV || TEMP1; CEK || ICV = CBC-decrypt(TEMP1, IV).
	iv, t1 := tmp[:8], tmp[8:]
	cekICV := make([]byte, 32)
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(cekICV, t1)
	clear(tmp)
	sum := sha1.Sum(cekICV[:24])
	if subtle.ConstantTimeCompare(sum[:8], cekICV[24:]) != 1 {
		clear(cekICV)
		return nil, envErrf(ErrDecrypt, "key unwrap: 3DES key checksum mismatch")
	}
	return cekICV[:24:24], nil
}

// envAESKeyWrap is the AES key wrap of RFC 3394 section 2.2.1
// (index-based form) with the default initial value.
func envAESKeyWrap(kek, key []byte) ([]byte, error) {
	if len(key)%8 != 0 || len(key) < 16 {
		return nil, fmt.Errorf("cms: key wrap: key is %d bytes (need a multiple of 8, at least 16)", len(key))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("cms: key wrap: %w", err)
	}
	n := len(key) / 8
	out := make([]byte, 8+len(key))
	copy(out, envKeyWrapIV[:])
	copy(out[8:], key)
	var b [16]byte
	for j := range 6 {
		for i := 1; i <= n; i++ {
			ri := out[i*8 : i*8+8]
			copy(b[:8], out[:8])
			copy(b[8:], ri)
			block.Encrypt(b[:], b[:])
			binary.BigEndian.PutUint64(out[:8], binary.BigEndian.Uint64(b[:8])^uint64(n*j+i))
			copy(ri, b[8:])
		}
	}
	clear(b[:])
	return out, nil
}
