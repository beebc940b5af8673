package rollupnode

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/tezos-dsn/dsn/internal/httpjson"
	"github.com/tezos-dsn/dsn/internal/tezos"
)

// l1 is the rollup node's client of the L1 node: octez L1 RPC paths
// (headers, the heads monitor, counters, injection) plus the sandbox's
// /dsn/inbox/{level}, which hands over a level's add_messages operations
// (an octez node would be read through its block operations instead).
type l1 struct{ c *httpjson.Client }

func newL1(base string) *l1 { return &l1{httpjson.New(base, 10*time.Second)} }

// header is an L1 block header (the fields we use).
type header struct {
	Level       uint32 `json:"level"`
	Hash        string `json:"hash"`
	Predecessor string `json:"predecessor"`
	Timestamp   string `json:"timestamp"`
}

// inboxLevel is one L1 level as the sandbox serves it.
type inboxLevel struct {
	Level                uint32        `json:"level"`
	Hash                 string        `json:"hash"`
	Predecessor          string        `json:"predecessor"`
	Timestamp            int64         `json:"timestamp"`
	PredecessorTimestamp int64         `json:"predecessor_timestamp"`
	Operations           []inboxOpJSON `json:"operations"`
}

type inboxOpJSON struct {
	Hash     string   `json:"hash"`
	Source   string   `json:"source"`
	Messages []string `json:"messages"`
}

func (c *l1) head(ctx context.Context) (header, error) {
	var h header
	err := c.c.Do(ctx, http.MethodGet, "/chains/main/blocks/head/header", nil, &h)
	return h, err
}

func (c *l1) inbox(ctx context.Context, level uint32) (*inboxLevel, error) {
	var in inboxLevel
	if err := c.c.Do(ctx, http.MethodGet, "/dsn/inbox/"+strconv.FormatUint(uint64(level), 10), nil, &in); err != nil {
		return nil, err
	}
	if in.Level != level {
		return nil, fmt.Errorf("l1: asked for level %d, got %d", level, in.Level)
	}
	return &in, nil
}

func (c *l1) counter(ctx context.Context, source [20]byte) (uint64, error) {
	var s string
	if err := c.c.Do(ctx, http.MethodGet, "/chains/main/blocks/head/context/contracts/"+tezos.EncodeTz1(source)+"/counter", nil, &s); err != nil {
		return 0, err
	}
	return strconv.ParseUint(s, 10, 64)
}

func (c *l1) inject(ctx context.Context, op []byte) (string, error) {
	var h string
	err := c.c.Do(ctx, http.MethodPost, "/injection/operation", hex.EncodeToString(op), &h)
	return h, err
}

// monitorHeads calls fn with each new head of /monitor/heads/main until
// the stream ends or ctx is done.
func (c *l1) monitorHeads(ctx context.Context, fn func(header)) error {
	return c.c.Stream(ctx, "/monitor/heads/main", func(raw json.RawMessage) error {
		var h header
		if err := json.Unmarshal(raw, &h); err != nil {
			return fmt.Errorf("l1 monitor: %w", err)
		}
		fn(h)
		return nil
	})
}
