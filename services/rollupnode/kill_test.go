package rollupnode_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tezos-dsn/dsn/internal/tezos"
	"github.com/tezos-dsn/dsn/services/rollupnode"
)

// The child process of TestKillNineMidLevel is this test binary run again
// with these variables set: it runs a rollup node until it is killed.
const (
	childDataDir = "DSN_ROLLUP_CHILD" // the node's data dir; set: be the child
	childL1      = "DSN_ROLLUP_CHILD_L1"
	childKernel  = "DSN_ROLLUP_CHILD_KERNEL"
)

// A rollup node killed with SIGKILL while it processes a level, again and
// again, and restarted on the same data dir each time, ends in the same
// state as a node that never stopped: at every level both processed the
// state hashes are equal, the kernel's input counter is equal at equal
// heads (a level applied twice or skipped would show in both), and the
// killed node has a record for every level from 1 to its head.
//
// The child's L1 is a proxy in front of the sandbox; it tells the test when
// the child fetches a level that carries messages, and the test kills the
// child a random few milliseconds later: inside that level's run or commit
// with good probability (each kill is logged as landing before or after
// the level's commit).
func TestKillNineMidLevel(t *testing.T) {
	if dir := os.Getenv(childDataDir); dir != "" {
		runChild(t, dir)
		return
	}
	if testing.Short() {
		t.Skip("kill -9 cycles take ~10 s")
	}
	if raceDetector() {
		// Each child compiles the kernel at its first level: ~0.6 s, but
		// ~10 s under the race detector, six times over. The code the
		// child runs is raced in the other tests of this package.
		t.Skip("the race detector makes each child's kernel compilation take ~10 s")
	}
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))

	l1 := startSandbox(t)
	proxy := newInboxProxy(t, l1)
	kernel := echoKernel(t)
	dir := filepath.Join(t.TempDir(), "node")
	t.Cleanup(func() {
		if t.Failed() {
			raw, _ := os.ReadFile(childLog(dir))
			t.Logf("the child's log, last lines:\n%s", tail(raw, 3000))
		}
	})
	obsCfg := testConfig(t, l1, t.TempDir())
	obsCfg.BatchingKeys = nil
	observer := startNode(t, obsCfg)
	defer observer.stop()

	payload := make([]string, 300)
	for i := range payload {
		payload[i] = hex.EncodeToString(fmt.Appendf(nil, "%-1024d", i))
	}
	// A level with a batch of 30 messages takes ~25 ms from its fetch to
	// its commit on a 2-core machine, once the kernel is compiled.
	const cycles, maxDelay = 5, 30 * time.Millisecond
	inside := 0
	for cycle := range cycles {
		c := startChild(t, dir, proxy.url, kernel)
		post(t, c.url+"/local/batcher/injection?drop_duplicate=false", payload, nil)
		// The first level after a start compiles the kernel (~0.6 s):
		// wait it out, so that the kill lands in a level's run or commit.
		var opened *uint32
		get(t, c.url+"/global/tezos_level", &opened)
		waitFor(t, "the child's first level", 10*time.Second, func() bool {
			var now *uint32
			get(t, c.url+"/global/tezos_level", &now)
			return now != nil && (opened == nil || *now > *opened)
		})
		level := proxy.next(t, 10*time.Second)
		delay := time.Duration(rng.Int64N(int64(maxDelay)))
		time.Sleep(delay)
		c.kill(t)
		// Where did it land? The level's record is committed or not.
		head := headOf(t, dir)
		where := "after its commit"
		if head < level {
			inside++
			where = "inside the level"
		}
		t.Logf("kill %d: %v after fetching level %d; committed up to %d (%s)", cycle+1, delay, level, head, where)
	}
	t.Logf("%d of %d kills landed inside a level", inside, cycles)

	c := startChild(t, dir, proxy.url, kernel)
	var target uint32
	get(t, l1+"/chains/main/blocks/head/header", &struct {
		Level *uint32 `json:"level"`
	}{&target})
	target += 2
	waitFor(t, "both nodes past the last restart", 15*time.Second, func() bool {
		var a, b uint32
		get(t, c.url+"/global/tezos_level", &a)
		get(t, observer.url+"/global/tezos_level", &b)
		return a >= target && b >= target
	})

	// The killed node has a record of every level, chained by the L1
	// hashes, and its state hash at each level is the observer's.
	type block struct {
		Level       uint32 `json:"level"`
		Hash        string `json:"block_hash"`
		Predecessor string `json:"predecessor"`
		StateHash   string `json:"state_hash"`
	}
	var head uint32
	get(t, c.url+"/global/tezos_level", &head)
	var prev block
	for lv := uint32(1); lv <= head; lv++ {
		var mine, theirs block
		if code := get(t, fmt.Sprintf("%s/global/block/%d", c.url, lv), &mine); code != http.StatusOK {
			t.Fatalf("the killed node has no record of level %d (head %d): %d", lv, head, code)
		}
		if mine.Level != lv || lv > 1 && mine.Predecessor != prev.Hash {
			t.Fatalf("the killed node's record of level %d: %+v, after %+v", lv, mine, prev)
		}
		prev = mine
		if lv > target {
			continue // the observer may not be there yet
		}
		get(t, fmt.Sprintf("%s/global/block/%d", observer.url, lv), &theirs)
		if mine != theirs {
			t.Fatalf("level %d: %+v after kills, %+v without", lv, mine, theirs)
		}
	}
	// The counter at equal heads: each node's head is read around its
	// counter, so that the counter is known to be that head's.
	counterAt := func(url string) (uint32, string) {
		var before, after uint32
		var counter string
		get(t, url+"/global/tezos_level", &before)
		get(t, url+"/global/block/head/durable/wasm_2_0_0/value?key=/counter", &counter)
		get(t, url+"/global/tezos_level", &after)
		if before != after {
			return 0, ""
		}
		return before, counter
	}
	waitFor(t, "both nodes at the same head", 10*time.Second, func() bool {
		ha, ca := counterAt(c.url)
		hb, cb := counterAt(observer.url)
		if ha == 0 || ha != hb {
			return false
		}
		if ca == "" || ca != cb {
			t.Fatalf("/counter at level %d: %s after kills, %s without", ha, ca, cb)
		}
		return true
	})
}

// raceDetector reports whether this test binary was built with -race.
func raceDetector() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}

// runChild is the child process: a rollup node with one batching key on
// the data dir, L1 and kernel the parent gives; it prints its RPC address
// and runs until killed.
func runChild(t *testing.T, dir string) {
	cfg := rollupnode.DefaultConfig()
	cfg.DataDir, cfg.L1, cfg.Rollup, cfg.BootSectorFile = dir, os.Getenv(childL1), rollupAddr, os.Getenv(childKernel)
	cfg.BatchingKeys = []string{tezos.BootstrapAccounts[0].SecretKey}
	n, err := rollupnode.Open(context.Background(), cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go http.Serve(ln, n.Handler())
	fmt.Printf("ADDR http://%s\n", ln.Addr())
	t.Fatal(n.Run(context.Background())) // returns only on a storage failure
}

type child struct {
	cmd *exec.Cmd
	url string
}

// startChild runs the child and waits for its RPC address.
func startChild(t *testing.T, dir, l1, kernel string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillNineMidLevel$")
	cmd.Env = append(os.Environ(), childDataDir+"="+dir, childL1+"="+l1, childKernel+"="+kernel)
	logs, err := os.OpenFile(childLog(dir), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	cmd.Stderr = logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd}
	t.Cleanup(func() { c.kill(t) })
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		if addr, ok := strings.CutPrefix(lines.Text(), "ADDR "); ok {
			c.url = addr
			go io.Copy(io.Discard, out)
			return c
		}
	}
	c.kill(t)
	raw, _ := os.ReadFile(logs.Name())
	t.Fatalf("the child exited before serving: %s", tail(raw, 2000))
	return nil
}

// childLog is where the children of a data dir write their logs.
func childLog(dir string) string { return dir + ".log" }

// kill sends SIGKILL and reaps the child.
func (c *child) kill(t *testing.T) {
	if c.cmd.ProcessState != nil {
		return
	}
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Logf("kill: %v", err)
	}
	c.cmd.Wait()
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// headOf opens a stopped node's data dir and returns its last committed
// level.
func headOf(t *testing.T, dir string) uint32 {
	t.Helper()
	cfg := rollupnode.DefaultConfig()
	cfg.DataDir, cfg.L1, cfg.Rollup, cfg.BootSectorFile = dir, "http://127.0.0.1:1", rollupAddr, echoKernel(t)
	n, err := rollupnode.Open(context.Background(), cfg, quiet())
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer n.Close()
	return n.Head()
}

// inboxProxy stands between the child and the sandbox; once armed (by
// next), it reports the first level with messages the child fetches.
type inboxProxy struct {
	url     string
	armed   atomic.Bool
	fetched chan uint32
}

func newInboxProxy(t *testing.T, l1 string) *inboxProxy {
	target, err := url.Parse(l1)
	if err != nil {
		t.Fatal(err)
	}
	p := &inboxProxy{fetched: make(chan uint32, 1)}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1 // the heads monitor is a stream
	rp.ModifyResponse = func(resp *http.Response) error {
		lv, ok := strings.CutPrefix(resp.Request.URL.Path, "/dsn/inbox/")
		if !ok || resp.StatusCode != http.StatusOK || !p.armed.Load() {
			return nil
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(raw))
		if err != nil {
			return err
		}
		var in struct {
			Operations []json.RawMessage `json:"operations"`
		}
		level, _ := strconv.ParseUint(lv, 10, 32)
		if json.Unmarshal(raw, &in) == nil && len(in.Operations) > 0 && p.armed.CompareAndSwap(true, false) {
			p.fetched <- uint32(level)
		}
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

// next arms the proxy and waits for the child to fetch a level with
// messages.
func (p *inboxProxy) next(t *testing.T, d time.Duration) uint32 {
	t.Helper()
	p.armed.Store(true)
	select {
	case lv := <-p.fetched:
		return lv
	case <-time.After(d):
		t.Fatal("the child fetched no level with messages")
		return 0
	}
}
