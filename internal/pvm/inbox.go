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

// Transfer is an internal transfer to the rollup of a Micheline `bytes`
// payload from sender (KT1, 20 bytes) and source (21-byte pkh) to
// destination (sr1, 20 bytes).
func Transfer(payload []byte, sender [20]byte, source [21]byte, destination [20]byte) []byte {
	b := []byte{0x00, 0x00, 0x0a}
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	b = append(b, payload...)
	b = append(b, sender[:]...)
	b = append(b, source[:]...)
	return append(b, destination[:]...)
}
