//go:build wasip1

package sdk

import "unsafe"

//go:wasmimport smart_rollup_core read_input
func readInput(info unsafe.Pointer, dst unsafe.Pointer, max uint32) int32

//go:wasmimport smart_rollup_core write_output
func writeOutput(src unsafe.Pointer, n uint32) int32

//go:wasmimport smart_rollup_core write_debug
func writeDebug(src unsafe.Pointer, n uint32)

//go:wasmimport smart_rollup_core store_read
func storeRead(path unsafe.Pointer, plen uint32, offset uint32, dst unsafe.Pointer, max uint32) int32

//go:wasmimport smart_rollup_core store_write
func storeWrite(path unsafe.Pointer, plen uint32, offset uint32, src unsafe.Pointer, n uint32) int32

//go:wasmimport smart_rollup_core store_value_size
func storeValueSize(path unsafe.Pointer, plen uint32) int32

//go:wasmimport smart_rollup_core store_delete
func storeDelete(path unsafe.Pointer, plen uint32) int32

func ptr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

func sptr(s string) unsafe.Pointer {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Pointer(unsafe.StringData(s))
}

// ReadInput returns the next inbox message, or ok=false when the level's
// inbox is exhausted.
func ReadInput() (Message, bool, error) {
	var info [2]uint32
	buf := make([]byte, MaxInput)
	n := readInput(unsafe.Pointer(&info[0]), ptr(buf), MaxInput)
	if n < 0 {
		return Message{}, false, Error(n)
	}
	if n == 0 {
		return Message{}, false, nil
	}
	return Message{Level: info[0], ID: info[1], Payload: buf[:n]}, true, nil
}

// WriteOutput appends a message to the level's outbox.
func WriteOutput(b []byte) error {
	if r := writeOutput(ptr(b), uint32(len(b))); r < 0 {
		return Error(r)
	}
	return nil
}

// Debug writes to the debug log.
func Debug(s string) { writeDebug(sptr(s), uint32(len(s))) }

// Read returns the whole value at path, or ok=false if there is none.
func Read(path string) ([]byte, bool, error) {
	size := storeValueSize(sptr(path), uint32(len(path)))
	if size == -3 {
		return nil, false, nil
	}
	if size < 0 {
		return nil, false, Error(size)
	}
	out := make([]byte, size)
	for off := int32(0); off < size; {
		n := storeRead(sptr(path), uint32(len(path)), uint32(off), ptr(out[off:]), uint32(min(chunk, size-off)))
		if n < 0 {
			return nil, false, Error(n)
		}
		off += n
	}
	return out, true, nil
}

// Write replaces the value at path, in 2048-byte chunks.
func Write(path string, v []byte) error {
	if r := storeDelete(sptr(path), uint32(len(path))); r < 0 {
		return Error(r)
	}
	if len(v) == 0 {
		if r := storeWrite(sptr(path), uint32(len(path)), 0, nil, 0); r < 0 {
			return Error(r)
		}
	}
	for off := 0; off < len(v); off += chunk {
		end := min(off+chunk, len(v))
		if r := storeWrite(sptr(path), uint32(len(path)), uint32(off), ptr(v[off:end]), uint32(end-off)); r < 0 {
			return Error(r)
		}
	}
	return nil
}
