package pvm

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"

	"github.com/tetratelabs/wazero/api"
	"github.com/tezos-dsn/dsn/internal/wasmmeter"
	"golang.org/x/crypto/blake2b"
)

// input is one inbox message with its coordinates.
type input struct {
	level, id uint32
	bytes     []byte
}

// runState is what the host functions of one level see.
type runState struct {
	durable *Durable
	inputs  []input
	next    int
	outbox  [][]byte
	debug   []byte
}

func (p *PVM) mem(m api.Module, ptr, n uint32) ([]byte, bool) {
	return m.Memory().Read(ptr, n)
}

func (p *PVM) path(m api.Module, ptr, n uint32) ([]string, int32) {
	if n > MaxPathLength {
		return nil, ErrCodeKeyTooLarge
	}
	b, ok := p.mem(m, ptr, n)
	if !ok {
		return nil, ErrCodeMemoryInvalidAccess
	}
	return splitPath(string(b))
}

// instantiateHost registers smart_rollup_core in the runtime.
func (p *PVM) instantiateHost(ctx context.Context) error {
	b := p.rt.NewHostModuleBuilder(HostModule)
	st := func() *runState { return p.run }
	b.NewFunctionBuilder().WithFunc(func(_ context.Context, m api.Module, info, dst, max uint32) int32 {
		s := st()
		if s.next >= len(s.inputs) {
			return 0
		}
		in := s.inputs[s.next]
		n := min(uint32(len(in.bytes)), max, MaxInputSize)
		var meta [8]byte
		binary.LittleEndian.PutUint32(meta[:], in.level)
		binary.LittleEndian.PutUint32(meta[4:], in.id)
		if _, ok := m.Memory().Read(info, 8); !ok {
			return ErrCodeMemoryInvalidAccess
		}
		if _, ok := m.Memory().Read(dst, n); !ok {
			return ErrCodeMemoryInvalidAccess
		}
		m.Memory().Write(info, meta[:])
		m.Memory().Write(dst, in.bytes[:n])
		s.next++
		return int32(n)
	}).Export("read_input")
	b.NewFunctionBuilder().WithFunc(func(_ context.Context, m api.Module, src, n uint32) int32 {
		s := st()
		if n > MaxOutputSize {
			return ErrCodeInputOutputTooLarge
		}
		data, ok := p.mem(m, src, n)
		if !ok {
			return ErrCodeMemoryInvalidAccess
		}
		if len(s.outbox) >= MaxOutbox {
			return ErrCodeFullOutbox
		}
		s.outbox = append(s.outbox, append([]byte(nil), data...))
		return 0
	}).Export("write_output")
	b.NewFunctionBuilder().WithFunc(func(_ context.Context, m api.Module, src, n uint32) {
		if data, ok := p.mem(m, src, n); ok && len(st().debug) < p.cfg.MaxDebugBytes {
			st().debug = append(st().debug, data...)
		}
	}).Export("write_debug")
	b.NewFunctionBuilder().WithFunc(func(_ context.Context, m api.Module, ptr, n uint32) int32 {
		segs, code := p.path(m, ptr, n)
		if code != 0 {
			return code
		}
		nd := st().durable.find(segs)
		if nd == nil {
			return 0
		}
		r := int32(0)
		if nd.hasValue {
			r |= 1
		}
		if len(nd.children) > 0 {
			r |= 2
		}
		return r
	}).Export("store_has")
	b.NewFunctionBuilder().WithFunc(func(_ context.Context, m api.Module, ptr, n uint32) int32 {
		segs, code := p.path(m, ptr, n)
		if code != 0 {
			return code
		}
		if nd := st().durable.find(segs); nd != nil && !nd.empty() {
			return 1
		}
		return 0
	}).Export("store_exists")
	b.NewFunctionBuilder().WithFunc(func(_ context.Context, m api.Module, ptr, n uint32) int32 {
		segs, code := p.path(m, ptr, n)
		if code != 0 {
			return code
		}
		if readonly(segs) {
			return ErrCodeReadonly
		}
		st().durable.deleteTree(segs)
		return 0
	}).Export("store_delete")
	b.NewFunctionBuilder().WithFunc(func(_ context.Context, m api.Module, ptr, n uint32) int32 {
		segs, code := p.path(m, ptr, n)
		if code != 0 {
			return code
		}
		if readonly(segs) {
			return ErrCodeReadonly
		}
		st().durable.deleteValue(segs)
		return 0
	}).Export("store_delete_value")
	b.NewFunctionBuilder().WithFunc(func(_ context.Context, m api.Module, ptr, n, size uint32) int32 {
		segs, code := p.path(m, ptr, n)
		if code != 0 {
			return code
		}
		if readonly(segs) {
			return ErrCodeReadonly
		}
		if size > MaxValueSize {
			return ErrCodeValueSizeExceeded
		}
		d := st().durable
		if nd := d.find(segs); nd != nil && nd.hasValue {
			return ErrCodeValueAlreadyExists
		}
		d.setValue(segs, make([]byte, size))
		return 0
	}).Export("store_create")
	copyMove := func(move bool) func(context.Context, api.Module, uint32, uint32, uint32, uint32) int32 {
		return func(_ context.Context, m api.Module, fp, fl, tp, tl uint32) int32 {
			from, code := p.path(m, fp, fl)
			if code != 0 {
				return code
			}
			to, code := p.path(m, tp, tl)
			if code != 0 {
				return code
			}
			if readonly(to) || move && readonly(from) {
				return ErrCodeReadonly
			}
			d := st().durable
			src := d.find(from)
			if src == nil || src.empty() {
				return ErrCodeNotANode
			}
			c := src.clone()
			if move {
				d.deleteTree(from)
			}
			d.graft(to, c)
			return 0
		}
	}
	b.NewFunctionBuilder().WithFunc(copyMove(false)).Export("store_copy")
	b.NewFunctionBuilder().WithFunc(copyMove(true)).Export("store_move")
	b.NewFunctionBuilder().WithFunc(func(_ context.Context, m api.Module, ptr, n, offset, dst, max uint32) int32 {
		if max > MaxStoreIOSize {
			return ErrCodeInputOutputTooLarge
		}
		segs, code := p.path(m, ptr, n)
		if code != 0 {
			return code
		}
		nd := st().durable.find(segs)
		if nd == nil || !nd.hasValue {
			return ErrCodeNotAValue
		}
		if offset > uint32(len(nd.value)) {
			return ErrCodeInvalidAccess
		}
		k := min(max, uint32(len(nd.value))-offset)
		if !m.Memory().Write(dst, nd.value[offset:offset+k]) {
			return ErrCodeMemoryInvalidAccess
		}
		return int32(k)
	}).Export("store_read")
	b.NewFunctionBuilder().WithFunc(func(_ context.Context, m api.Module, ptr, n, offset, src, k uint32) int32 {
		if k > MaxStoreIOSize {
			return ErrCodeInputOutputTooLarge
		}
		segs, code := p.path(m, ptr, n)
		if code != 0 {
			return code
		}
		if readonly(segs) {
			return ErrCodeReadonly
		}
		data, ok := p.mem(m, src, k)
		if !ok {
			return ErrCodeMemoryInvalidAccess
		}
		d := st().durable
		nd := d.find(segs)
		size := uint32(0)
		if nd != nil && nd.hasValue {
			size = uint32(len(nd.value))
		}
		if offset > size {
			return ErrCodeInvalidAccess
		}
		if uint64(offset)+uint64(k) > MaxValueSize {
			return ErrCodeValueSizeExceeded
		}
		d.writeValue(segs, offset, data)
		return 0
	}).Export("store_write")
	b.NewFunctionBuilder().WithFunc(func(_ context.Context, m api.Module, ptr, n uint32) int32 {
		segs, code := p.path(m, ptr, n)
		if code != 0 {
			return code
		}
		nd := st().durable.find(segs)
		if nd == nil || !nd.hasValue {
			return ErrCodeNotAValue
		}
		return int32(len(nd.value))
	}).Export("store_value_size")
	b.NewFunctionBuilder().WithFunc(func(_ context.Context, m api.Module, ptr, n uint32) int64 {
		segs, code := p.path(m, ptr, n)
		if code != 0 {
			return int64(code)
		}
		nd := st().durable.find(segs)
		if nd == nil {
			return 0
		}
		c := int64(len(nd.children))
		if nd.hasValue {
			c++ // the path's own value counts as a child
		}
		return c
	}).Export("store_list_size")
	b.NewFunctionBuilder().WithFunc(func(_ context.Context, m api.Module, ptr, n uint32, index int64, dst, max uint32) int32 {
		segs, code := p.path(m, ptr, n)
		if code != 0 {
			return code
		}
		nd := st().durable.find(segs)
		if nd == nil {
			return ErrCodeNotANode
		}
		keys := nd.sortedKeys()
		if nd.hasValue {
			keys = append([]string{""}, keys...) // the value marker
		}
		if index < 0 || index >= int64(len(keys)) {
			return ErrCodeInvalidSubkeyIndex
		}
		name := keys[index]
		name = name[:min(uint32(len(name)), max)]
		if !m.Memory().Write(dst, []byte(name)) {
			return ErrCodeMemoryInvalidAccess
		}
		return int32(len(name))
	}).Export("store_get_nth_key")
	b.NewFunctionBuilder().WithFunc(func(_ context.Context, m api.Module, ptr, n, dst, max uint32) int32 {
		segs, code := p.path(m, ptr, n)
		if code != 0 {
			return code
		}
		nd := st().durable.find(segs)
		if nd == nil {
			return ErrCodeNotANode
		}
		h := nd.hash()
		k := min(max, 32)
		if !m.Memory().Write(dst, h[:k]) {
			return ErrCodeMemoryInvalidAccess
		}
		return int32(k)
	}).Export("__internal_store_get_hash")
	revealData := func(m api.Module, hash []byte, dst, max uint32) int32 {
		if len(hash) != 33 || hash[0] != 0 || p.cfg.PreimagesDir == "" {
			return ErrCodeGenericInvalid
		}
		data, err := os.ReadFile(filepath.Join(p.cfg.PreimagesDir, hex.EncodeToString(hash)))
		if err != nil || blake2b.Sum256(data) != [32]byte(hash[1:]) {
			return ErrCodeGenericInvalid // missing, or not the preimage of its name
		}
		k := min(max, uint32(len(data)))
		if !m.Memory().Write(dst, data[:k]) {
			return ErrCodeMemoryInvalidAccess
		}
		return int32(k)
	}
	revealMeta := func(m api.Module, dst, max uint32) int32 {
		var meta [24]byte
		copy(meta[:], p.cfg.Rollup[:])
		binary.BigEndian.PutUint32(meta[20:], p.cfg.OriginationLevel)
		if max < 24 {
			return ErrCodeInputOutputTooLarge
		}
		if !m.Memory().Write(dst, meta[:]) {
			return ErrCodeMemoryInvalidAccess
		}
		return 24
	}
	b.NewFunctionBuilder().WithFunc(func(_ context.Context, m api.Module, hp, hl, dst, max uint32) int32 {
		hash, ok := p.mem(m, hp, hl)
		if !ok {
			return ErrCodeMemoryInvalidAccess
		}
		return revealData(m, hash, dst, max)
	}).Export("reveal_preimage")
	b.NewFunctionBuilder().WithFunc(func(_ context.Context, m api.Module, dst, max uint32) int32 {
		return revealMeta(m, dst, max)
	}).Export("reveal_metadata")
	b.NewFunctionBuilder().WithFunc(func(_ context.Context, m api.Module, pp, pl, dst, max uint32) int32 {
		payload, ok := p.mem(m, pp, pl)
		if !ok {
			return ErrCodeMemoryInvalidAccess
		}
		if len(payload) == 0 {
			return ErrCodeGenericInvalid
		}
		switch payload[0] {
		case 0:
			return revealData(m, payload[1:], dst, max)
		case 1:
			return revealMeta(m, dst, max)
		}
		return ErrCodeGenericInvalid // DAL pages and parameters: no DAL here
	}).Export("reveal")
	if _, err := b.Instantiate(ctx); err != nil {
		return err
	}
	_, err := p.rt.NewHostModuleBuilder(wasmmeter.CheckpointModule).NewFunctionBuilder().
		WithFunc(checkpoint).Export(wasmmeter.CheckpointName).Instantiate(ctx)
	return err
}

// checkpointTicks is how far a metered run goes between two calls into
// checkpoint: 0.1–2.5 ms on this project's 2-core machine (arithmetic
// runs about 100M ticks in 1.2 ms, a bare loop in 24 ms), which bounds how
// long a collection or a shutdown waits for a kernel.
const checkpointTicks = 10_000_000

// checkpoint is called by a metered kernel every checkpointTicks ticks (see
// wasmmeter's Checkpoints) and returns the ticks of the next call. It stops
// the run if ctx is done. The call itself is what lets the process go on
// while a kernel runs: native wasm code cannot be preempted, but a call
// into Go can, so a stop-the-world of the garbage collector (and with it
// the rest of the process) or the scheduler's time slice waits at most
// until the next checkpoint, not for the whole kernel_run. (An explicit
// runtime.Gosched here cost 13 % on a BLS verification at this interval.)
// The limit itself is checked in the module.
func checkpoint(ctx context.Context, ticks uint64) uint64 {
	if ctx.Err() != nil {
		panic(errInterrupted) // wazero turns it into the Call's error
	}
	return ticks + checkpointTicks
}
