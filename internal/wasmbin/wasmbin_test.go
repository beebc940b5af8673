package wasmbin

import (
	"errors"
	"testing"
)

var errTest = errors.New("test")

func TestLEB(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		bits uint
		want uint64
		ok   bool
	}{
		{[]byte{0x00}, 32, 0, true},
		{[]byte{0xe5, 0x8e, 0x26}, 32, 624485, true},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x0f}, 32, 0xffffffff, true},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, 32, 0, false},
		// Bits beyond 32 in the last byte: out of range (wazero refuses them).
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x10}, 32, 0, false},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x1f}, 32, 0, false},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 64, 1<<64 - 1, true},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x03}, 64, 0, false},
	} {
		r := NewReader(tc.in, errTest)
		got := r.ULEB(tc.bits)
		if (r.Err == nil) != tc.ok || tc.ok && got != tc.want {
			t.Errorf("ULEB(%x) = %d, %v", tc.in, got, r.Err)
		}
	}
	r := NewReader([]byte{0x40}, errTest)
	if v := r.SLEB(33); v != -64 {
		t.Fatalf("empty block type = %d", v)
	}
	r = NewReader([]byte{0xc0, 0xbb, 0x78}, errTest)
	if v := r.SLEB(32); v != -123456 {
		t.Fatalf("SLEB = %d", v)
	}
	for _, tc := range []struct {
		in   []byte
		bits uint
		want int64
		ok   bool
	}{
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x07}, 32, 1<<31 - 1, true},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x78}, 32, -1 << 31, true},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x7f}, 32, -1, true},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x0f}, 32, 0, false},        // 2^32−1: not an s32
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x08}, 32, 0, false},        // +2^31
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x70}, 32, 0, false},        // sign bit 0, high bits 1
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x0f}, 33, 1<<32 - 1, true}, // a block type's type index
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x70}, 33, -1 << 32, true},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x10}, 33, 0, false},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f}, 64, -1 << 63, true},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, 64, 0, false},
	} {
		r := NewReader(tc.in, errTest)
		got := r.SLEB(tc.bits)
		if (r.Err == nil) != tc.ok || tc.ok && got != tc.want {
			t.Errorf("SLEB(%x, %d) = %d, %v", tc.in, tc.bits, got, r.Err)
		}
	}
}

// The encoders write the shortest form, and the readers read it back, at
// the edges of each width.
func TestAppendLEB(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 1<<32 - 1, 1 << 32, 1<<64 - 1} {
		b := AppendULEB(nil, v)
		r := NewReader(b, errTest)
		if got := r.ULEB(64); got != v || r.Err != nil || r.More() || len(b) != max(1, (bitsLen(v)+6)/7) {
			t.Errorf("ULEB %d: % x read %d, %v", v, b, got, r.Err)
		}
	}
	for _, v := range []int64{0, -1, 63, 64, -64, -65, 1<<31 - 1, -1 << 31, 1<<63 - 1, -1 << 63} {
		b := AppendSLEB(nil, v)
		r := NewReader(b, errTest)
		if got := r.SLEB(64); got != v || r.Err != nil || r.More() {
			t.Errorf("SLEB %d: % x read %d, %v", v, b, got, r.Err)
		}
		if v == int64(int32(v)) {
			if r := NewReader(b, errTest); r.SLEB(32) != v || r.Err != nil {
				t.Errorf("SLEB %d as an s32: %v", v, r.Err)
			}
		}
	}
}

func bitsLen(v uint64) int {
	n := 0
	for ; v != 0; v >>= 1 {
		n++
	}
	return n
}

func TestInstr(t *testing.T) {
	// call 300; i32.const -1; memory.copy 0 0; block (result i32); end
	code := []byte{0x10, 0xac, 0x02, 0x41, 0x7f, 0xfc, 0x0a, 0x00, 0x00, 0x02, 0x7f, 0x0b}
	r := NewReader(code, errTest)
	var got []Instr
	for r.More() {
		got = append(got, r.Instr())
	}
	if r.Err != nil || len(got) != 5 {
		t.Fatalf("%d instructions, %v", len(got), r.Err)
	}
	if got[0].Op != 0x10 || got[0].Index != 300 || len(got[0].Raw) != 3 {
		t.Fatalf("call: %+v", got[0])
	}
	if got[2].Op != 0xfc || got[2].Sub != 10 || len(got[2].Raw) != 4 {
		t.Fatalf("memory.copy: %+v", got[2])
	}
	if got[3].BlockType != -1 {
		t.Fatalf("block type: %d", got[3].BlockType)
	}
	if r := NewReader([]byte{0xfd, 0x00}, errTest); r.Instr().Op != 0xfd || !errors.Is(r.Err, errTest) {
		t.Fatal("SIMD must be an error")
	}
}

func FuzzInstr(f *testing.F) {
	f.Add([]byte{0x10, 0xac, 0x02, 0x41, 0x7f, 0xfc, 0x0a, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReader(b, errTest)
		for r.More() {
			before := r.Off
			r.Instr()
			if r.Err == nil && r.Off <= before {
				t.Fatal("no progress")
			}
		}
	})
}
