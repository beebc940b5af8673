package pvm

import "encoding/binary"

// Inbox message encodings (reference §2): what read_input returns.
const (
	MaxInputSize  = 4096 // bytes of one inbox message, tag included
	MaxOutputSize = 4096
	MaxOutbox     = 100 // outbox messages per level
	MaxReboots    = 1000
)

// StartOfLevel is the internal message opening every level.
func StartOfLevel() []byte { return []byte{0x00, 0x01} }

// EndOfLevel is the internal message closing every level.
func EndOfLevel() []byte { return []byte{0x00, 0x02} }

// InfoPerLevel carries the predecessor block's timestamp (unix seconds) and hash.
func InfoPerLevel(timestamp int64, predecessor [32]byte) []byte {
	b := []byte{0x00, 0x03}
	b = binary.BigEndian.AppendUint64(b, uint64(timestamp))
	return append(b, predecessor[:]...)
}

// External wraps an external message payload.
func External(payload []byte) []byte { return append([]byte{0x01}, payload...) }

// Transfer is an internal transfer to the rollup of a Micheline payload
// (binary, see MichelineBytes) from sender (KT1, 20 bytes) and source
// (21-byte pkh) to destination (sr1, 20 bytes).
func Transfer(micheline []byte, sender [20]byte, source [21]byte, destination [20]byte) []byte {
	b := append([]byte{0x00, 0x00}, micheline...)
	b = append(b, sender[:]...)
	b = append(b, source[:]...)
	return append(b, destination[:]...)
}

// MichelineBytes is the binary Micheline form of a bytes literal.
func MichelineBytes(v []byte) []byte {
	return append(binary.BigEndian.AppendUint32([]byte{0x0a}, uint32(len(v))), v...)
}

// MichelineString is the binary Micheline form of a string literal.
func MichelineString(v string) []byte {
	return append(binary.BigEndian.AppendUint32([]byte{0x01}, uint32(len(v))), v...)
}

// MichelineInt is the binary Micheline form of an integer (zarith).
func MichelineInt(v int64) []byte {
	out := []byte{0x00}
	neg := v < 0
	u := uint64(v)
	if neg {
		u = uint64(-v)
	}
	first := byte(u & 0x3f)
	if neg {
		first |= 0x40
	}
	u >>= 6
	if u > 0 {
		first |= 0x80
	}
	out = append(out, first)
	for u > 0 {
		c := byte(u & 0x7f)
		u >>= 7
		if u > 0 {
			c |= 0x80
		}
		out = append(out, c)
	}
	return out
}
