package pvm

import (
	"sync"

	"github.com/tetratelabs/wazero/experimental"
)

// memoryPool backs the linear memory of each kernel_run with one buffer,
// reserved once at the memory limit and reused by every run. wazero's own
// memory grows by reallocating and copying: a Go kernel's heap grows page
// by page from a small start, so every run copied its memory again and
// again (the profile of the Kernel bench: a fifth of a level's time in
// MemoryInstance.Grow). Untouched pages of the reservation cost nothing;
// a run starts with the previous run's pages cleared, so memory is zero
// as the wasm spec wants.
type memoryPool struct {
	mu   sync.Mutex
	buf  []byte // len: the bytes the last run touched
	busy bool
}

// Allocate implements experimental.MemoryAllocator.
func (p *memoryPool) Allocate(capacity, max uint64) experimental.LinearMemory {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.busy || max > 1<<32 {
		// A second instance at once (not how the PVM runs) gets its own.
		return &linearMemory{buf: make([]byte, 0, capacity), max: max}
	}
	if uint64(cap(p.buf)) < max {
		p.buf = make([]byte, 0, max)
	}
	clear(p.buf)
	p.busy = true
	return &linearMemory{pool: p, buf: p.buf[:0], max: max}
}

// linearMemory is one instance's memory.
type linearMemory struct {
	pool *memoryPool // nil: not pooled
	buf  []byte
	max  uint64
}

// Reallocate implements experimental.LinearMemory.
func (m *linearMemory) Reallocate(size uint64) []byte {
	if size > m.max {
		return nil
	}
	if size > uint64(cap(m.buf)) {
		m.buf = append(m.buf[:cap(m.buf)], make([]byte, size-uint64(cap(m.buf)))...)
	}
	m.buf = m.buf[:size]
	return m.buf
}

// Free implements experimental.LinearMemory.
func (m *linearMemory) Free() {
	if m.pool == nil {
		return
	}
	m.pool.mu.Lock()
	defer m.pool.mu.Unlock()
	m.pool.buf = m.buf // its length, what this run touched, is cleared at the next Allocate
	m.pool.busy = false
	m.pool = nil
}
