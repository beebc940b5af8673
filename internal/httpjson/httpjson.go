// Package httpjson is the client side of the JSON-over-HTTP APIs the
// services call on one another — octez's RPC conventions: the rollup node
// reads the L1 sandbox, the sequencer reads and posts to the rollup node:
// one call (a JSON body in, a JSON answer out, an error for any status but
// 200) and one stream of concatenated JSON values (octez's monitor RPCs).
package httpjson

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// MaxAnswer bounds an answer's size.
const MaxAnswer = 64 << 20

// Client calls one server.
type Client struct {
	base string
	http *http.Client
}

// New returns a client of the server at base (e.g. "http://host:8932");
// timeout bounds each call (streams have none).
func New(base string, timeout time.Duration) *Client {
	return &Client{base: strings.TrimRight(base, "/"), http: &http.Client{Timeout: timeout}}
}

// StatusError is an answer with a status other than 200.
type StatusError struct {
	Path   string
	Code   int
	Status string
	Body   string // the answer, trimmed (octez: an error trace)
}

func (e *StatusError) Error() string { return fmt.Sprintf("%s: %s: %s", e.Path, e.Status, e.Body) }

// NotFound reports whether err is a 404 answer.
func NotFound(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}

// Do calls method path with body (JSON-encoded; nil: none) and decodes a
// 200 answer into out (nil: ignored).
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
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
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswer))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return &StatusError{Path: path, Code: resp.StatusCode, Status: resp.Status, Body: string(bytes.TrimSpace(raw))}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Stream calls GET path and hands each JSON value of the answer to fn
// until the stream ends, ctx is done, or fn returns an error.
func (c *Client) Stream(ctx context.Context, path string, fn func(json.RawMessage) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: c.http.Transport}).Do(req) // no timeout: a stream
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return &StatusError{Path: path, Code: resp.StatusCode, Status: resp.Status, Body: string(bytes.TrimSpace(b))}
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if err := fn(v); err != nil {
			return err
		}
	}
}
