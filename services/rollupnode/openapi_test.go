package rollupnode_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// The rollup node stands in for octez-smart-rollup-node: a client written
// against octez must run unchanged against it. These tests fetch every
// answer the node serves and check it against the schema octez publishes
// for that RPC (testdata/smart-rollup-node-openapi.json), with a small JSON
// Schema checker that knows what that document uses. Where we differ on
// purpose (docs/rollup-node.md, "What differs from octez"), the difference
// is named in deviations; any other mismatch fails.

// deviation is one documented difference between our answer and octez's
// schema for it.
type deviation struct {
	rpc string // the OpenAPI path
	// field is where, in the answer: "inbox" is a field of the top object,
	// "[].message" the message field of every item of the top array.
	field  string
	reason string
	// instead is the schema of what we give in its place; nil: we leave
	// the field out (it is required by octez).
	instead map[string]any
}

var hexString = map[string]any{"type": "string", "pattern": "^([a-zA-Z0-9][a-zA-Z0-9])*$"}

const (
	noInbox = "the protocol's inbox Merkle structure, which the sandbox does not build"
	noTicks = "no tick metering yet (the deterministic-PVM issue)"
	hexOut  = "outbox messages are given as the kernel wrote them (hex), not decoded as Michelson"
)

var deviations = []deviation{
	{"/global/block/{block_id}", "inbox_witness", noInbox, nil},
	{"/global/block/{block_id}", "inbox_hash", noInbox, nil},
	{"/global/block/{block_id}", "inbox", noInbox, nil},
	{"/global/block/{block_id}", "initial_tick", noTicks, nil},
	{"/global/block/{block_id}", "num_ticks", noTicks, nil},
	{"/global/monitor_blocks", "inbox_witness", noInbox, nil},
	{"/global/monitor_blocks", "inbox_hash", noInbox, nil},
	{"/global/monitor_blocks", "initial_tick", noTicks, nil},
	{"/global/monitor_blocks", "num_ticks", noTicks, nil},
	{"/global/block/{block_id}/outbox", "[].message", hexOut, hexString},
	{"/global/block/{block_id}/outbox/{level}/messages", "[].message", hexOut, hexString},
}

// errorTrace is the shape of every error answer: octez's error trace.
var errorTrace = map[string]any{"type": "array", "items": map[string]any{
	"type":     "object",
	"required": []any{"kind", "id", "msg"},
	"properties": map[string]any{
		"kind": map[string]any{"type": "string"},
		"id":   map[string]any{"type": "string"},
		"msg":  map[string]any{"type": "string"},
	},
}}

// openAPI is octez's OpenAPI document.
type openAPI struct {
	paths   map[string]any
	schemas map[string]any // components/schemas
}

func loadOpenAPI(t *testing.T) *openAPI {
	t.Helper()
	raw, err := os.ReadFile("testdata/smart-rollup-node-openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths      map[string]any `json:"paths"`
		Components struct {
			Schemas map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	return &openAPI{paths: doc.Paths, schemas: doc.Components.Schemas}
}

// answer returns the schema of the 200 answer of method rpc, relaxed by
// the deviations of that rpc except the one at skip (-1: none skipped).
func (o *openAPI) answer(t *testing.T, method, rpc string, skip int) map[string]any {
	t.Helper()
	s, ok := dig(o.paths, rpc, strings.ToLower(method), "responses", "200", "content", "application/json", "schema").(map[string]any)
	if !ok {
		t.Fatalf("the OpenAPI document has no 200 answer for %s %s", method, rpc)
	}
	s = deepCopy(s)
	for i, d := range deviations {
		if d.rpc == rpc && i != skip {
			relax(t, s, d)
		}
	}
	return s
}

func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	return v
}

func deepCopy(s map[string]any) map[string]any {
	raw, _ := json.Marshal(s)
	var out map[string]any
	json.Unmarshal(raw, &out)
	return out
}

// relax applies a deviation to a schema.
func relax(t *testing.T, s map[string]any, d deviation) {
	t.Helper()
	segs := strings.Split(d.field, ".")
	for _, seg := range segs[:len(segs)-1] {
		var ok bool
		if seg == "[]" {
			s, ok = s["items"].(map[string]any)
		} else {
			s, ok = dig(s, "properties", seg).(map[string]any)
		}
		if !ok {
			t.Fatalf("deviation %s %s: no %q in the schema", d.rpc, d.field, seg)
		}
	}
	last := segs[len(segs)-1]
	if d.instead != nil {
		s["properties"].(map[string]any)[last] = d.instead
		return
	}
	req, _ := s["required"].([]any)
	s["required"] = slices.DeleteFunc(req, func(r any) bool { return r == last })
}

// check validates v (as encoding/json decodes into an any) against a
// schema; the error names the JSON path of the first mismatch.
func (o *openAPI) check(s map[string]any, v any, at string) error {
	if ref, ok := s["$ref"].(string); ok {
		name, ok := strings.CutPrefix(ref, "#/components/schemas/")
		target, found := o.schemas[name].(map[string]any)
		if !ok || !found {
			return fmt.Errorf("%s: unresolved $ref %s", at, ref)
		}
		return o.check(target, v, at)
	}
	if v == nil && s["nullable"] == true {
		return nil
	}
	// NB: octez's oneOf comes from data_encoding's unions and tuples, whose
	// cases may overlap (a union decodes as its first matching case): in
	// /health, the worker tuple ["follower", "running"] renders as items
	// oneOf [unistring, "running" | {crashed}], and "running" matches both.
	// So oneOf is read as "at least one alternative matches", which octez's
	// own answers satisfy.
	if alts, ok := s["oneOf"].([]any); ok {
		var whyNot []string
		for i, a := range alts {
			a := a.(map[string]any)
			err := o.check(a, v, at)
			if err == nil {
				whyNot = nil
				break
			}
			name := fmt.Sprint(i)
			if title, ok := a["title"].(string); ok {
				name = title
			}
			whyNot = append(whyNot, name+": "+err.Error())
		}
		if whyNot != nil {
			return fmt.Errorf("%s: matches no alternative of oneOf {%s}", at, strings.Join(whyNot, "; "))
		}
	}
	if typ, ok := s["type"].(string); ok && !hasType(v, typ) {
		return fmt.Errorf("%s: want %s, got %s", at, typ, describe(v))
	}
	if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, v) {
		return fmt.Errorf("%s: %s is not one of %v", at, describe(v), enum)
	}
	if p, ok := s["pattern"].(string); ok {
		if str, isStr := v.(string); isStr && !regexp.MustCompile(p).MatchString(str) {
			return fmt.Errorf("%s: %q does not match %s", at, str, p)
		}
	}
	if f, isNum := v.(float64); isNum {
		if lo, ok := s["minimum"].(float64); ok && f < lo {
			return fmt.Errorf("%s: %v below the minimum %v", at, f, lo)
		}
		if hi, ok := s["maximum"].(float64); ok && f > hi {
			return fmt.Errorf("%s: %v above the maximum %v", at, f, hi)
		}
	}
	if obj, isObj := v.(map[string]any); isObj {
		for _, r := range anySlice(s["required"]) {
			if _, ok := obj[r.(string)]; !ok {
				return fmt.Errorf("%s: required field %q is missing", at, r)
			}
		}
		props, _ := s["properties"].(map[string]any)
		for _, k := range sortedKeys(obj) {
			if ps, ok := props[k].(map[string]any); ok {
				if err := o.check(ps, obj[k], at+"."+k); err != nil {
					return err
				}
			}
		}
	}
	if arr, isArr := v.([]any); isArr {
		if items, ok := s["items"].(map[string]any); ok {
			for i, x := range arr {
				if err := o.check(items, x, fmt.Sprintf("%s[%d]", at, i)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func hasType(v any, typ string) bool {
	switch x := v.(type) {
	case map[string]any:
		return typ == "object"
	case []any:
		return typ == "array"
	case string:
		return typ == "string"
	case bool:
		return typ == "boolean"
	case float64:
		return typ == "number" || typ == "integer" && x == math.Trunc(x)
	}
	return false // null
}

func describe(v any) string {
	raw, _ := json.Marshal(v)
	if len(raw) > 80 {
		raw = append(raw[:80], "…"...)
	}
	return string(raw)
}

func anySlice(v any) []any { s, _ := v.([]any); return s }

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// The checker itself: what it accepts and where it reports a mismatch.
func TestSchemaChecker(t *testing.T) {
	o := loadOpenAPI(t)
	status := o.answer(t, "GET", "/local/batcher/queue/{l2_message_id}", -1)
	cases := []struct {
		answer string
		err    string // a substring of the error; "" when it conforms
	}{
		{`{"status":"unknown"}`, ""},
		{`{"status":"pending_batch","content":"00ff"}`, ""},
		{`{"status":"pending_batch","content":"0"}`, `$.content: "0" does not match`},
		{`{"status":"lost"}`, "matches no alternative"},
		{`{"status":"injected","operation":{"kind":"add_messages","message":[]},"layer1":{"operation_hash":"o","operation_index":0.5}}`,
			"$.layer1.operation_index: want integer"},
		{`{"status":"injected","operation":{"kind":"add_messages","message":[]},"layer1":{"operation_hash":"o","operation_index":1073741824}}`,
			"above the maximum"},
		{`{"status":"included","operation":{"kind":"add_messages","message":["zz"]},"layer1":{"operation_hash":"o","operation_index":0,"block_hash":"B","level":3},"finalized":true,"cemented":false}`, ""},
		{`{"status":"included","operation":{"kind":"add_messages","message":[]},"layer1":{"operation_hash":"o","operation_index":0,"level":3},"finalized":true,"cemented":false}`,
			`required field "block_hash" is missing`},
	}
	for _, c := range cases {
		var v any
		if err := json.Unmarshal([]byte(c.answer), &v); err != nil {
			t.Fatal(err)
		}
		err := o.check(status, v, "$")
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: got %v, want %q", c.answer, err, c.err)
		}
	}
	var null any
	if err := o.check(o.answer(t, "GET", "/global/tezos_head", -1), null, "$"); err != nil {
		t.Errorf("null tezos_head: %v", err)
	}
	if err := o.check(o.answer(t, "GET", "/global/block/{block_id}/hash", -1), null, "$"); err == nil {
		t.Error("null block hash accepted")
	}
}

// Every answer the node serves has the shape octez's OpenAPI document
// gives it, but for the documented deviations; errors are octez's error
// trace.
func TestAnswersMatchOctezOpenAPI(t *testing.T) {
	o := loadOpenAPI(t)
	l1 := startSandbox(t)
	n := startNode(t, testConfig(t, l1, t.TempDir()))
	defer n.stop()

	// expect checks one answer against the schema of its RPC. It also
	// notes the deviations the answer needs (without which it would not
	// conform): each must show in some answer, else it is stale and goes.
	shown := map[int]bool{}
	defer func() {
		for i, d := range deviations {
			if !shown[i] {
				t.Errorf("deviation %s %q (%s) no longer shows: remove it from the list and from docs/rollup-node.md", d.rpc, d.field, d.reason)
			}
		}
	}()
	expect := func(method, rpc, path string, v any) {
		t.Helper()
		if err := o.check(o.answer(t, method, rpc, -1), v, "$"); err != nil {
			t.Errorf("%s %s (%s): %v", method, path, rpc, err)
		}
		for i, d := range deviations {
			if d.rpc == rpc && o.check(o.answer(t, method, rpc, i), v, "$") != nil {
				shown[i] = true
			}
		}
	}
	fetch := func(rpc, path string) any {
		t.Helper()
		var v any
		if code := get(t, n.url+path, &v); code != http.StatusOK {
			t.Fatalf("GET %s: %d %v", path, code, v)
		}
		expect("GET", rpc, path, v)
		return v
	}

	// 40 messages of 1,000 bytes take two operations: the first 31 are
	// injected at once, the rest wait in the queue (pending_batch) until
	// the first operation is included.
	var msgs []string
	for i := range 40 {
		msgs = append(msgs, hex.EncodeToString(fmt.Appendf(nil, "%-1000d", i)))
	}
	var ids any
	if code := post(t, n.url+"/local/batcher/injection?drop_duplicate=false", msgs, &ids); code != http.StatusOK {
		t.Fatalf("injection: %d %v", code, ids)
	}
	expect("POST", "/local/batcher/injection", "/local/batcher/injection", ids)
	first, last := ids.([]any)[0].(string), ids.([]any)[39].(string)
	fetch("/local/batcher/queue", "/local/batcher/queue")

	// Follow the first and the last message to inclusion, checking each
	// status the first time it shows.
	statusRPC := "/local/batcher/queue/{l2_message_id}"
	seen := map[string]bool{}
	var included map[string]any
	waitFor(t, "both messages included", 40*time.Second, func() bool {
		done := 0
		for _, id := range []string{first, last} {
			var st map[string]any
			get(t, n.url+"/local/batcher/queue/"+id, &st)
			s, _ := st["status"].(string)
			if !seen[s] {
				seen[s] = true
				expect("GET", statusRPC, "/local/batcher/queue/"+id, st)
				if s == "pending_batch" { // the queue holds the tail
					if q := fetch("/local/batcher/queue", "/local/batcher/queue"); len(q.([]any)) == 0 {
						t.Errorf("%s is pending_batch, but the queue is empty", id)
					}
				}
			}
			if s == "included" {
				done++
				included = st
			}
		}
		return done == 2
	})
	fetch(statusRPC, "/local/batcher/queue/scmsgUnknownUnknownUnknownUnknownUnknown")
	seen["unknown"] = true
	for _, s := range []string{"unknown", "pending_batch", "injected", "included"} {
		if !seen[s] {
			t.Errorf("status %s never seen (seen: %v)", s, seen)
		}
	}

	level := int(included["layer1"].(map[string]any)["level"].(float64))
	hash := included["layer1"].(map[string]any)["block_hash"].(string)
	waitFor(t, "a level past the inclusion", 20*time.Second, func() bool { return int(n.n.Head()) > level })
	fetch("/global/smart_rollup_address", "/global/smart_rollup_address")
	fetch("/global/tezos_level", "/global/tezos_level")
	fetch("/global/tezos_head", "/global/tezos_head")
	for _, id := range []string{"head", "finalized", fmt.Sprint(level), hash} {
		fetch("/global/block/{block_id}", "/global/block/"+id+"?outbox=true")
	}
	for _, f := range []string{"level", "hash", "state_hash", "status", "num_messages", "outbox"} {
		fetch("/global/block/{block_id}/"+f, fmt.Sprintf("/global/block/%d/%s", level, f))
	}
	// A level's outbox, read at a later block: through ?outbox_level= and
	// through /outbox/{level}/messages, it is the level's own; read at an
	// earlier block, it does not exist yet.
	own := fetch("/global/block/{block_id}/outbox", fmt.Sprintf("/global/block/%d/outbox", level))
	if len(own.([]any)) == 0 {
		t.Errorf("level %d's outbox is empty: the echo kernel writes every input to it", level)
	}
	for _, path := range []string{
		fmt.Sprintf("/global/block/head/outbox?outbox_level=%d", level),
		fmt.Sprintf("/global/block/head/outbox/%d/messages", level),
	} {
		rpc := "/global/block/{block_id}/outbox"
		if strings.HasSuffix(path, "/messages") {
			rpc = "/global/block/{block_id}/outbox/{level}/messages"
		}
		if got := fetch(rpc, path); describe(got) != describe(own) {
			t.Errorf("GET %s: %s, want level %d's outbox %s", path, describe(got), level, describe(own))
		}
	}
	early := fetch("/global/block/{block_id}/outbox/{level}/messages", fmt.Sprintf("/global/block/%d/outbox/%d/messages", level-1, level))
	if len(early.([]any)) != 0 {
		t.Errorf("level %d's outbox read at level %d: %s, want []", level, level-1, describe(early))
	}
	for _, key := range []string{"/counter", "/no/such/key"} {
		for _, f := range []string{"value", "length", "subkeys", "values"} {
			fetch("/global/block/{block_id}/durable/wasm_2_0_0/"+f, "/global/block/head/durable/wasm_2_0_0/"+f+"?key="+key)
		}
	}
	fetch("/global/block/{block_id}/durable/wasm_2_0_0/subkeys", "/global/block/head/durable/wasm_2_0_0/subkeys?key=/kernel")
	fetch("/global/block/{block_id}/durable/wasm_2_0_0/values", "/global/block/head/durable/wasm_2_0_0/values?key=/kernel")
	fetch("/health", "/health")
	fetch("/version", "/version")
	fetch("/local/synchronized", "/local/synchronized")

	// monitor_blocks streams L2 blocks; the first is the head's.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.url+"/global/monitor_blocks", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadBytes('\n')
	resp.Body.Close()
	var blk any
	if err != nil || json.Unmarshal(line, &blk) != nil {
		t.Fatalf("monitor_blocks: %v: %q", err, line)
	}
	expect("GET", "/global/monitor_blocks", "/global/monitor_blocks", blk)

	// Errors are octez's error trace, whatever went wrong.
	errs := []struct{ method, path, body string }{
		{"POST", "/local/batcher/injection?drop_duplicate=false", "{"},
		{"POST", "/local/batcher/injection?drop_duplicate=false", `["zz"]`},
		{"GET", "/global/block/999999", ""},
		{"GET", "/global/block/999999/state_hash", ""},
		{"GET", "/global/block/BLnoSuchBlock/hash", ""},
		{"GET", "/global/block/head/outbox/x/messages", ""},
		{"GET", "/global/block/1/durable/wasm_2_0_0/value?key=/counter", ""},
		{"GET", "/global/no/such/rpc", ""},
		{"PUT", "/global/tezos_level", ""},
	}
	for _, e := range errs {
		var v any
		var code int
		if e.method == "POST" {
			code = post(t, n.url+e.path, e.body, &v)
		} else {
			req, _ := http.NewRequest(e.method, n.url+e.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			code = resp.StatusCode
			err = json.NewDecoder(resp.Body).Decode(&v)
			resp.Body.Close()
			if err != nil {
				t.Errorf("%s %s: %d, not JSON: %v", e.method, e.path, code, err)
				continue
			}
		}
		if err := o.check(errorTrace, v, "$"); err != nil || code < 400 || len(v.([]any)) == 0 {
			t.Errorf("%s %s: %d %v, want a 4xx error trace (%v)", e.method, e.path, code, v, err)
		}
	}
}

// Before its first level (here: no L1 to follow), the node answers null
// for its L1 head, as octez does, and its other answers keep their shape.
func TestAnswersBeforeTheFirstLevel(t *testing.T) {
	o := loadOpenAPI(t)
	n := startNode(t, testConfig(t, "http://127.0.0.1:1", t.TempDir()))
	defer n.stop()
	for _, rpc := range []string{"/global/tezos_level", "/global/tezos_head", "/health", "/local/synchronized", "/local/batcher/queue", "/version"} {
		var v any
		if code := get(t, n.url+rpc, &v); code != http.StatusOK {
			t.Fatalf("GET %s: %d %v", rpc, code, v)
		}
		if err := o.check(o.answer(t, "GET", rpc, -1), v, "$"); err != nil {
			t.Errorf("GET %s: %v", rpc, err)
		}
		if (rpc == "/global/tezos_level" || rpc == "/global/tezos_head") && v != nil {
			t.Errorf("GET %s: %v, want null", rpc, v)
		}
	}
}
