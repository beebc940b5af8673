package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tezos-dsn/dsn/internal/tezos"
)

// childEnv names the data dir of a sandbox run by a re-executed test
// binary (TestKill9Recovery).
const childEnv = "DSN_SANDBOX_TEST_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		runChild(dir)
		return
	}
	os.Exit(m.Run())
}

// runChild runs a sandbox until it is killed, publishing its address in
// dir.addr.
func runChild(dir string) {
	s, err := New(TestConfig(dir), slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go func() {
		for s.Addr() == "" {
			time.Sleep(5 * time.Millisecond)
		}
		os.WriteFile(dir+".addr.tmp", []byte(s.Addr()), 0o644)
		os.Rename(dir+".addr.tmp", dir+".addr")
	}()
	if err := s.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// key returns BootstrapAccounts[i]'s secret key.
func key(t testing.TB, i int) ed25519.PrivateKey {
	t.Helper()
	priv, err := tezos.ParseSecretKey(tezos.BootstrapAccounts[i].SecretKey)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

const alice, bob, bootstrap1 = 5, 6, 0

// signedOp builds an add_messages operation from priv's account.
func signedOp(priv ed25519.PrivateKey, counter uint64, branch [32]byte, msgs ...[]byte) *tezos.Operation {
	op := &tezos.Operation{Branch: branch, Contents: tezos.AddMessages{
		Source: tezos.PublicKeyHash(priv.Public().(ed25519.PublicKey)),
		Fee:    1000, Counter: counter, GasLimit: 2000, StorageLimit: 0, Messages: msgs,
	}}
	op.Sign(priv)
	return op
}

// harness is one running sandbox and an HTTP client for it.
type harness struct {
	t    testing.TB
	s    *Sandbox
	base string
	stop func()
}

// start runs a sandbox on cfg until the test ends (or h.stop).
func start(t testing.TB, cfg Config) *harness {
	t.Helper()
	s, err := New(cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for s.Addr() == "" {
		if time.Now().After(deadline) {
			t.Fatal("sandbox did not listen")
		}
		time.Sleep(time.Millisecond)
	}
	stopped := false
	h := &harness{t: t, s: s, base: "http://" + s.Addr()}
	h.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
	t.Cleanup(h.stop)
	return h
}

// get decodes a 200 answer of path into v.
func (h *harness) get(path string, v any) {
	h.t.Helper()
	code, body := h.do("GET", path, "")
	if code != http.StatusOK {
		h.t.Fatalf("GET %s: %d %s", path, code, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		h.t.Fatalf("GET %s: %v: %s", path, err, body)
	}
}

func (h *harness) do(method, path, body string) (int, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.base+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.StatusCode, b
}

// inject posts raw and returns the status and, on 200, the "o…" hash or,
// on 400, the error id.
func (h *harness) inject(raw []byte) (int, string) {
	h.t.Helper()
	code, body := h.do("POST", "/injection/operation", `"`+hex.EncodeToString(raw)+`"`)
	return code, answer(h.t, code, body)
}

func answer(t testing.TB, code int, body []byte) string {
	t.Helper()
	if code == http.StatusOK {
		var s string
		if err := json.Unmarshal(body, &s); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		return s
	}
	var errs []RPCError
	if err := json.Unmarshal(body, &errs); err != nil || len(errs) != 1 || errs[0].Kind == "" || errs[0].Msg == "" {
		t.Fatalf("error body %s (%v)", body, err)
	}
	return errs[0].ID
}

func (h *harness) mustInject(op *tezos.Operation) string {
	h.t.Helper()
	code, ans := h.inject(op.Bytes())
	if code != http.StatusOK {
		h.t.Fatalf("injection refused: %d %s", code, ans)
	}
	if want := tezos.EncodeOperationHash(op.Hash()); ans != want {
		h.t.Fatalf("answered %s, want %s", ans, want)
	}
	return ans
}

func (h *harness) head() BlockHeader {
	h.t.Helper()
	var hd BlockHeader
	h.get("/chains/main/blocks/head/header", &hd)
	return hd
}

func (h *harness) branch() [32]byte {
	h.t.Helper()
	b, err := tezos.ParseBlockHash(h.head().Hash)
	if err != nil {
		h.t.Fatal(err)
	}
	return b
}

func (h *harness) counter(priv ed25519.PrivateKey) uint64 {
	h.t.Helper()
	var s string
	h.get("/chains/main/blocks/head/context/contracts/"+tezos.EncodeTz1(tezos.PublicKeyHash(priv.Public().(ed25519.PublicKey)))+"/counter", &s)
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

// heads opens GET /monitor/heads/main and returns a function reading the
// next header from it.
func (h *harness) heads() func() BlockHeader {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", h.base+"/monitor/heads/main", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { resp.Body.Close() })
	sc := bufio.NewScanner(resp.Body)
	return func() BlockHeader {
		h.t.Helper()
		if !sc.Scan() {
			h.t.Fatalf("monitor stream ended: %v", sc.Err())
		}
		var hd BlockHeader
		if err := json.Unmarshal(sc.Bytes(), &hd); err != nil {
			h.t.Fatalf("monitor line %q: %v", sc.Text(), err)
		}
		return hd
	}
}

// waitLevel follows the head stream until level n is baked.
func (h *harness) waitLevel(n int64) {
	h.t.Helper()
	next := h.heads()
	for next().Level < n {
	}
}

// inboxes returns every level's inbox from 0 to the head.
func (h *harness) inboxes() []Inbox {
	h.t.Helper()
	head := h.head().Level
	out := make([]Inbox, head+1)
	for l := range out {
		h.get(fmt.Sprintf("/dsn/inbox/%d", l), &out[l])
	}
	return out
}

func TestInjectedOperationsReachTheInboxInOrder(t *testing.T) {
	h := start(t, TestConfig(t.TempDir()))
	type sent struct {
		hash, source string
		msgs         []string
	}
	var want []sent
	// Three rounds of one operation per account: each round waits for the
	// previous one's counters to apply.
	for round := uint64(1); round <= 3; round++ {
		branch := h.branch()
		for _, acct := range []int{alice, bootstrap1, bob} {
			priv := key(t, acct)
			m1 := []byte(fmt.Sprintf("round %d from %s", round, tezos.BootstrapAccounts[acct].Name))
			m2 := bytes.Repeat([]byte{byte(acct)}, 4095) // the largest message
			op := signedOp(priv, round, branch, m1, m2)
			want = append(want, sent{h.mustInject(op), tezos.EncodeTz1(op.Contents.Source),
				[]string{hex.EncodeToString(m1), hex.EncodeToString(m2)}})
		}
		next := h.heads()
		for h.counter(key(t, bob)) < round {
			next()
		}
	}
	var got []sent
	for l, in := range h.inboxes() {
		if in.Level != int64(l) {
			t.Fatalf("inbox %d says level %d", l, in.Level)
		}
		for _, op := range in.Operations {
			got = append(got, sent{op.Hash, op.Source, op.Messages})
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("inbox operations\n got %v\nwant %v", got, want)
	}
	for _, acct := range []int{alice, bob, bootstrap1} {
		if c := h.counter(key(t, acct)); c != 3 {
			t.Errorf("%s counter %d, want 3", tezos.BootstrapAccounts[acct].Name, c)
		}
	}
	if c := h.counter(key(t, 1)); c != 0 {
		t.Errorf("bootstrap2 counter %d, want 0", c)
	}
}

// TestRejections checks every refusal's HTTP status and error id. The
// block time is long enough that the baker never ticks during the test:
// levels are baked by calling bake, so that what is in the mempool is
// known at each step.
func TestRejections(t *testing.T) {
	cfg := TestConfig(t.TempDir())
	cfg.BlockTime.Duration = MaxBlockTime
	cfg.MaxOperationsTTL = 3
	h := start(t, cfg)
	genesis := h.branch()
	for range 3 {
		if err := h.s.bake(); err != nil {
			t.Fatal(err)
		}
	}
	// Levels 1..3 are live, genesis no longer is (ttl 3).
	branch := h.branch()
	a, b := key(t, alice), key(t, bob)
	_, stranger, _ := ed25519.GenerateKey(nil)
	forged := signedOp(a, 1, branch, []byte("x"))
	forged.Sign(b)
	oversized := signedOp(a, 1, branch, make([]byte, tezos.MaxOperationSize))
	first := signedOp(a, 1, branch, []byte("first"))

	expect := func(name string, code int, ans string, id string) {
		t.Helper()
		if code != http.StatusBadRequest || ans != id {
			t.Errorf("%s: %d %s, want 400 %s", name, code, ans, id)
		}
	}
	for _, c := range []struct {
		name, body, id string
	}{
		{"not hex", `"zz"`, IDParseError},
		{"not a JSON string", `{"op":"00"}`, IDParseError},
		{"not an operation", `"0011"`, IDParseError},
		{"huge body", `"` + strings.Repeat("00", maxInjectionBody) + `"`, IDOversized},
	} {
		code, body := h.do("POST", "/injection/operation", c.body)
		expect(c.name, code, answer(t, code, body), c.id)
	}
	for _, c := range []struct {
		name string
		op   *tezos.Operation
		id   string
	}{
		{"oversized", oversized, IDOversized},
		{"message of 4096 bytes", signedOp(a, 1, branch, []byte("ok"), make([]byte, 4096)), IDMessageTooBig},
		{"no message", signedOp(a, 1, branch), IDZeroMessages},
		{"outdated branch", signedOp(a, 1, genesis, []byte("x")), IDOutdated},
		{"unknown branch", signedOp(a, 1, [32]byte{1}, []byte("x")), IDOutdated},
		{"unknown source", signedOp(stranger, 1, branch, []byte("x")), IDUnknownSource},
		{"bad signature", forged, IDBadSignature},
		{"counter gap", signedOp(a, 2, branch, []byte("x")), IDCounterFuture},
		{"counter zero", signedOp(a, 0, branch, []byte("x")), IDCounterPast},
	} {
		code, ans := h.inject(c.op.Bytes())
		expect(c.name, code, ans, c.id)
	}
	h.mustInject(first)
	code, ans := h.inject(first.Bytes())
	expect("duplicate in the mempool", code, ans, IDDuplicate)
	code, ans = h.inject(signedOp(a, 1, branch, []byte("second")).Bytes())
	expect("second operation of a source", code, ans, IDConflict)
	code, ans = h.inject(signedOp(a, 2, branch, []byte("next")).Bytes())
	expect("next counter before inclusion", code, ans, IDCounterFuture)
	h.mustInject(signedOp(b, 1, branch, []byte("bob is independent")))

	if err := h.s.bake(); err != nil {
		t.Fatal(err)
	}
	if h.counter(a) != 1 || h.counter(b) != 1 {
		t.Fatalf("counters %d %d after inclusion", h.counter(a), h.counter(b))
	}
	code, ans = h.inject(first.Bytes())
	expect("duplicate of an included operation", code, ans, IDDuplicate)
	code, ans = h.inject(signedOp(a, 1, branch, []byte("replay")).Bytes())
	expect("counter replay", code, ans, IDCounterPast)
	h.mustInject(signedOp(a, 2, branch, []byte("next")))

	// The rejections are counted by reason.
	_, metrics := h.do("GET", "/metrics", "")
	for _, line := range []string{
		`dsn_sandbox_operations_rejected_total{reason="` + IDConflict + `"} 1`,
		`dsn_sandbox_operations_rejected_total{reason="` + IDParseError + `"} 3`,
		`dsn_sandbox_operations_included_total 2`,
		`dsn_sandbox_mempool_operations 1`,
	} {
		if !bytes.Contains(metrics, []byte(line)) {
			t.Errorf("metrics lack %s", line)
		}
	}
}

func TestBlockRPCs(t *testing.T) {
	cfg := TestConfig(t.TempDir())
	cfg.GenesisTimestamp = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	h := start(t, cfg)
	next := h.heads()
	// The stream starts at the current head, then gives every level in order.
	prev := next()
	for range 5 {
		hd := next()
		if hd.Level != prev.Level+1 || hd.Predecessor != prev.Hash {
			t.Fatalf("head %+v after %+v", hd, prev)
		}
		if hd.Timestamp < prev.Timestamp {
			t.Fatalf("timestamp went back: %s after %s", hd.Timestamp, prev.Timestamp)
		}
		prev = hd
	}
	var genesis BlockHeader
	h.get("/chains/main/blocks/0/header", &genesis)
	if genesis.Timestamp != "2026-11-30T12:00:00Z" || genesis.Predecessor != genesis.Hash {
		t.Fatalf("genesis %+v", genesis)
	}
	// Every level chains to its predecessor, by level, by hash and in the inbox.
	for l := int64(1); l <= prev.Level; l++ {
		var byLevel, byHash, parent BlockHeader
		var hash string
		var in Inbox
		h.get(fmt.Sprintf("/chains/main/blocks/%d/header", l), &byLevel)
		h.get("/chains/main/blocks/"+byLevel.Hash+"/header", &byHash)
		h.get(fmt.Sprintf("/chains/main/blocks/%d/hash", l), &hash)
		h.get(fmt.Sprintf("/chains/main/blocks/%d/header", l-1), &parent)
		h.get(fmt.Sprintf("/dsn/inbox/%d", l), &in)
		if byHash != byLevel || hash != byLevel.Hash || byLevel.Predecessor != parent.Hash || byLevel.Level != l {
			t.Fatalf("level %d: %+v %+v %s parent %+v", l, byLevel, byHash, hash, parent)
		}
		pt, _ := time.Parse(time.RFC3339, parent.Timestamp)
		if in.Hash != byLevel.Hash || in.Predecessor != parent.Hash || in.PredecessorTimestamp != pt.Unix() {
			t.Fatalf("inbox %d: %+v", l, in)
		}
	}
	var h1 BlockHeader
	h.get("/chains/main/blocks/head~1/header", &h1)
	var g BlockHeader
	h.get("/chains/main/blocks/genesis/header", &g)
	if g != genesis || h1.Level < prev.Level-1 {
		t.Fatalf("genesis %+v, head~1 %+v", g, h1)
	}
	var health Health
	h.get("/health", &health)
	if !health.Healthy || health.Level < prev.Level {
		t.Fatalf("health %+v", health)
	}
	for path, want := range map[string]int{
		"/chains/main/blocks/100000/header":                                              404,
		"/chains/main/blocks/BLYqQLv655Jmg2tkERG63FSzFUPgasoNgMvNYvgzsgMh6QhQU2P/header": 404,
		"/chains/main/blocks/nonsense/header":                                            400,
		"/dsn/inbox/100000":                                                              404,
		"/dsn/inbox/-1":                                                                  400,
		"/chains/main/blocks/head/context/contracts/tz1Ke2h7sDdakHJQh8WX4Z372du1KChsksyU/counter": 404,
	} {
		code, body := h.do("GET", path, "")
		if code != want {
			t.Errorf("%s: %d %s, want %d", path, code, body, want)
			continue
		}
		answer(t, code, body) // an octez error body
	}
}

// chainSnapshot is what a follower sees of a chain: every header and inbox.
func chainSnapshot(h *harness, upTo int64) []string {
	h.t.Helper()
	var out []string
	for l := int64(0); l <= upTo; l++ {
		var hd BlockHeader
		var in Inbox
		h.get(fmt.Sprintf("/chains/main/blocks/%d/header", l), &hd)
		h.get(fmt.Sprintf("/dsn/inbox/%d", l), &in)
		out = append(out, fmt.Sprintf("%+v %+v", hd, in))
	}
	return out
}

func TestRestartKeepsLevelsAndCounters(t *testing.T) {
	dir := t.TempDir()
	h := start(t, TestConfig(dir))
	a, b := key(t, alice), key(t, bob)
	h.mustInject(signedOp(a, 1, h.branch(), []byte("before restart a")))
	h.mustInject(signedOp(b, 1, h.branch(), []byte("before restart b")))
	next := h.heads()
	for h.counter(a) < 1 || h.counter(b) < 1 {
		next()
	}
	h.mustInject(signedOp(a, 2, h.branch(), []byte("pending at shutdown: lost with the mempool")))
	h.stop()
	// The stopped sandbox's head, read from its store.
	st, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	head, _, err := st.head()
	st.close()
	if err != nil {
		t.Fatal(err)
	}

	h2 := start(t, TestConfig(dir))
	if h2.counter(a) < 1 || h2.counter(b) != 1 {
		t.Fatalf("counters after restart: %d %d", h2.counter(a), h2.counter(b))
	}
	before := chainSnapshot(h2, head)
	next = h2.heads()
	for hd := next(); hd.Level <= head+1; hd = next() {
		if hd.Level == head+1 {
			var last BlockHeader
			h2.get(fmt.Sprintf("/chains/main/blocks/%d/header", head), &last)
			if hd.Predecessor != last.Hash {
				t.Fatalf("level %d does not follow level %d", hd.Level, head)
			}
		}
	}
	// The pending operation was in memory only: counter 2 is free again
	// unless it was baked before the stop.
	c := h2.counter(a)
	h2.mustInject(signedOp(a, c+1, h2.branch(), []byte("after restart")))
	for h2.counter(a) < c+1 {
		next()
	}
	if after := chainSnapshot(h2, head); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatal("levels changed after the restart")
	}
}

// TestKill9Recovery runs the sandbox in a child process, kills it with
// SIGKILL while it bakes, and checks that every level and counter a
// follower saw before the kill is still served, unchanged, on restart.
func TestKill9Recovery(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	dir := filepath.Join(t.TempDir(), "data")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	var addr []byte
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if addr, err = os.ReadFile(dir + ".addr"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("child did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	h := &harness{t: t, base: "http://" + string(addr)}
	a := key(t, alice)
	next := h.heads()
	for i := uint64(1); i <= 3; i++ {
		h.mustInject(signedOp(a, i, h.branch(), []byte(fmt.Sprintf("op %d", i))))
		for h.counter(a) < i {
			next()
		}
	}
	seen := h.head().Level
	snapshot := chainSnapshot(h, seen)
	next() // one more level in flight
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	killed = true

	h2 := start(t, TestConfig(dir))
	if c := h2.counter(a); c != 3 {
		t.Fatalf("counter %d after kill -9, want 3", c)
	}
	if got := chainSnapshot(h2, seen); fmt.Sprint(got) != fmt.Sprint(snapshot) {
		t.Fatalf("levels 0..%d changed after kill -9", seen)
	}
	h2.waitLevel(h2.head().Level + 1)
	h2.mustInject(signedOp(a, 4, h2.branch(), []byte("after kill")))
}
