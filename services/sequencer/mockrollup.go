package sequencer

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/tezos"
	"github.com/tezos-dsn/dsn/kernel/state"
)

// mockRollupAddress is the rollup address --mock-rollup frames for.
var mockRollupAddress = [20]byte{'d', 's', 'n', '-', 'm', 'o', 'c', 'k'}

// mockRollup runs the kernel's state machine (kernel/state, the code the
// DSN kernel runs in the PVM) inside the sequencer, for development
// without a rollup node or an L1: every post is one level. Its state
// answers the same durable paths a rollup node does (/dsn/…).
type mockRollup struct {
	mu   sync.Mutex
	st   memStore
	lvl  uint32
	subs []chan struct{}
}

type memStore map[string][]byte

func (m memStore) Get(k string) ([]byte, bool) { v, ok := m[k]; return v, ok }
func (m memStore) Put(k string, v []byte)      { m[k] = append([]byte(nil), v...) }
func (m memStore) Delete(k string)             { delete(m, k) } // the kernel deletes leaf keys only

func newMockRollup(c *narwhal.Committee) *mockRollup {
	r := &mockRollup{st: memStore{}}
	state.Setup(r.st, c, 50)
	return r
}

func (r *mockRollup) address(context.Context) (string, error) {
	return tezos.Base58CheckEncode(tezos.PrefixRollup, mockRollupAddress[:]), nil
}

func (r *mockRollup) level(context.Context) (uint32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lvl, nil
}

func (r *mockRollup) value(_ context.Context, key string) ([]byte, bool, error) {
	k, ok := strings.CutPrefix(key, "/dsn/")
	if !ok {
		return nil, false, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	v, found := r.st.Get(k)
	return append([]byte(nil), v...), found, nil
}

// inject runs one level of the kernel on the posted messages.
func (r *mockRollup) inject(_ context.Context, msgs [][]byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, err := state.Load(r.st, mockRollupAddress, state.Digests{}, func(string) {})
	if err != nil {
		return errors.Join(errors.New("mock rollup"), err)
	}
	r.lvl++
	m.StartLevel(r.lvl)
	for _, msg := range msgs {
		m.Input(r.lvl, msg)
	}
	m.EndLevel()
	for _, ch := range r.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	return nil
}

func (r *mockRollup) monitorBlocks(ctx context.Context, fn func()) error {
	ch := make(chan struct{}, 1)
	r.mu.Lock()
	r.subs = append(r.subs, ch)
	r.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
			fn()
		}
	}
}
