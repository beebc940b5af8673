package rollupnode

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tezos-dsn/dsn/internal/tezos"
)

// l1 is the rollup node's client of the L1 node: octez L1 RPC paths
// (headers, the heads monitor, counters, injection) plus the sandbox's
// /dsn/inbox/{level}, which hands over a level's add_messages operations
// (an octez node would be read through its block operations instead).
type l1 struct {
	base   string
	client *http.Client
}

func newL1(base string) *l1 {
	return &l1{base: strings.TrimRight(base, "/"), client: &http.Client{Timeout: 10 * time.Second}}
}

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

// errNotFound is an L1 404.
type errNotFound struct{ path string }

func (e errNotFound) Error() string { return "l1: " + e.path + ": not found" }

func (c *l1) do(ctx context.Context, method, path string, body any, out any) error {
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
		return fmt.Errorf("l1 %s: %w", path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("l1 %s: %w", path, err)
	}
	if resp.StatusCode == http.StatusNotFound {
		return errNotFound{path}
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("l1 %s: %s: %s", path, resp.Status, bytes.TrimSpace(raw))
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("l1 %s: %w", path, err)
	}
	return nil
}

func (c *l1) head(ctx context.Context) (header, error) {
	var h header
	err := c.do(ctx, http.MethodGet, "/chains/main/blocks/head/header", nil, &h)
	return h, err
}

func (c *l1) inbox(ctx context.Context, level uint32) (*inboxLevel, error) {
	var in inboxLevel
	if err := c.do(ctx, http.MethodGet, "/dsn/inbox/"+strconv.FormatUint(uint64(level), 10), nil, &in); err != nil {
		return nil, err
	}
	if in.Level != level {
		return nil, fmt.Errorf("l1: asked for level %d, got %d", level, in.Level)
	}
	return &in, nil
}

func (c *l1) counter(ctx context.Context, source [20]byte) (uint64, error) {
	var s string
	if err := c.do(ctx, http.MethodGet, "/chains/main/blocks/head/context/contracts/"+tezos.EncodeTz1(source)+"/counter", nil, &s); err != nil {
		return 0, err
	}
	return strconv.ParseUint(s, 10, 64)
}

func (c *l1) inject(ctx context.Context, op []byte) (string, error) {
	var h string
	err := c.do(ctx, http.MethodPost, "/injection/operation", hex.EncodeToString(op), &h)
	return h, err
}

// monitorHeads calls fn with each new head of /monitor/heads/main until
// the stream ends or ctx is done.
func (c *l1) monitorHeads(ctx context.Context, fn func(header)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/monitor/heads/main", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{}).Do(req) // no timeout: a stream
	if err != nil {
		return fmt.Errorf("l1 monitor: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("l1 monitor: %s", resp.Status)
	}
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	for {
		var h header
		if err := dec.Decode(&h); err != nil {
			return fmt.Errorf("l1 monitor: %w", err)
		}
		fn(h)
	}
}
