package archive

// The Merkle tree of a seal, in the shape of RFC 9162 section 2.1 (the
// Certificate Transparency tree), over the chain hashes of the records
// a seal covers, in id order:
//
//	leaf(h)    = SHA-256(0x00 ‖ h)          h: a record's 32-byte chain hash
//	node(l, r) = SHA-256(0x01 ‖ l ‖ r)
//	MTH(one leaf)  = leaf(h)
//	MTH(D[0:n])    = node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two below n
//
// The 0x00 and 0x01 prefixes keep a leaf from passing for a node. An
// inclusion proof is the list of sibling hashes from the leaf up to the
// root, each marked with the side it stands on (ProofStep).

import (
	"crypto/sha256"
	"encoding/hex"
)

// ProofStep is one level of an inclusion proof: the sibling's hash and
// whether it stands left ("L": node(sibling, current)) or right ("R":
// node(current, sibling)) of the hash computed so far.
type ProofStep struct {
	Side string `json:"side"`
	Hash string `json:"hash"`
}

func merkleLeaf(h []byte) []byte {
	s := sha256.New()
	s.Write([]byte{0})
	s.Write(h)
	return s.Sum(nil)
}

func merkleNode(l, r []byte) []byte {
	s := sha256.New()
	s.Write([]byte{1})
	s.Write(l)
	s.Write(r)
	return s.Sum(nil)
}

// splitPoint is the largest power of two below n (n > 1).
func splitPoint(n int) int {
	k := 1
	for k<<1 < n {
		k <<= 1
	}
	return k
}

// merkleRoot is MTH over the record hashes; nil for none.
func merkleRoot(hashes [][]byte) []byte {
	switch len(hashes) {
	case 0:
		return nil
	case 1:
		return merkleLeaf(hashes[0])
	}
	k := splitPoint(len(hashes))
	return merkleNode(merkleRoot(hashes[:k]), merkleRoot(hashes[k:]))
}

// merklePath is the inclusion proof of leaf m, bottom up.
func merklePath(m int, hashes [][]byte) []ProofStep {
	if len(hashes) <= 1 {
		return nil
	}
	k := splitPoint(len(hashes))
	if m < k {
		return append(merklePath(m, hashes[:k]), ProofStep{Side: "R", Hash: hex.EncodeToString(merkleRoot(hashes[k:]))})
	}
	return append(merklePath(m-k, hashes[k:]), ProofStep{Side: "L", Hash: hex.EncodeToString(merkleRoot(hashes[:k]))})
}

// proofRoot recomputes the root from a record hash and its proof; nil
// when a step is malformed.
func proofRoot(hash []byte, path []ProofStep) []byte {
	cur := merkleLeaf(hash)
	for _, s := range path {
		sib, err := hex.DecodeString(s.Hash)
		if err != nil || len(sib) != sha256.Size {
			return nil
		}
		switch s.Side {
		case "L":
			cur = merkleNode(sib, cur)
		case "R":
			cur = merkleNode(cur, sib)
		default:
			return nil
		}
	}
	return cur
}
