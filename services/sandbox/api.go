package sandbox

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tezos-dsn/dsn/internal/tezos"
)

// RPCError is one error of an octez-style error body: a 400 or 404 answers
// a JSON array of them, e.g.
// [{"kind":"permanent","id":"proto.alpha.contract.counter_in_the_past","msg":"…"}].
// Kind is octez's error class: permanent, temporary or branch (the
// operation may become valid on another branch, e.g. a counter already
// used or an outdated branch). The IDs are the ID… constants.
type RPCError struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
	Msg  string `json:"msg"`
}

func (e *RPCError) Error() string { return e.ID + ": " + e.Msg }

// BlockHeader is the answer of GET /chains/main/blocks/{id}/header and one
// element of GET /monitor/heads/main: a subset of octez's header.
type BlockHeader struct {
	Level       int64  `json:"level"`
	Hash        string `json:"hash"`        // B…
	Predecessor string `json:"predecessor"` // B…; genesis is its own predecessor
	Timestamp   string `json:"timestamp"`   // RFC 3339, UTC, whole seconds
}

// Inbox is the answer of GET /dsn/inbox/{level}: what the rollup inbox
// gets at that level. Timestamps are unix seconds; PredecessorTimestamp is
// what the InfoPerLevel message carries.
type Inbox struct {
	Level                int64            `json:"level"`
	Hash                 string           `json:"hash"`
	Predecessor          string           `json:"predecessor"`
	Timestamp            int64            `json:"timestamp"`
	PredecessorTimestamp int64            `json:"predecessor_timestamp"`
	Operations           []InboxOperation `json:"operations"`
}

// InboxOperation is one add_messages operation of an Inbox, in block order.
type InboxOperation struct {
	Hash     string   `json:"hash"`     // o…
	Source   string   `json:"source"`   // tz1…
	Messages []string `json:"messages"` // hex of each raw message, in order
}

// Health is the answer of GET /health.
type Health struct {
	Healthy bool  `json:"healthy"`
	Level   int64 `json:"level"`
}

// maxInjectionBody bounds an injection request: the hex of the largest
// operation, its quotes and some whitespace. Larger bodies are oversized
// operations anyway.
const maxInjectionBody = 2*tezos.MaxOperationSize + 1024

// Handler returns the RPC handler (octez paths where octez has them).
func (s *Sandbox) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /chains/main/blocks/{id}/header", s.handleHeader)
	mux.HandleFunc("GET /chains/main/blocks/{id}/hash", s.handleHash)
	mux.HandleFunc("GET /chains/main/blocks/{id}/context/contracts/{contract}/counter", s.handleCounter)
	mux.HandleFunc("GET /monitor/heads/main", s.handleMonitorHeads)
	mux.HandleFunc("POST /injection/operation", s.handleInject)
	mux.HandleFunc("GET /dsn/inbox/{level}", s.handleInbox)
	mux.HandleFunc("GET /health", s.handleHealth)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		defer s.requests.Done()
		mux.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, e *RPCError) {
	writeJSON(w, code, []*RPCError{e})
}

func notFound(w http.ResponseWriter, format string, args ...any) {
	writeError(w, http.StatusNotFound, &RPCError{Kind: "permanent", ID: IDNotFound, Msg: fmt.Sprintf(format, args...)})
}

func badRequest(w http.ResponseWriter, format string, args ...any) {
	writeError(w, http.StatusBadRequest, &RPCError{Kind: "permanent", ID: IDFailure, Msg: fmt.Sprintf(format, args...)})
}

func internalError(w http.ResponseWriter, err error) {
	writeError(w, http.StatusInternalServerError, &RPCError{Kind: "temporary", ID: IDFailure, Msg: err.Error()})
}

func header(b *block) BlockHeader {
	return BlockHeader{
		Level: b.level, Hash: tezos.EncodeBlockHash(b.hash), Predecessor: tezos.EncodeBlockHash(b.predecessor),
		Timestamp: time.Unix(b.timestamp, 0).UTC().Format(time.RFC3339),
	}
}

// errBadBlockID reports a block id that is none of the accepted forms.
var errBadBlockID = errors.New("sandbox: bad block id")

// resolve finds a block by octez block id: head, genesis, head~N, a level
// or a B… hash. ok is false when the id is well formed but names no block.
func (s *Sandbox) resolve(id string) (*block, bool, error) {
	head, _ := s.headBlock()
	switch {
	case id == "head":
		return head, true, nil
	case id == "genesis":
		return s.blockAt(0)
	case strings.HasPrefix(id, "head~"):
		n, err := strconv.ParseInt(id[len("head~"):], 10, 64)
		if err != nil || n < 0 {
			return nil, false, fmt.Errorf("%w: %q", errBadBlockID, id)
		}
		return s.blockAt(head.level - n)
	case strings.HasPrefix(id, "B"):
		h, err := tezos.ParseBlockHash(id)
		if err != nil {
			return nil, false, fmt.Errorf("%w: %w", errBadBlockID, err)
		}
		l, ok, err := s.store.levelOf(h)
		if err != nil || !ok {
			return nil, false, err
		}
		return s.blockAt(l)
	}
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %q", errBadBlockID, id)
	}
	return s.blockAt(n)
}

// block answers the lookup of r's {id}, or writes the error and returns nil.
func (s *Sandbox) block(w http.ResponseWriter, r *http.Request) *block {
	id := r.PathValue("id")
	b, ok, err := s.resolve(id)
	switch {
	case errors.Is(err, errBadBlockID):
		badRequest(w, "cannot parse block identifier %q", id)
	case err != nil:
		internalError(w, err)
	case !ok:
		notFound(w, "block %s not found", id)
	default:
		return b
	}
	return nil
}

func (s *Sandbox) handleHeader(w http.ResponseWriter, r *http.Request) {
	if b := s.block(w, r); b != nil {
		writeJSON(w, http.StatusOK, header(b))
	}
}

func (s *Sandbox) handleHash(w http.ResponseWriter, r *http.Request) {
	if b := s.block(w, r); b != nil {
		writeJSON(w, http.StatusOK, tezos.EncodeBlockHash(b.hash))
	}
}

// handleCounter answers the applied counter at the head, as a decimal
// string. Only "head" is served: counters are not kept per level.
func (s *Sandbox) handleCounter(w http.ResponseWriter, r *http.Request) {
	if id := r.PathValue("id"); id != "head" {
		notFound(w, "counters are only served at head, not at %s", id)
		return
	}
	src, err := tezos.ParseTz1(r.PathValue("contract"))
	if err != nil {
		badRequest(w, "%v", err)
		return
	}
	s.mu.Lock()
	_, known := s.chain.accounts[src]
	c := s.chain.counter(src)
	s.mu.Unlock()
	if !known {
		notFound(w, "contract %s is not a sandbox account", r.PathValue("contract"))
		return
	}
	writeJSON(w, http.StatusOK, strconv.FormatUint(c, 10))
}

// handleMonitorHeads streams the current head, then every later level in
// order (none skipped), one JSON object and a newline per chunk.
func (s *Sandbox) handleMonitorHeads(w http.ResponseWriter, r *http.Request) {
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w) // Encode ends each value with "\n"
	next := int64(-1)
	for {
		head, changed := s.headBlock()
		if next < 0 {
			next = head.level
		}
		for ; next <= head.level; next++ {
			b := head
			if next != head.level {
				var ok bool
				var err error
				if b, ok, err = s.blockAt(next); err != nil || !ok {
					return // the store is closing
				}
			}
			if err := enc.Encode(header(b)); err != nil {
				return // the client went away
			}
		}
		if flusher != nil {
			flusher.Flush()
		}
		select {
		case <-changed:
		case <-r.Context().Done():
			return
		case <-s.stopped:
			return
		}
	}
}

// handleInject takes a JSON string of the hex of an operation's bytes and
// answers its "o…" hash, or 400 with the rejection.
func (s *Sandbox) handleInject(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxInjectionBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.reject(w, &RPCError{Kind: "permanent", ID: IDOversized,
				Msg: fmt.Sprintf("Oversized operation (size: more than %d, max: %d)", tezos.MaxOperationSize, tezos.MaxOperationSize)})
			return
		}
		badRequest(w, "read body: %v", err)
		return
	}
	var hexOp string
	if err := json.Unmarshal(body, &hexOp); err != nil {
		s.reject(w, &RPCError{Kind: "permanent", ID: IDParseError, Msg: "body is not a JSON string of hex: " + err.Error()})
		return
	}
	raw, err := hex.DecodeString(hexOp)
	if err != nil {
		s.reject(w, &RPCError{Kind: "permanent", ID: IDParseError, Msg: "operation is not hex: " + err.Error()})
		return
	}
	h, err := s.Inject(raw)
	if err != nil {
		var e *RPCError
		if errors.As(err, &e) {
			writeError(w, http.StatusBadRequest, e)
			return
		}
		internalError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, tezos.EncodeOperationHash(h))
}

// reject answers a request refused before it reached the chain, counted
// and logged like the chain's own rejections.
func (s *Sandbox) reject(w http.ResponseWriter, e *RPCError) {
	s.metrics.rejected.WithLabelValues(e.ID).Inc()
	s.log.Info("operation rejected", "id", e.ID, "msg", e.Msg)
	writeError(w, http.StatusBadRequest, e)
}

func (s *Sandbox) handleInbox(w http.ResponseWriter, r *http.Request) {
	level, err := strconv.ParseInt(r.PathValue("level"), 10, 64)
	if err != nil || level < 0 {
		badRequest(w, "level %q is not a natural number", r.PathValue("level"))
		return
	}
	b, ok, err := s.blockAt(level)
	if err != nil {
		internalError(w, err)
		return
	}
	if !ok {
		notFound(w, "level %d is not baked yet", level)
		return
	}
	predTS := b.timestamp
	if level > 0 {
		p, ok, err := s.blockAt(level - 1)
		if err != nil || !ok {
			internalError(w, fmt.Errorf("predecessor of level %d: %w", level, errors.Join(err, errCorrupt)))
			return
		}
		predTS = p.timestamp
	}
	in := Inbox{
		Level: b.level, Hash: tezos.EncodeBlockHash(b.hash), Predecessor: tezos.EncodeBlockHash(b.predecessor),
		Timestamp: b.timestamp, PredecessorTimestamp: predTS, Operations: []InboxOperation{},
	}
	for _, op := range b.ops {
		o := InboxOperation{Hash: tezos.EncodeOperationHash(op.Hash()), Source: tezos.EncodeTz1(op.Contents.Source)}
		for _, m := range op.Contents.Messages {
			o.Messages = append(o.Messages, hex.EncodeToString(m))
		}
		in.Operations = append(in.Operations, o)
	}
	writeJSON(w, http.StatusOK, in)
}

func (s *Sandbox) handleHealth(w http.ResponseWriter, _ *http.Request) {
	head, _ := s.headBlock()
	writeJSON(w, http.StatusOK, Health{Healthy: true, Level: head.level})
}
