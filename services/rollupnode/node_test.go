package rollupnode_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tezos-dsn/dsn/internal/tezos"
	"github.com/tezos-dsn/dsn/internal/wasmlink"
	"github.com/tezos-dsn/dsn/services/rollupnode"
	"github.com/tezos-dsn/dsn/services/sandbox"
	"github.com/tezos-dsn/dsn/services/stacktest"
)

var (
	kernelOnce sync.Once
	kernelFile string
	kernelErr  error
)

// echoKernel builds kernel/examples/echo once per test binary: it writes
// every input to the outbox and counts them in /counter.
func echoKernel(t *testing.T) string {
	t.Helper()
	kernelOnce.Do(func() {
		k, err := wasmlink.Build(context.Background(), "../..", "./kernel/examples/echo")
		if err != nil {
			kernelErr = err
			return
		}
		dir, err := os.MkdirTemp("", "echo-kernel")
		if err != nil {
			kernelErr = err
			return
		}
		kernelFile = filepath.Join(dir, "echo.wasm")
		kernelErr = os.WriteFile(kernelFile, k, 0o644)
	})
	if kernelErr != nil {
		t.Fatal(kernelErr)
	}
	return kernelFile
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startSandbox runs a real `dsn sandbox` at 100 ms a level.
func startSandbox(t *testing.T) string {
	t.Helper()
	return "http://" + stacktest.StartSandbox(t, 100*time.Millisecond).Addr()
}

const rollupAddr = "sr18hRM2ke5FCVvjhqkDAhGPMzbPCrzJ8wrU"

type node struct {
	n        *rollupnode.Node
	url      string
	cancel   context.CancelFunc
	done     chan struct{}
	stopOnce sync.Once
}

// stop stops the node and closes its storage; startNode also registers it
// as a cleanup, so that a failed test does not leave the node writing
// into a removed temporary directory.
func (n *node) stop() {
	n.stopOnce.Do(func() {
		n.cancel()
		<-n.done
		n.n.Close()
	})
}

func testConfig(t *testing.T, l1, dir string) rollupnode.Config {
	cfg := rollupnode.DefaultConfig()
	cfg.DataDir, cfg.L1, cfg.Rollup, cfg.BootSectorFile = dir, l1, rollupAddr, echoKernel(t)
	cfg.BatchingKeys = []string{tezos.BootstrapAccounts[0].SecretKey}
	return cfg
}

func startNode(t *testing.T, cfg rollupnode.Config) *node {
	t.Helper()
	n, err := rollupnode.Open(context.Background(), cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(n.Handler())
	ctx, cancel := context.WithCancel(context.Background())
	out := &node{n: n, url: srv.URL, cancel: cancel, done: make(chan struct{})}
	go func() { n.Run(ctx); close(out.done) }()
	t.Cleanup(out.stop)
	t.Cleanup(srv.Close)
	return out
}

func get(t *testing.T, url string, out any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("GET %s: %v: %s", url, err, b)
		}
	}
	return resp.StatusCode
}

func post(t *testing.T, url string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	resp, err := http.Post(url, "application/json", rd)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("POST %s: %v: %s", url, err, b)
		}
	}
	return resp.StatusCode
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type status struct {
	Status string `json:"status"`
	Layer1 struct {
		Level         int32  `json:"level"`
		BlockHash     string `json:"block_hash"`
		OperationHash string `json:"operation_hash"`
	} `json:"layer1"`
}

// Messages injected through the batcher reach the kernel, in order, in a
// following level's inbox; the kernel's outbox and durable writes are
// readable through the RPC.
func TestInjectedMessagesReachTheKernelInOrder(t *testing.T) {
	l1 := startSandbox(t)
	n := startNode(t, testConfig(t, l1, t.TempDir()))
	defer n.stop()

	var msgs []string
	for i := range 40 {
		msgs = append(msgs, hex.EncodeToString(fmt.Appendf(nil, "message %02d", i)))
	}
	var ids []string
	if code := post(t, n.url+"/local/batcher/injection?drop_duplicate=false", msgs[:25], &ids); code != 200 || len(ids) != 25 {
		t.Fatalf("injection: %d %v", code, ids)
	}
	var more []string
	post(t, n.url+"/local/batcher/injection?drop_duplicate=false", msgs[25:], &more)
	ids = append(ids, more...)

	var st status
	waitFor(t, "the last message included", 40*time.Second, func() bool {
		get(t, n.url+"/local/batcher/queue/"+ids[len(ids)-1], &st)
		return st.Status == "included"
	})
	// Read every level's inbox from the rollup node's L2 blocks: the 40
	// messages appear once each, in injection order.
	var seen []string
	for lv := int32(1); lv <= st.Layer1.Level; lv++ {
		var blk struct {
			Level    int32    `json:"level"`
			Messages []string `json:"messages"`
		}
		if code := get(t, fmt.Sprintf("%s/global/block/%d", n.url, lv), &blk); code != 200 {
			t.Fatalf("block %d: %d", lv, code)
		}
		for _, m := range blk.Messages {
			if len(m) > 2 && m[:2] == "01" { // external
				seen = append(seen, m[2:])
			}
		}
	}
	if len(seen) != len(msgs) {
		t.Fatalf("%d messages in the inboxes, want %d: %q", len(seen), len(msgs), seen)
	}
	for i := range msgs {
		if seen[i] != msgs[i] {
			t.Fatalf("inbox message %d is %s, want %s", i, seen[i], msgs[i])
		}
	}
	// The echo kernel wrote each input to the outbox of its level.
	var outbox []struct {
		OutboxLevel uint32 `json:"outbox_level"`
		Message     string `json:"message"`
	}
	get(t, fmt.Sprintf("%s/global/block/head/outbox/%d/messages", n.url, st.Layer1.Level), &outbox)
	found := false
	for _, o := range outbox {
		found = found || o.Message == "01"+msgs[len(msgs)-1]
	}
	if !found {
		t.Fatalf("the last message is not in level %d's outbox: %v", st.Layer1.Level, outbox)
	}
	// Durable storage through the RPC: the echo kernel's counter.
	var counter *string
	get(t, n.url+"/global/block/head/durable/wasm_2_0_0/value?key=/counter", &counter)
	if counter == nil || len(*counter) != 8 {
		t.Fatalf("/counter = %v", counter)
	}
	var keys []string
	get(t, n.url+"/global/block/head/durable/wasm_2_0_0/subkeys?key=/kernel", &keys)
	if len(keys) == 0 || keys[0] != "boot.wasm" {
		t.Fatalf("subkeys of /kernel: %v", keys)
	}
	var length *string
	get(t, n.url+"/global/block/head/durable/wasm_2_0_0/length?key=/counter", &length)
	if length == nil || *length != "4" {
		t.Fatalf("length of /counter: %v", length)
	}
}

// Bad requests get a 4xx with octez's error trace.
func TestBadRequests(t *testing.T) {
	l1 := startSandbox(t)
	n := startNode(t, testConfig(t, l1, t.TempDir()))
	defer n.stop()
	type trace []struct {
		Kind string `json:"kind"`
		ID   string `json:"id"`
		Msg  string `json:"msg"`
	}
	cases := []struct {
		name, method, path, body string
		code                     int
	}{
		{"not json", "POST", "/local/batcher/injection?drop_duplicate=false", "{", 400},
		{"not hex", "POST", "/local/batcher/injection?drop_duplicate=false", `["zz"]`, 400},
		{"too long", "POST", "/local/batcher/injection?drop_duplicate=false", `["` + hex.EncodeToString(make([]byte, 4096)) + `"]`, 400},
		{"bad flag", "POST", "/local/batcher/injection?drop_duplicate=maybe", `[]`, 400},
		{"unknown block", "GET", "/global/block/999999/hash", "", 404},
		{"bad block id", "GET", "/global/block/tomorrow/hash", "", 404},
		{"no key", "GET", "/global/block/head/durable/wasm_2_0_0/value", "", 400},
		{"old state", "GET", "/global/block/0/durable/wasm_2_0_0/value?key=/counter", "", 404},
		{"no such rpc", "GET", "/global/nothing", "", 404},
		{"wrong method", "DELETE", "/global/smart_rollup_address", "", 404},
	}
	waitFor(t, "a processed level", 30*time.Second, func() bool { return n.n.Head() >= 2 })
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, n.url+c.path, bytes.NewReader([]byte(c.body)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var tr trace
		err = json.NewDecoder(resp.Body).Decode(&tr)
		resp.Body.Close()
		if resp.StatusCode != c.code || err != nil || len(tr) != 1 || tr[0].Kind != "permanent" || tr[0].ID == "" || tr[0].Msg == "" {
			t.Errorf("%s: %d %v %+v, want %d and an error trace", c.name, resp.StatusCode, err, tr, c.code)
		}
	}
}

// Two rollup nodes on the same sandbox reach the same state hash at every
// level; a node stopped and reopened resumes where it was and applies no
// level twice (its per-level records and state hashes still match the
// other node's).
func TestTwoNodesAgreeAndRestartResumes(t *testing.T) {
	l1 := startSandbox(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	a := startNode(t, testConfig(t, l1, dirA))
	cfgB := testConfig(t, l1, dirB)
	cfgB.BatchingKeys = nil // an observer
	b := startNode(t, cfgB)
	for i := range 5 {
		post(t, a.url+"/local/batcher/injection?drop_duplicate=false", []string{hex.EncodeToString(fmt.Appendf(nil, "before %d", i))}, nil)
		time.Sleep(120 * time.Millisecond)
	}
	waitFor(t, "a few levels", 30*time.Second, func() bool { return a.n.Head() >= 8 })
	a.stop()
	stoppedAt := a.n.Head()
	time.Sleep(500 * time.Millisecond) // levels go by while it is down
	a = startNode(t, testConfig(t, l1, dirA))
	defer a.stop()
	defer b.stop()
	if got := a.n.Head(); got != stoppedAt {
		t.Fatalf("reopened at level %d, stopped at %d", got, stoppedAt)
	}
	for i := range 5 {
		post(t, a.url+"/local/batcher/injection?drop_duplicate=false", []string{hex.EncodeToString(fmt.Appendf(nil, "after %d", i))}, nil)
		time.Sleep(120 * time.Millisecond)
	}
	target := a.n.Head() + 5
	waitFor(t, "both nodes past the restart", 40*time.Second, func() bool { return a.n.Head() >= target && b.n.Head() >= target })
	for lv := uint32(1); lv <= target; lv++ {
		var ha, hb string
		get(t, fmt.Sprintf("%s/global/block/%d/state_hash", a.url, lv), &ha)
		get(t, fmt.Sprintf("%s/global/block/%d/state_hash", b.url, lv), &hb)
		if ha == "" || ha != hb {
			t.Fatalf("level %d: state hashes %q and %q", lv, ha, hb)
		}
	}
	var counter string
	get(t, a.url+"/global/block/head/durable/wasm_2_0_0/value?key=/counter", &counter)
	if a.n.Head() == b.n.Head() {
		var other string
		get(t, b.url+"/global/block/head/durable/wasm_2_0_0/value?key=/counter", &other)
		if counter != other {
			t.Fatalf("counters differ: %s and %s", counter, other)
		}
	}
}

// A kernel that traps marks its level stuck; the node records it, keeps
// following the L1 and serving, and the next levels run normally.
func TestStuckLevelIsMarkedAndTheNodeGoesOn(t *testing.T) {
	l1 := startSandbox(t)
	n := startNode(t, testConfig(t, l1, t.TempDir()))
	var ids []string
	post(t, n.url+"/local/batcher/injection?drop_duplicate=false", []string{hex.EncodeToString([]byte("panic"))}, &ids)
	var st status
	waitFor(t, "the panic message included", 30*time.Second, func() bool {
		get(t, n.url+"/local/batcher/queue/"+ids[0], &st)
		return st.Status == "included"
	})
	var verdict string
	get(t, fmt.Sprintf("%s/global/block/%d/status", n.url, st.Layer1.Level), &verdict)
	if !strings.HasPrefix(verdict, "Stuck") {
		t.Fatalf("level %d: status %q, want stuck", st.Layer1.Level, verdict)
	}
	// The node goes on: a later message is processed and echoed.
	post(t, n.url+"/local/batcher/injection?drop_duplicate=false", []string{hex.EncodeToString([]byte("after"))}, &ids)
	waitFor(t, "the next message included", 30*time.Second, func() bool {
		get(t, n.url+"/local/batcher/queue/"+ids[0], &st)
		return st.Status == "included"
	})
	get(t, fmt.Sprintf("%s/global/block/%d/status", n.url, st.Layer1.Level), &verdict)
	if verdict != "Waiting for input message" {
		t.Fatalf("level %d after the stuck one: status %q", st.Layer1.Level, verdict)
	}
	var outbox []struct{ Message string }
	get(t, fmt.Sprintf("%s/global/block/%d/outbox/%d/messages", n.url, st.Layer1.Level, st.Layer1.Level), &outbox)
	found := false
	for _, o := range outbox {
		found = found || o.Message == "01"+hex.EncodeToString([]byte("after"))
	}
	if !found {
		t.Fatalf("the message after the stuck level was not echoed: %v", outbox)
	}
}

// With several batching keys and blocks that carry one operation each,
// operations wait in the L1's mempool longer than reinject_after: their
// messages are not sent again while they are there (the same key retries
// and is refused), so each message reaches the inbox exactly once.
func TestSlowInclusionSendsNoMessageTwice(t *testing.T) {
	sbCfg := sandbox.TestConfig(t.TempDir())
	sbCfg.MaxBlockBytes = tezos.MaxOperationSize // one full operation a block
	sb, err := sandbox.New(sbCfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sb.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	for sb.Addr() == "" {
		time.Sleep(5 * time.Millisecond)
	}
	cfg := testConfig(t, "http://"+sb.Addr(), t.TempDir())
	cfg.BatchingKeys = nil
	for _, a := range tezos.SandboxAccounts(4) {
		cfg.BatchingKeys = append(cfg.BatchingKeys, a.SecretKey)
	}
	cfg.ReinjectAfter = 2
	n := startNode(t, cfg)
	var msgs, ids []string
	for i := range 28 { // 4 operations of 7 messages of ~4 KiB
		m := make([]byte, 4000)
		copy(m, fmt.Sprintf("message %02d", i))
		msgs = append(msgs, hex.EncodeToString(m))
	}
	post(t, n.url+"/local/batcher/injection?drop_duplicate=true", msgs, &ids)
	waitFor(t, "every message included", 30*time.Second, func() bool {
		for _, id := range ids {
			var st status
			get(t, n.url+"/local/batcher/queue/"+id, &st)
			if st.Status != "included" {
				return false
			}
		}
		return true
	})
	count := map[string]int{}
	var head int32
	get(t, n.url+"/global/tezos_level", &head)
	for lv := int32(1); lv <= head; lv++ {
		var blk struct {
			Messages []string `json:"messages"`
		}
		get(t, fmt.Sprintf("%s/global/block/%d", n.url, lv), &blk)
		for _, m := range blk.Messages {
			if len(m) > 2 && m[:2] == "01" {
				count[m[2:]]++
			}
		}
	}
	for i, m := range msgs {
		if count[m] != 1 {
			t.Fatalf("message %d reached the inbox %d times", i, count[m])
		}
	}
}
