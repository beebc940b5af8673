package rollupnode

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tezos-dsn/dsn/internal/tezos"
)

// Handler serves the RPC: octez-smart-rollup-node's paths and JSON shapes
// (reference/octez/smart-rollup-node-openapi.json) for the subset in
// docs/rollup-node.md. Errors come as octez's error trace:
// [{"kind":"permanent","id":…,"msg":…}].
func (n *Node) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /global/smart_rollup_address", func(w http.ResponseWriter, r *http.Request) {
		reply(w, n.cfg.Rollup)
	})
	// Before its first level, the node knows no L1 head: octez answers
	// null (not an error) to both.
	mux.HandleFunc("GET /global/tezos_level", func(w http.ResponseWriter, r *http.Request) {
		if rec, ok, _ := n.readRecord(n.Head()); ok {
			reply(w, rec.Level)
			return
		}
		reply(w, nil)
	})
	mux.HandleFunc("GET /global/tezos_head", func(w http.ResponseWriter, r *http.Request) {
		if rec, ok, _ := n.readRecord(n.Head()); ok {
			reply(w, rec.Hash)
			return
		}
		reply(w, nil)
	})
	mux.HandleFunc("GET /global/block/{id}", func(w http.ResponseWriter, r *http.Request) {
		if rec, ok := n.block(w, r.PathValue("id")); ok {
			reply(w, l2Block(rec))
		}
	})
	field := func(name string, f func(*record) any) {
		mux.HandleFunc("GET /global/block/{id}/"+name, func(w http.ResponseWriter, r *http.Request) {
			if rec, ok := n.block(w, r.PathValue("id")); ok {
				reply(w, f(rec))
			}
		})
	}
	field("level", func(r *record) any { return r.Level })
	field("hash", func(r *record) any { return r.Hash })
	field("state_hash", func(r *record) any { return r.StateHash })
	field("status", func(r *record) any { return pvmStatus(r) })
	field("num_messages", func(r *record) any { return strconv.Itoa(len(r.Messages)) })
	// The outbox of a level as the state at block {id} holds it: the
	// block's own level by default (?outbox_level= picks another), and
	// nothing for a level after the block's.
	outboxAt := func(w http.ResponseWriter, id, level string) {
		blk, ok := n.block(w, id)
		if !ok {
			return
		}
		lv := uint64(blk.Level)
		if level != "" {
			var err error
			if lv, err = strconv.ParseUint(level, 10, 32); err != nil {
				n.fail(w, http.StatusBadRequest, "invalid_outbox_level", "outbox level "+strconv.Quote(level)+" is not a level")
				return
			}
		}
		rec, ok, err := n.readRecord(uint32(lv))
		if err != nil || !ok || rec.Level > blk.Level {
			reply(w, []outboxMessage{})
			return
		}
		reply(w, outbox(rec))
	}
	mux.HandleFunc("GET /global/block/{id}/outbox", func(w http.ResponseWriter, r *http.Request) {
		outboxAt(w, r.PathValue("id"), r.URL.Query().Get("outbox_level"))
	})
	mux.HandleFunc("GET /global/block/{id}/outbox/{level}/messages", func(w http.ResponseWriter, r *http.Request) {
		outboxAt(w, r.PathValue("id"), r.PathValue("level"))
	})
	durable := func(name string, f func(path string) any) {
		mux.HandleFunc("GET /global/block/{id}/durable/wasm_2_0_0/"+name, func(w http.ResponseWriter, r *http.Request) {
			key := r.URL.Query().Get("key")
			if !r.URL.Query().Has("key") {
				n.fail(w, http.StatusBadRequest, "missing_key", "the query parameter key is required")
				return
			}
			// Under the lock, so that the state read is the level checked.
			n.mu.RLock()
			defer n.mu.RUnlock()
			if !n.atHead(w, r.PathValue("id")) {
				return
			}
			reply(w, f(key))
		})
	}
	durable("value", func(key string) any {
		if v, ok := n.durable.Get(key); ok {
			return hex.EncodeToString(v)
		}
		return nil
	})
	durable("length", func(key string) any {
		if v, ok := n.durable.Get(key); ok {
			return strconv.Itoa(len(v))
		}
		return nil
	})
	durable("subkeys", func(key string) any {
		keys, _ := n.durable.Subkeys(key)
		if keys == nil {
			keys = []string{}
		}
		return keys
	})
	durable("values", func(key string) any {
		out := []keyValue{}
		keys, _ := n.durable.Subkeys(key)
		for _, k := range keys {
			if v, ok := n.durable.Get(key + "/" + k); ok {
				out = append(out, keyValue{Key: k, Value: hex.EncodeToString(v)})
			}
		}
		return out
	})
	mux.HandleFunc("POST /local/batcher/injection", n.handleInjection)
	mux.HandleFunc("GET /local/batcher/queue", func(w http.ResponseWriter, r *http.Request) {
		reply(w, n.batcher.queued())
	})
	mux.HandleFunc("GET /local/batcher/queue/{id}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, n.batcher.status(r.PathValue("id")))
	})
	mux.HandleFunc("GET /global/monitor_blocks", n.handleMonitor)
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		reply(w, n.health())
	})
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]string{"version": Version, "store_version": "dsn-1", "context_version": "dsn-durable-1"})
	})
	mux.HandleFunc("GET /local/synchronized", func(w http.ResponseWriter, r *http.Request) {
		n.l1mu.Lock()
		l1 := n.l1Head.Level
		n.l1mu.Unlock()
		head := n.Head()
		if head >= l1 {
			reply(w, "synchronized")
			return
		}
		reply(w, map[string]any{"synchronizing": map[string]any{"processed_level": head, "l1_head_level": l1,
			"percentage_done": 100 * float64(head) / float64(max(l1, 1))}})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		n.fail(w, http.StatusNotFound, "rpc.not_found", fmt.Sprintf("no service %s %s", r.Method, r.URL.Path))
	})
	return mux
}

type keyValue struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// rpcError is one error of octez's error trace.
type rpcError struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
	Msg  string `json:"msg"`
}

func (n *Node) fail(w http.ResponseWriter, code int, id, msg string) {
	if code < 500 {
		n.m.badRPC.Inc()
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode([]rpcError{{Kind: "permanent", ID: id, Msg: msg}})
}

// resolve turns a block id (head, finalized, cemented, a level or a
// B… hash) into a level.
func (n *Node) resolve(id string) (uint32, error) { return n.resolveAt(id, n.Head()) }

// resolveAt is resolve with the head given (by a caller holding n.mu).
func (n *Node) resolveAt(id string, head uint32) (uint32, error) {
	switch id {
	case "head", "finalized":
		// The sandbox has no forks: the head is final.
		return head, nil
	case "cemented":
		return 0, fmt.Errorf("no commitments are cemented by this node")
	}
	if strings.HasPrefix(id, "B") {
		if lv, ok := n.levelOfHash(id); ok {
			return lv, nil
		}
		return 0, fmt.Errorf("unknown block %s", id)
	}
	lv, err := strconv.ParseUint(id, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("block id %q is not head, finalized, cemented, a level or a block hash", id)
	}
	return uint32(lv), nil
}

func (n *Node) block(w http.ResponseWriter, id string) (*record, bool) {
	lv, err := n.resolve(id)
	if err != nil {
		n.fail(w, http.StatusNotFound, "sc_rollup.node.unknown_block", err.Error())
		return nil, false
	}
	rec, ok, err := n.readRecord(lv)
	if err != nil {
		n.fail(w, http.StatusInternalServerError, "sc_rollup.node.storage", err.Error())
		return nil, false
	}
	if !ok {
		n.fail(w, http.StatusNotFound, "sc_rollup.node.unknown_block", fmt.Sprintf("level %d is not processed", lv))
		return nil, false
	}
	return rec, true
}

// atHead accepts only block ids that name the last processed level: the
// node keeps the durable state of that level alone. The caller holds n.mu.
func (n *Node) atHead(w http.ResponseWriter, id string) bool {
	lv, err := n.resolveAt(id, n.head)
	if err != nil {
		n.fail(w, http.StatusNotFound, "sc_rollup.node.unknown_block", err.Error())
		return false
	}
	if lv != n.head {
		n.fail(w, http.StatusNotFound, "sc_rollup.node.state_not_kept",
			fmt.Sprintf("the durable state of level %d is not kept (only the head's, level %d)", lv, n.head))
		return false
	}
	return true
}

func pvmStatus(r *record) string {
	if r.Stuck != "" {
		return "Stuck: " + r.Stuck
	}
	return "Waiting for input message"
}

// l2Block is octez's L2 block object (GET /global/block/{id}), with the
// fields this node can give truthfully. There are no commitments yet:
// commitment_hash is null and previous_commitment_hash the zero hash, as
// octez shows before the first commitment. Left out (docs/rollup-node.md):
// inbox, inbox_hash and inbox_witness (the L1 protocol's inbox Merkle
// structure, which the sandbox does not build) and initial_tick/num_ticks
// (no tick metering yet: the deterministic PVM issue).
func l2Block(r *record) map[string]any {
	msgs := r.Messages
	if msgs == nil {
		msgs = []string{}
	}
	return map[string]any{
		"block_hash":               r.Hash,
		"level":                    r.Level,
		"predecessor":              r.Predecessor,
		"commitment_hash":          nil,
		"previous_commitment_hash": tezos.Base58CheckEncode([]byte{0x11, 0xa5, 0x86, 0x8a}, make([]byte, 32)),
		"messages":                 msgs,
		"state_hash":               r.StateHash,
		"pvm_status":               pvmStatus(r),
	}
}

// outboxMessage is one entry of /outbox/{level}/messages. The message is
// given as the kernel wrote it (hex); octez decodes it as Michelson.
type outboxMessage struct {
	OutboxLevel  uint32 `json:"outbox_level"`
	MessageIndex string `json:"message_index"`
	Message      string `json:"message"`
}

func outbox(r *record) []outboxMessage {
	out := []outboxMessage{}
	for i, m := range r.Outbox {
		out = append(out, outboxMessage{OutboxLevel: r.Level, MessageIndex: strconv.Itoa(i), Message: m})
	}
	return out
}

func hexs(b []byte) string { return hex.EncodeToString(b) }

func (n *Node) health() map[string]any {
	n.l1mu.Lock()
	conn, l1, seen := n.l1Conn, n.l1Head, n.l1Seen
	n.l1mu.Unlock()
	late := 0
	if seen {
		late = int(l1.Level) - int(n.Head())
	}
	h := map[string]any{
		"healthy":        seen && conn == "connected",
		"degraded":       late > 2,
		"l1":             map[string]any{"connection": conn, "blocks_late": late},
		"active_workers": [][]string{{"follower", "running"}, {"batcher", "running"}},
	}
	if seen {
		h["l1"].(map[string]any)["last_seen_head"] = map[string]any{"hash": l1.Hash, "level": l1.Level, "timestamp": l1.Timestamp}
	}
	return h
}

// handleInjection is POST /local/batcher/injection?drop_duplicate=bool:
// a JSON list of hex messages (raw external payloads, without the 0x01
// tag) → their ids.
func (n *Node) handleInjection(w http.ResponseWriter, r *http.Request) {
	dd := r.URL.Query().Get("drop_duplicate")
	drop := dd == "true"
	if dd != "" && dd != "true" && dd != "false" {
		n.fail(w, http.StatusBadRequest, "invalid_drop_duplicate", "drop_duplicate must be true or false")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 16<<20))
	if err != nil {
		n.fail(w, http.StatusRequestEntityTooLarge, "body_too_large", "request body over 16 MiB")
		return
	}
	var hexes []string
	if err := json.Unmarshal(body, &hexes); err != nil {
		n.fail(w, http.StatusBadRequest, "invalid_json", "body must be a JSON list of hex strings: "+err.Error())
		return
	}
	msgs := make([][]byte, len(hexes))
	for i, h := range hexes {
		if msgs[i], err = hex.DecodeString(h); err != nil {
			n.fail(w, http.StatusBadRequest, "invalid_hex", fmt.Sprintf("message %d is not hex", i))
			return
		}
	}
	ids, err := n.batcher.inject(msgs, drop)
	switch {
	case err == ErrNoBatcher:
		n.fail(w, http.StatusForbidden, "sc_rollup.node.no_batcher", err.Error())
	case err != nil:
		n.fail(w, http.StatusBadRequest, "sc_rollup.node.batcher.l2_message_too_large", err.Error())
	default:
		reply(w, ids)
	}
}

// handleMonitor is GET /global/monitor_blocks: a chunked stream of L2
// block objects, one per processed level.
func (n *Node) handleMonitor(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		n.fail(w, http.StatusInternalServerError, "stream", "streaming unsupported")
		return
	}
	ch := n.subscribe()
	defer n.unsubscribe(ch)
	w.Header().Set("Content-Type", "application/json")
	if rec, ok, _ := n.readRecord(n.Head()); ok {
		b, _ := json.Marshal(l2Block(rec))
		w.Write(append(b, '\n'))
	}
	fl.Flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case b, ok := <-ch:
			if !ok {
				return
			}
			if _, err := w.Write(append(b, '\n')); err != nil {
				return
			}
			fl.Flush()
		}
	}
}
