package wasmlink

import (
	"bytes"
	mrand "math/rand/v2"
	"testing"

	"github.com/tezos-dsn/dsn/internal/wasmbin"
)

type dataSeg struct {
	off  uint32
	data string
}

// dataSection encodes active segments of memory 0 at i32.const offsets.
func dataSection(segs []dataSeg) []byte {
	b := vec(nil, len(segs))
	for _, s := range segs {
		b = append(wasmbin.AppendSLEB(append(b, 0, 0x41), int64(int32(s.off))), 0x0b)
		b = append(uleb(b, uint64(len(s.data))), s.data...)
	}
	return b
}

// image applies a data section's segments in order to a zeroed memory of
// size bytes, as instantiation does, and returns it with the segment count.
func image(t *testing.T, body []byte, size int) ([]byte, int) {
	t.Helper()
	mem := make([]byte, size)
	r := wasmbin.NewReader(body, ErrUnsupported)
	n := int(r.U32())
	for range n {
		r.U32()
		r.Byte()
		off := uint32(r.SLEB(32))
		r.Byte()
		copy(mem[off:], r.Bytes(r.ULEB(32)))
	}
	if r.Err != nil || r.More() {
		t.Fatalf("data section: %v", r.Err)
	}
	return mem, n
}

func TestMergeData(t *testing.T) {
	for _, tc := range []struct {
		name string
		segs []dataSeg
		want int // segments after merging
	}{
		{"contiguous", []dataSeg{{0, "ab"}, {2, "cd"}, {4, "e"}}, 1},
		{"small gap", []dataSeg{{0, "a"}, {10, "b"}}, 1},
		{"gap too wide", []dataSeg{{0, "a"}, {2 + maxDataGap, "b"}}, 2},
		{"overlap: the later byte wins", []dataSeg{{0, "abc"}, {1, "X"}, {2, "YZ"}}, 1},
		{"backwards", []dataSeg{{100, "x"}, {0, "a"}}, 2},
		{"gap below an earlier write", []dataSeg{{100, "x"}, {0, "a"}, {20, "b"}}, 2},
		{"gap over an earlier write", []dataSeg{{10, "keep"}, {0, "a"}, {20, "b"}}, 3},
		{"empty segments", []dataSeg{{5, ""}, {5, "a"}, {6, ""}}, 1},
	} {
		body := dataSection(tc.segs)
		merged := mergeData(body)
		want, _ := image(t, body, 8192)
		got, n := image(t, merged, 8192)
		if !bytes.Equal(got, want) || n != tc.want {
			t.Errorf("%s: %d segments (want %d), memory equal %v", tc.name, n, tc.want, bytes.Equal(got, want))
		}
	}
	// Anything but active segments at i32.const offsets, and 32-bit LEB128s
	// out of range (which wazero refuses, and wasmbin's reader too): left as
	// it is, not re-encoded into a section that loads.
	passive := append(vec(nil, 1), 1, 1, 'a')
	global := append(vec(nil, 1), 0, 0x23, 0, 0x0b, 1, 'a')
	seg := func(flags, offset []byte) []byte {
		return append(append(append(vec(nil, 2), flags...), 0x41), append(offset, 0x0b, 1, 'a', 0, 0x41, 1, 0x0b, 1, 'b')...)
	}
	over := [][]byte{
		seg([]byte{0}, []byte{0xff, 0xff, 0xff, 0xff, 0x0f}),                           // offset 2^32−1 as an s32
		seg([]byte{0}, []byte{0x80, 0x80, 0x80, 0x80, 0x08}),                           // offset +2^31
		seg([]byte{0x80, 0x80, 0x80, 0x80, 0x10}, []byte{0}),                           // flags 2^32
		append([]byte{0x81, 0x80, 0x80, 0x80, 0x10}, seg([]byte{0}, []byte{0})[1:]...), // count 2^32+1
	}
	if merged := mergeData(seg([]byte{0}, []byte{0})); bytes.Equal(merged, seg([]byte{0}, []byte{0})) {
		t.Fatal("the well-formed twin of the over-long cases should merge")
	}
	for _, b := range append([][]byte{passive, global, dataSection(nil)[:0]}, over...) {
		if !bytes.Equal(mergeData(b), b) {
			t.Errorf("changed % x", b)
		}
	}
}

// Random segments, in random order and overlapping: the merged section
// writes the same memory.
func TestMergeDataProperty(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	for range 2000 {
		var segs []dataSeg
		for range rng.IntN(12) {
			b := make([]byte, rng.IntN(40))
			for i := range b {
				b[i] = byte(1 + rng.IntN(255))
			}
			segs = append(segs, dataSeg{uint32(rng.IntN(6000)), string(b)})
		}
		body := dataSection(segs)
		want, _ := image(t, body, 8192)
		got, _ := image(t, mergeData(body), 8192)
		if !bytes.Equal(got, want) {
			t.Fatalf("segments %v: memory differs", segs)
		}
	}
}
