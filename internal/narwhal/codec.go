package narwhal

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The canonical encoding is a plain, fixed-width binary format:
//
//   - integers are little-endian, fixed width (u8, u16, u32, u64);
//   - byte strings and lists are a u32 count followed by the items;
//   - fixed-size values (digests, keys, signatures) are raw bytes;
//   - structs are their fields in declaration order;
//   - tagged unions are a u8 tag followed by the variant.
//
// Fixed widths make the encoding canonical without extra rules: every value has
// exactly one encoding, and the decoder rejects everything else (trailing
// bytes, lengths beyond the input, unknown tags, unsorted sets).

// Codec errors. Decoders wrap them with the field being read.
var (
	ErrTruncated     = errors.New("narwhal: input truncated")
	ErrTrailingBytes = errors.New("narwhal: trailing bytes")
	ErrTooLarge      = errors.New("narwhal: length exceeds limit")
	ErrUnknownTag    = errors.New("narwhal: unknown tag")
	ErrNotCanonical  = errors.New("narwhal: not canonical")
)

// encoder appends canonical encodings to a byte slice.
type encoder struct{ buf []byte }

func (e *encoder) u8(v uint8)   { e.buf = append(e.buf, v) }
func (e *encoder) u16(v uint16) { e.buf = binary.LittleEndian.AppendUint16(e.buf, v) }
func (e *encoder) u32(v uint32) { e.buf = binary.LittleEndian.AppendUint32(e.buf, v) }
func (e *encoder) u64(v uint64) { e.buf = binary.LittleEndian.AppendUint64(e.buf, v) }
func (e *encoder) raw(b []byte) { e.buf = append(e.buf, b...) }

// bytes writes a length-prefixed byte string.
func (e *encoder) bytes(b []byte) {
	e.u32(uint32(len(b)))
	e.raw(b)
}

// count writes a list length.
func (e *encoder) count(n int) { e.u32(uint32(n)) }

// decoder reads canonical encodings. The first error sticks: later reads
// return zero values, and err reports what went wrong first.
type decoder struct {
	buf []byte
	off int
	err error
}

func newDecoder(b []byte) *decoder { return &decoder{buf: b} }

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.buf)-d.off < n {
		d.fail(fmt.Errorf("need %d bytes at offset %d of %d: %w", n, d.off, len(d.buf), ErrTruncated))
		return nil
	}
	b := d.buf[d.off : d.off+n]
	d.off += n
	return b
}

func (d *decoder) u8() uint8 {
	if b := d.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if b := d.take(2); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if b := d.take(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if b := d.take(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

// fixed copies exactly len(dst) bytes.
func (d *decoder) fixed(dst []byte) {
	if b := d.take(len(dst)); b != nil {
		copy(dst, b)
	}
}

// bytes reads a length-prefixed byte string of at most limit bytes. The
// result is a copy: decoded values never alias the input buffer.
func (d *decoder) bytes(limit int, what string) []byte {
	n := d.u32()
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(limit) {
		d.fail(fmt.Errorf("%s: %d bytes, limit %d: %w", what, n, limit, ErrTooLarge))
		return nil
	}
	b := d.take(int(n))
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}

// count reads a list length of at most limit items, each at least minItem
// bytes long, so that a hostile count cannot make the decoder allocate more
// than the input could possibly hold.
func (d *decoder) count(limit, minItem int, what string) int {
	n := d.u32()
	if d.err != nil {
		return 0
	}
	if uint64(n) > uint64(limit) {
		d.fail(fmt.Errorf("%s: %d items, limit %d: %w", what, n, limit, ErrTooLarge))
		return 0
	}
	if minItem > 0 && uint64(n)*uint64(minItem) > uint64(len(d.buf)-d.off) {
		d.fail(fmt.Errorf("%s: %d items cannot fit in %d bytes: %w", what, n, len(d.buf)-d.off, ErrTruncated))
		return 0
	}
	return int(n)
}

// finish reports the sticky error, or ErrTrailingBytes if input is left.
func (d *decoder) finish(what string) error {
	if d.err != nil {
		return fmt.Errorf("decode %s: %w", what, d.err)
	}
	if d.off != len(d.buf) {
		return fmt.Errorf("decode %s: %d of %d bytes unread: %w", what, len(d.buf)-d.off, len(d.buf), ErrTrailingBytes)
	}
	return nil
}
