package state

import "slices"

// Overlay is a write-back cache over a Store for one kernel_run: reads see
// the run's own writes, and Flush writes each touched key once, in key
// order (so a parent path is written or deleted before its children). A
// chunk or batch that arrives and is consumed in the same run never
// reaches durable storage, which is most of the kernel's traffic; a run
// that traps writes nothing. Memory is bounded by what one level brings.
type Overlay struct {
	st      Store
	pending map[string][]byte // nil value with present key: deleted
	deleted map[string]bool
}

// NewOverlay wraps st.
func NewOverlay(st Store) *Overlay {
	return &Overlay{st: st, pending: map[string][]byte{}, deleted: map[string]bool{}}
}

// Get implements Store.
func (o *Overlay) Get(k string) ([]byte, bool) {
	if o.deleted[k] {
		return nil, false
	}
	if v, ok := o.pending[k]; ok {
		return v, true
	}
	return o.st.Get(k)
}

// Put implements Store.
func (o *Overlay) Put(k string, v []byte) {
	delete(o.deleted, k)
	o.pending[k] = append([]byte(nil), v...)
}

// Delete implements Store. NB: it deletes the key's value only; a child
// key written in this run stays.
func (o *Overlay) Delete(k string) {
	delete(o.pending, k)
	o.deleted[k] = true
}

// Flush writes the run's changes to the underlying Store and empties the
// overlay.
func (o *Overlay) Flush() {
	keys := make([]string, 0, len(o.pending)+len(o.deleted))
	for k := range o.pending {
		keys = append(keys, k)
	}
	for k := range o.deleted {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if o.deleted[k] {
			o.st.Delete(k)
		} else {
			o.st.Put(k, o.pending[k])
		}
	}
	o.pending, o.deleted = map[string][]byte{}, map[string]bool{}
}
