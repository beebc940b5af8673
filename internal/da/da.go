// Package da frames DSN submissions for a smart rollup's inbox, for the
// sequencer that posts them and the kernel that reads them (DESIGN.md §5).
//
// A submission is an opaque payload (certificates and batches, encoded by
// the kernel's submission format) of any size. Split cuts it into chunks
// that each fit one targeted external message (Target: 00 ‖ rollup address
// ‖ contents, contents ≤ 4074 bytes). Every chunk names its submission by
// the payload's BLAKE2b-256 digest and carries its index, the chunk count
// and the payload length, so a Reassembler can collect chunks that arrive
// out of order, across levels, duplicated, interleaved with other
// submissions or from several posters, and hand over a payload only once
// its digest checks. Pending chunks live in a Store (the kernel's durable
// storage), bounded in bytes and in submissions, and expire after a number
// of levels.
//
// A chunk that contradicts an earlier chunk of its submission (same index,
// other bytes) is rejected, not merged. If the first chunk seen for an
// index was forged, the payload's digest fails on completion and every
// chunk of that submission is dropped, so an honest poster's next copy can
// complete: a forger can delay a submission, never alter it.
//
// The package is pure and deterministic (no clock, no randomness) and
// compiles for GOOS=wasip1.
package da

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/blake2b"
)

// Sizes of the framing.
const (
	// MaxContents is the largest contents of a targeted external message:
	// 4096-byte inputs minus the external tag, the 00 tag and the address.
	MaxContents = 4074
	// HeaderSize is a chunk's header: tag, id, payload length, index, count.
	HeaderSize = 1 + 32 + 4 + 2 + 2
	// MaxChunkData is the payload bytes one chunk carries.
	MaxChunkData = MaxContents - HeaderSize
	// MaxChunks bounds a submission's chunks (the index is 16 bits).
	MaxChunks = 1<<16 - 1
)

// chunkTag opens every chunk (version 1 of the framing).
const chunkTag byte = 0xd1

// Errors for bad chunks.
var (
	ErrNotChunk  = errors.New("da: not a DSN chunk")
	ErrMalformed = errors.New("da: malformed chunk")
	ErrConflict  = errors.New("da: chunk contradicts an earlier chunk of its submission")
	ErrDigest    = errors.New("da: reassembled payload does not match its digest")
	ErrFull      = errors.New("da: pending space exhausted")
	ErrTooLarge  = errors.New("da: submission larger than the limit")
)

// ID names a submission: the BLAKE2b-256 digest of its payload.
type ID [32]byte

// Chunk is one piece of a submission.
type Chunk struct {
	ID     ID
	Length uint32 // payload bytes of the whole submission
	Index  uint16
	Count  uint16
	Data   []byte
}

// Encode returns the chunk's bytes: the contents of one targeted message.
func (c Chunk) Encode() []byte {
	b := make([]byte, 0, HeaderSize+len(c.Data))
	b = append(b, chunkTag)
	b = append(b, c.ID[:]...)
	b = binary.BigEndian.AppendUint32(b, c.Length)
	b = binary.BigEndian.AppendUint16(b, c.Index)
	b = binary.BigEndian.AppendUint16(b, c.Count)
	return append(b, c.Data...)
}

// DecodeChunk parses a chunk and checks that its sizes are consistent:
// every chunk but the last is full, and the last holds the rest.
func DecodeChunk(b []byte) (Chunk, error) {
	if len(b) == 0 || b[0] != chunkTag {
		return Chunk{}, ErrNotChunk
	}
	if len(b) < HeaderSize || len(b) > MaxContents {
		return Chunk{}, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	var c Chunk
	copy(c.ID[:], b[1:33])
	c.Length = binary.BigEndian.Uint32(b[33:37])
	c.Index = binary.BigEndian.Uint16(b[37:39])
	c.Count = binary.BigEndian.Uint16(b[39:41])
	c.Data = b[HeaderSize:]
	if c.Count == 0 || c.Index >= c.Count || c.Count != chunksFor(c.Length) {
		return Chunk{}, fmt.Errorf("%w: chunk %d of %d for %d bytes", ErrMalformed, c.Index, c.Count, c.Length)
	}
	if want := chunkLen(c.Length, c.Index, c.Count); len(c.Data) != want {
		return Chunk{}, fmt.Errorf("%w: chunk %d holds %d bytes, want %d", ErrMalformed, c.Index, len(c.Data), want)
	}
	return c, nil
}

// chunksFor is the chunk count of a payload of n bytes (an empty payload
// is one empty chunk).
func chunksFor(n uint32) uint16 {
	k := (uint64(n) + MaxChunkData - 1) / MaxChunkData
	if k == 0 {
		k = 1
	}
	if k > MaxChunks {
		return 0 // too large: no count matches
	}
	return uint16(k)
}

func chunkLen(n uint32, i, count uint16) int {
	if i < count-1 {
		return MaxChunkData
	}
	return int(n) - int(count-1)*MaxChunkData
}

// Digest names a payload.
func Digest(payload []byte) ID { return blake2b.Sum256(payload) }

// Split cuts a payload into chunks. It fails only for payloads over
// MaxChunks chunks (about 264 MB).
func Split(payload []byte) ([]Chunk, error) {
	if uint64(len(payload)) > uint64(MaxChunks)*MaxChunkData {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(payload))
	}
	id, n := Digest(payload), uint32(len(payload))
	count := chunksFor(n)
	out := make([]Chunk, count)
	for i := range out {
		lo := i * MaxChunkData
		hi := min(lo+MaxChunkData, len(payload))
		out[i] = Chunk{ID: id, Length: n, Index: uint16(i), Count: count, Data: payload[lo:hi]}
	}
	return out, nil
}

// Target frames contents for one rollup: 00 ‖ address ‖ contents (the
// external message, without the inbox's 01 tag).
func Target(rollup [20]byte, contents []byte) []byte {
	return append(append([]byte{0x00}, rollup[:]...), contents...)
}

// Untarget returns the contents of an external message (without the
// inbox's 01 tag) addressed to rollup, or false for any other message.
func Untarget(rollup [20]byte, msg []byte) ([]byte, bool) {
	if len(msg) < 21 || msg[0] != 0x00 || [20]byte(msg[1:21]) != rollup {
		return nil, false
	}
	return msg[21:], true
}
