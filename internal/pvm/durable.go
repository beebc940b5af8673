package pvm

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/cockroachdb/pebble"

	"github.com/tezos-dsn/dsn/internal/pebblefatal"
	"golang.org/x/crypto/blake2b"
)

// Durable-storage limits (reference §1.3–1.4).
const (
	MaxPathLength  = 240
	MaxStoreIOSize = 2048
	MaxValueSize   = 1<<31 - 1
)

// Host error codes returned to the kernel.
const (
	ErrCodeKeyTooLarge         = -1
	ErrCodeInvalidKey          = -2
	ErrCodeNotAValue           = -3
	ErrCodeInvalidAccess       = -4
	ErrCodeValueSizeExceeded   = -5
	ErrCodeMemoryInvalidAccess = -6
	ErrCodeInputOutputTooLarge = -7
	ErrCodeGenericInvalid      = -8
	ErrCodeReadonly            = -9
	ErrCodeNotANode            = -10
	ErrCodeFullOutbox          = -11
	ErrCodeInvalidSubkeyIndex  = -12
	ErrCodeValueAlreadyExists  = -13
)

// node is one path of the durable tree: it may hold a value and children.
type node struct {
	value    []byte
	hasValue bool
	children map[string]*node
	// sum memoizes hash(); every change clears it on the changed path
	// (Durable.touch*), so a level's state hash costs what the level
	// changed, not the size of the whole state.
	sum    [32]byte
	summed bool
}

func (n *node) empty() bool { return !n.hasValue && len(n.children) == 0 }

func (n *node) clone() *node {
	c := &node{value: append([]byte(nil), n.value...), hasValue: n.hasValue}
	if len(n.children) > 0 {
		c.children = make(map[string]*node, len(n.children))
		for k, v := range n.children {
			c.children[k] = v.clone()
		}
	}
	return c
}

// sortedKeys returns the children's names in byte order.
func (n *node) sortedKeys() []string {
	keys := make([]string, 0, len(n.children))
	for k := range n.children {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// hash is a Merkle hash of the subtree: BLAKE2b-256 over the value and the
// children's names and hashes, in name order.
func (n *node) hash() [32]byte {
	if n.summed {
		return n.sum
	}
	h, _ := blake2b.New256(nil)
	if n.hasValue {
		h.Write([]byte{1})
		h.Write(lenBytes(len(n.value)))
		h.Write(n.value)
	} else {
		h.Write([]byte{0})
	}
	for _, k := range n.sortedKeys() {
		ch := n.children[k].hash()
		h.Write(lenBytes(len(k)))
		h.Write([]byte(k))
		h.Write(ch[:])
	}
	h.Sum(n.sum[:0])
	n.summed = true
	return n.sum
}

func lenBytes(n int) []byte { return []byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)} }

// Durable is the kernel's durable storage: a tree of paths, each of which
// may hold a value and children. The PVM writes /readonly; kernels cannot.
// Every change is journaled by path so that Commit can persist a level's
// changes in one atomic batch (see persist.go).
type Durable struct {
	root    *node
	journal []change
	db      *pebble.DB // nil: memory only
	fatal   *pebblefatal.Signal
}

// change marks a path whose final state must reach the disk: its value
// alone, or its whole subtree.
type change struct {
	path string
	tree bool
}

func joinPath(segs []string) string {
	if len(segs) == 0 {
		return ""
	}
	return "/" + strings.Join(segs, "/")
}

// touchValue and touchTree record a change for Commit and clear the
// memoized hashes along its path. Every change goes through one of them.
func (d *Durable) touchValue(segs []string) {
	d.journal = append(d.journal, change{path: joinPath(segs)})
	d.unsum(segs)
}

func (d *Durable) touchTree(segs []string) {
	d.journal = append(d.journal, change{path: joinPath(segs), tree: true})
	d.unsum(segs)
}

// unsum clears the memoized hashes from the root down segs (as far as the
// path exists: a removed node's parents are cleared).
func (d *Durable) unsum(segs []string) {
	n := d.root
	n.summed = false
	for _, s := range segs {
		if n = n.children[s]; n == nil {
			return
		}
		n.summed = false
	}
}

// setValue replaces the value at segs.
func (d *Durable) setValue(segs []string, v []byte) {
	n := d.make(segs)
	n.value, n.hasValue = v, true
	d.touchValue(segs)
}

// writeValue writes data at offset into the value at segs, growing it.
func (d *Durable) writeValue(segs []string, offset uint32, data []byte) {
	n := d.make(segs)
	if end := offset + uint32(len(data)); end > uint32(len(n.value)) {
		n.value = append(n.value, make([]byte, end-uint32(len(n.value)))...)
	}
	copy(n.value[offset:], data)
	n.hasValue = true
	d.touchValue(segs)
}

// deleteValue removes the value at segs, keeping its children.
func (d *Durable) deleteValue(segs []string) {
	if n := d.find(segs); n != nil {
		n.value, n.hasValue = nil, false
		d.prune(segs)
		d.touchValue(segs)
	}
}

// deleteTree removes segs and everything under it.
func (d *Durable) deleteTree(segs []string) {
	if len(segs) == 0 {
		return
	}
	if parent := d.find(segs[:len(segs)-1]); parent != nil {
		delete(parent.children, segs[len(segs)-1])
		d.prune(segs[:len(segs)-1])
		d.touchTree(segs)
	}
}

// graft puts a subtree at segs, replacing what was there.
func (d *Durable) graft(segs []string, sub *node) {
	parent := d.make(segs[:len(segs)-1])
	if parent.children == nil {
		parent.children = map[string]*node{}
	}
	parent.children[segs[len(segs)-1]] = sub
	d.touchTree(segs)
}

// NewDurable returns an empty store.
func NewDurable() *Durable { return &Durable{root: &node{}} }

// Clone returns a deep copy (a snapshot to roll back to).
func (d *Durable) Clone() *Durable { return &Durable{root: d.root.clone()} }

// Hash returns the state hash.
func (d *Durable) Hash() [32]byte { return d.root.hash() }

var errBadPath = errors.New("pvm: invalid durable path")

// splitPath checks a path ("/a/b", 1..240 bytes, segments of [A-Za-z0-9._-])
// and returns its segments; "" is the root (readable, never writable).
func splitPath(p string) ([]string, int32) {
	if len(p) > MaxPathLength {
		return nil, ErrCodeKeyTooLarge
	}
	if p == "" {
		return nil, 0
	}
	if p[0] != '/' {
		return nil, ErrCodeInvalidKey
	}
	segs := strings.Split(p[1:], "/")
	for _, s := range segs {
		if s == "" {
			return nil, ErrCodeInvalidKey
		}
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return nil, ErrCodeInvalidKey
			}
		}
	}
	return segs, 0
}

func readonly(segs []string) bool { return len(segs) == 0 || segs[0] == "readonly" }

// find returns the node at segs, or nil.
func (d *Durable) find(segs []string) *node {
	n := d.root
	for _, s := range segs {
		if n = n.children[s]; n == nil {
			return nil
		}
	}
	return n
}

// make returns the node at segs, creating the path.
func (d *Durable) make(segs []string) *node {
	n := d.root
	for _, s := range segs {
		if n.children == nil {
			n.children = map[string]*node{}
		}
		c := n.children[s]
		if c == nil {
			c = &node{}
			n.children[s] = c
		}
		n = c
	}
	return n
}

// prune removes empty nodes along segs.
func (d *Durable) prune(segs []string) {
	for i := len(segs); i > 0; i-- {
		parent := d.find(segs[:i-1])
		if c := parent.children[segs[i-1]]; c != nil && c.empty() {
			delete(parent.children, segs[i-1])
		} else {
			return
		}
	}
}

// Get returns the value at path (for the host and tools).
func (d *Durable) Get(path string) ([]byte, bool) {
	segs, code := splitPath(path)
	if code != 0 {
		return nil, false
	}
	n := d.find(segs)
	if n == nil || !n.hasValue {
		return nil, false
	}
	return n.value, true
}

// NodeHash returns the Merkle hash of the subtree at path (memoized: it
// costs nothing until the subtree changes), and whether the path exists.
func (d *Durable) NodeHash(path string) ([32]byte, bool) {
	segs, code := splitPath(path)
	if code != 0 {
		return [32]byte{}, false
	}
	n := d.find(segs)
	if n == nil {
		return [32]byte{}, false
	}
	return n.hash(), true
}

// Set writes a whole value, bypassing the read-only rule (the PVM's own writes).
func (d *Durable) Set(path string, v []byte) error {
	segs, code := splitPath(path)
	if code != 0 || len(segs) == 0 {
		return errBadPath
	}
	d.setValue(segs, append([]byte(nil), v...))
	return nil
}

// Delete removes a path and its subtree, bypassing the read-only rule.
func (d *Durable) Delete(path string) {
	segs, code := splitPath(path)
	if code != 0 || len(segs) == 0 {
		return
	}
	d.deleteTree(segs)
}

// Walk calls fn for every value under path, in path order.
func (d *Durable) Walk(path string, fn func(path string, value []byte)) {
	segs, code := splitPath(path)
	if code != 0 {
		return
	}
	n := d.find(segs)
	if n == nil {
		return
	}
	var walk func(p string, n *node)
	walk = func(p string, n *node) {
		if n.hasValue {
			fn(p, n.value)
		}
		for _, k := range n.sortedKeys() {
			walk(p+"/"+k, n.children[k])
		}
	}
	walk(path, n)
}

// Subkeys returns the names of path's children in order, and whether path
// exists (holds a value or children).
func (d *Durable) Subkeys(path string) ([]string, bool) {
	segs, code := splitPath(path)
	if code != 0 {
		return nil, false
	}
	n := d.find(segs)
	if n == nil || (len(segs) > 0 && n.empty()) {
		return nil, false
	}
	return n.sortedKeys(), true
}

func sortStrings(s []string) { sort.Strings(s) }

// Under returns a key-value view of the subtree at prefix (keys relative
// to it), the shape in which kernel/state and internal/da read durable
// storage: tests, benchmarks and a rollup node's setup step use it to write
// a kernel's setup and read its results from outside the PVM.
func (d *Durable) Under(prefix string) Subtree { return Subtree{d: d, prefix: prefix} }

// Subtree is a key-value view of part of a Durable.
type Subtree struct {
	d      *Durable
	prefix string
}

// Get returns the value at prefix+key.
func (s Subtree) Get(key string) ([]byte, bool) { return s.d.Get(s.prefix + key) }

// Put writes the value at prefix+key. A key that makes no valid path is a
// caller's bug: it panics.
func (s Subtree) Put(key string, v []byte) {
	if err := s.d.Set(s.prefix+key, v); err != nil {
		panic(fmt.Sprintf("pvm: write %s%s: %v", s.prefix, key, err))
	}
}

// Delete removes prefix+key and its subtree.
func (s Subtree) Delete(key string) { s.d.Delete(s.prefix + key) }
