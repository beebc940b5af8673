package sequencer

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// rollupClient speaks the octez-smart-rollup-node RPC — the paths and
// shapes of reference/octez/smart-rollup-node-openapi.json — so that the
// sequencer runs the same against `dsn rollup-node` and a real octez node.
type rollupClient struct {
	base   string
	client *http.Client
}

func newRollupClient(base string) *rollupClient {
	return &rollupClient{base: strings.TrimRight(base, "/"), client: &http.Client{Timeout: 10 * time.Second}}
}

func (c *rollupClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("rollup node: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("rollup node %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("rollup node %s: %s: %s", path, resp.Status, bytes.TrimSpace(raw))
	}
	return json.Unmarshal(raw, out)
}

// address returns the rollup's sr1 address.
func (c *rollupClient) address(ctx context.Context) (string, error) {
	var a string
	err := c.do(ctx, http.MethodGet, "/global/smart_rollup_address", nil, &a)
	return a, err
}

// level returns the last L1 level the rollup node processed.
func (c *rollupClient) level(ctx context.Context) (uint32, error) {
	var l uint32
	err := c.do(ctx, http.MethodGet, "/global/tezos_level", nil, &l)
	return l, err
}

// value reads a durable value at the head (nil, false if absent).
func (c *rollupClient) value(ctx context.Context, key string) ([]byte, bool, error) {
	var h *string
	if err := c.do(ctx, http.MethodGet, "/global/block/head/durable/wasm_2_0_0/value?key="+url.QueryEscape(key), nil, &h); err != nil {
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
	return c.do(ctx, http.MethodPost, "/local/batcher/injection?drop_duplicate=true", hexes, &ids)
}

// monitorBlocks calls fn for each L2 block of the rollup node's
// /global/monitor_blocks stream until it ends or ctx is done.
func (c *rollupClient) monitorBlocks(ctx context.Context, fn func()) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/global/monitor_blocks", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{}).Do(req) // no timeout: a stream
	if err != nil {
		return fmt.Errorf("rollup node: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("rollup node monitor_blocks: %s", resp.Status)
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var b json.RawMessage
		if err := dec.Decode(&b); err != nil {
			return err
		}
		fn()
	}
}
