package sequencer

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"github.com/tezos-dsn/dsn/internal/httpjson"
)

// rollup is where the sequencer posts and reads the kernel's state: a
// rollup node (rollupClient) or, for development, the kernel's state
// machine run in the sequencer (mockRollup).
type rollup interface {
	address(ctx context.Context) (string, error)
	level(ctx context.Context) (uint32, error)
	value(ctx context.Context, key string) ([]byte, bool, error)
	inject(ctx context.Context, msgs [][]byte) error
	monitorBlocks(ctx context.Context, fn func()) error
}

// rollupClient speaks the octez-smart-rollup-node RPC — the paths and
// shapes of reference/octez/smart-rollup-node-openapi.json — so that the
// sequencer runs the same against `dsn rollup-node` and a real octez node.
type rollupClient struct{ c *httpjson.Client }

func newRollupClient(base string) *rollupClient {
	return &rollupClient{httpjson.New(base, 10*time.Second)}
}

// address returns the rollup's sr1 address.
func (c *rollupClient) address(ctx context.Context) (string, error) {
	var a string
	err := c.c.Do(ctx, http.MethodGet, "/global/smart_rollup_address", nil, &a)
	return a, err
}

// level returns the last L1 level the rollup node processed.
func (c *rollupClient) level(ctx context.Context) (uint32, error) {
	var l uint32
	err := c.c.Do(ctx, http.MethodGet, "/global/tezos_level", nil, &l)
	return l, err
}

// value reads a durable value at the head (nil, false if absent).
func (c *rollupClient) value(ctx context.Context, key string) ([]byte, bool, error) {
	var h *string
	if err := c.c.Do(ctx, http.MethodGet, "/global/block/head/durable/wasm_2_0_0/value?key="+url.QueryEscape(key), nil, &h); err != nil {
		return nil, false, err
	}
	if h == nil {
		return nil, false, nil
	}
	v, err := hex.DecodeString(*h)
	return v, err == nil, err
}

// inject queues messages in the rollup node's batcher. Chunks are
// content-addressed, so duplicates are dropped.
func (c *rollupClient) inject(ctx context.Context, msgs [][]byte) error {
	hexes := make([]string, len(msgs))
	for i, m := range msgs {
		hexes[i] = hex.EncodeToString(m)
	}
	var ids []string
	return c.c.Do(ctx, http.MethodPost, "/local/batcher/injection?drop_duplicate=true", hexes, &ids)
}

// monitorBlocks calls fn for each L2 block of the rollup node's
// /global/monitor_blocks stream until it ends or ctx is done.
func (c *rollupClient) monitorBlocks(ctx context.Context, fn func()) error {
	return c.c.Stream(ctx, "/global/monitor_blocks", func(json.RawMessage) error { fn(); return nil })
}
