package tezos

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/blake2b"
)

// TagAddMessages is the manager-operation tag of smart_rollup_add_messages.
const TagAddMessages = 0xC9

// MaxOperationSize is the protocol's max_operation_data_length: the largest
// signed operation (branch, contents and signature) in bytes.
const MaxOperationSize = 32 * 1024

// MaxMessageSize is sc_rollup_message_size_limit: the largest serialized
// inbox message, including its 0x01 "external" tag. A raw add_messages
// payload is therefore at most MaxMessageSize-1 = 4095 bytes.
const MaxMessageSize = 4096

// watermarkGenericOperation is octez's signing watermark for manager
// operations: the signature covers BLAKE2b-256(0x03 ‖ unsigned bytes).
const watermarkGenericOperation = 0x03

// ErrBadOperation reports bytes that are not a well-formed signed operation
// of the one shape ParseOperation accepts.
var ErrBadOperation = errors.New("tezos: bad operation")

// AddMessages is the contents of a smart_rollup_add_messages operation
// whose source is a tz1 (ed25519) account. Messages are the raw external
// payloads, without the 0x01 inbox tag.
type AddMessages struct {
	Source                               [20]byte // tz1 hash; encoded as 21 bytes 0x00 ‖ hash
	Fee, Counter, GasLimit, StorageLimit uint64   // zarith naturals (fee in mutez)
	Messages                             [][]byte
}

// Operation is a signed L1 operation carrying exactly one AddMessages.
// Its binary form is octez's: branch ‖ contents ‖ signature.
type Operation struct {
	Branch    [32]byte // a recent block hash, bounding the operation's lifetime
	Contents  AddMessages
	Signature [64]byte // ed25519
}

// Unsigned returns the bytes the signature covers:
// branch ‖ c9 ‖ source(21) ‖ fee ‖ counter ‖ gas ‖ storage (zarith) ‖
// u32 total ‖ (u32 len ‖ message)*, integers big-endian.
func (op *Operation) Unsigned() []byte {
	c := &op.Contents
	total := 0
	for _, m := range c.Messages {
		total += 4 + len(m)
	}
	b := make([]byte, 0, 32+1+21+4*10+4+total+64)
	b = append(b, op.Branch[:]...)
	b = append(b, TagAddMessages, 0x00)
	b = append(b, c.Source[:]...)
	for _, n := range []uint64{c.Fee, c.Counter, c.GasLimit, c.StorageLimit} {
		b = appendZarith(b, n)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(total))
	for _, m := range c.Messages {
		b = binary.BigEndian.AppendUint32(b, uint32(len(m)))
		b = append(b, m...)
	}
	return b
}

// signingDigest is what the ed25519 signature signs.
func (op *Operation) signingDigest() [32]byte {
	u := op.Unsigned()
	return blake2b.Sum256(append([]byte{watermarkGenericOperation}, u...))
}

// Sign sets the signature with priv (octez: ed25519 over
// BLAKE2b-256(0x03 ‖ Unsigned())).
func (op *Operation) Sign(priv ed25519.PrivateKey) {
	d := op.signingDigest()
	copy(op.Signature[:], ed25519.Sign(priv, d[:]))
}

// Verify reports whether the signature is pub's. It does not check that
// pub hashes to the source: callers look the key up by source.
func (op *Operation) Verify(pub ed25519.PublicKey) bool {
	if len(pub) != ed25519.PublicKeySize {
		return false
	}
	d := op.signingDigest()
	return ed25519.Verify(pub, d[:], op.Signature[:])
}

// Bytes returns the signed operation: Unsigned() ‖ signature. This is the
// hex body of POST /injection/operation.
func (op *Operation) Bytes() []byte {
	return append(op.Unsigned(), op.Signature[:]...)
}

// Hash returns the operation hash (the "o…" one): BLAKE2b-256(Bytes()).
func (op *Operation) Hash() [32]byte {
	return blake2b.Sum256(op.Bytes())
}

// ParseOperation decodes a signed operation strictly, so that whatever it
// accepts re-encodes to exactly b: one content, tag 0xC9, a tz1 source,
// canonical zarith naturals of at most 10 bytes that fit in 64 bits,
// consistent lengths, no trailing bytes and at most MaxOperationSize bytes.
// It checks neither the signature nor the protocol limits on messages
// (count, size): those are the validator's job. Errors wrap ErrBadOperation.
func ParseOperation(b []byte) (*Operation, error) {
	if len(b) > MaxOperationSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrBadOperation, len(b), MaxOperationSize)
	}
	// NB: the signature is the last 64 bytes; "exactly one content" means
	// the contents must end exactly where the signature begins.
	const fixed = 32 + 1 + 21 + 4*1 + 4 + 64 // smallest: one byte per zarith
	if len(b) < fixed {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrBadOperation, len(b))
	}
	op := &Operation{}
	copy(op.Signature[:], b[len(b)-64:])
	r := reader{b: b[:len(b)-64]}
	copy(op.Branch[:], r.take(32))
	if tag := r.byte(); tag != TagAddMessages {
		return nil, fmt.Errorf("%w: content tag %#x is not smart_rollup_add_messages", ErrBadOperation, tag)
	}
	if kind := r.byte(); kind != 0x00 {
		return nil, fmt.Errorf("%w: source tag %d is not tz1", ErrBadOperation, kind)
	}
	c := &op.Contents
	copy(c.Source[:], r.take(20))
	for _, p := range []*uint64{&c.Fee, &c.Counter, &c.GasLimit, &c.StorageLimit} {
		*p = r.zarith()
	}
	total := r.u32()
	if r.err == nil && uint64(total) != uint64(len(r.b)-r.off) {
		return nil, fmt.Errorf("%w: messages length %d, but %d bytes remain", ErrBadOperation, total, len(r.b)-r.off)
	}
	for r.err == nil && r.off < len(r.b) {
		n := r.u32()
		m := r.take(int(n))
		if r.err == nil {
			c.Messages = append(c.Messages, append([]byte{}, m...))
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	return op, nil
}

// appendZarith appends n as a zarith natural: 7 bits per byte, least
// significant group first, the high bit set on every byte but the last.
func appendZarith(b []byte, n uint64) []byte {
	for n >= 0x80 {
		b = append(b, byte(n)|0x80)
		n >>= 7
	}
	return append(b, byte(n))
}

// reader decodes big-endian fields; the first error sticks and later reads
// return zero values.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: "+format, append([]any{ErrBadOperation}, args...)...)
	}
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b)-r.off {
		r.fail("truncated at byte %d (wanted %d more)", r.off, n)
		return nil
	}
	out := r.b[r.off : r.off+n]
	r.off += n
	return out
}

func (r *reader) byte() byte {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

// zarith decodes a canonical zarith natural that fits in a uint64.
func (r *reader) zarith() uint64 {
	var n uint64
	for i := 0; ; i++ {
		if r.err != nil {
			return 0
		}
		if i == 10 {
			r.fail("zarith longer than 10 bytes at byte %d", r.off)
			return 0
		}
		c := r.byte()
		if r.err != nil {
			return 0
		}
		g := uint64(c & 0x7f)
		// NB: the 10th group holds bit 63 only; anything more overflows.
		if i == 9 && g > 1 {
			r.fail("zarith overflows 64 bits at byte %d", r.off-1)
			return 0
		}
		n |= g << (7 * i)
		if c&0x80 == 0 {
			// A last group of zero is only canonical as the sole byte:
			// otherwise the same number has a shorter encoding.
			if c == 0 && i > 0 {
				r.fail("non-canonical zarith (trailing zero group) at byte %d", r.off-1)
				return 0
			}
			return n
		}
	}
}
