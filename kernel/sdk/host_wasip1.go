//go:build wasip1

package sdk

import "unsafe"

// chunk is the host's store I/O limit.
const chunk = 2048

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

//go:wasmimport smart_rollup_core store_delete_value
func storeDeleteValue(path unsafe.Pointer, plen uint32) int32

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

// Write replaces the value at path (its children stay), in 2048-byte chunks.
func Write(path string, v []byte) error {
	if r := storeDeleteValue(sptr(path), uint32(len(path))); r < 0 {
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

//go:wasmimport smart_rollup_core store_has
func storeHas(path unsafe.Pointer, plen uint32) int32

//go:wasmimport smart_rollup_core store_copy
func storeCopy(from unsafe.Pointer, flen uint32, to unsafe.Pointer, tlen uint32) int32

//go:wasmimport smart_rollup_core store_move
func storeMove(from unsafe.Pointer, flen uint32, to unsafe.Pointer, tlen uint32) int32

//go:wasmimport smart_rollup_core store_list_size
func storeListSize(path unsafe.Pointer, plen uint32) int64

//go:wasmimport smart_rollup_core reveal_preimage
func revealPreimage(hash unsafe.Pointer, hlen uint32, dst unsafe.Pointer, max uint32) int32

//go:wasmimport smart_rollup_core reveal_metadata
func revealMetadata(dst unsafe.Pointer, max uint32) int32

// Has reports whether path holds a value and whether it has children.
func Has(path string) (value, children bool, err error) {
	r := storeHas(sptr(path), uint32(len(path)))
	if r < 0 {
		return false, false, Error(r)
	}
	return r&1 != 0, r&2 != 0, nil
}

// Delete removes path and everything under it.
func Delete(path string) error {
	if r := storeDelete(sptr(path), uint32(len(path))); r < 0 {
		return Error(r)
	}
	return nil
}

// Copy copies the subtree at from over to.
func Copy(from, to string) error {
	if r := storeCopy(sptr(from), uint32(len(from)), sptr(to), uint32(len(to))); r < 0 {
		return Error(r)
	}
	return nil
}

// Move moves the subtree at from over to.
func Move(from, to string) error {
	if r := storeMove(sptr(from), uint32(len(from)), sptr(to), uint32(len(to))); r < 0 {
		return Error(r)
	}
	return nil
}

// Children returns how many children path has (its own value counts as one).
func Children(path string) (int64, error) {
	r := storeListSize(sptr(path), uint32(len(path)))
	if r < 0 {
		return 0, Error(int32(r))
	}
	return r, nil
}

// RevealPreimage returns up to max bytes of the preimage of a 33-byte
// reveal hash (0x00 ‖ BLAKE2b-256).
func RevealPreimage(hash [33]byte, max int) ([]byte, error) {
	buf := make([]byte, max)
	n := revealPreimage(unsafe.Pointer(&hash[0]), 33, ptr(buf), uint32(max))
	if n < 0 {
		return nil, Error(n)
	}
	return buf[:n], nil
}

// Metadata returns the rollup address (20 bytes) and origination level.
func Metadata() (rollup [20]byte, origination uint32, err error) {
	var buf [24]byte
	if r := revealMetadata(unsafe.Pointer(&buf[0]), 24); r < 0 {
		return rollup, 0, Error(r)
	}
	copy(rollup[:], buf[:20])
	return rollup, uint32(buf[20])<<24 | uint32(buf[21])<<16 | uint32(buf[22])<<8 | uint32(buf[23]), nil
}
