package sequencer

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/kernel/state"
)

// limiter is a token bucket per client address: Rate requests a second,
// bursts of Burst. Idle clients' buckets are dropped when the table grows.
type limiter struct {
	rate, burst float64
	mu          sync.Mutex
	buckets     map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// maxBuckets bounds the table; beyond it, buckets refilled to the full
// burst (idle clients) are dropped.
const maxBuckets = 100_000

func newLimiter(rate float64, burst int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), buckets: map[string]*bucket{}}
}

// allow takes a token from the client's bucket.
func (l *limiter) allow(client string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[client]
	if !ok {
		if len(l.buckets) >= maxBuckets {
			for k, x := range l.buckets {
				if x.tokens+now.Sub(x.at).Seconds()*l.rate >= l.burst {
					delete(l.buckets, k)
				}
			}
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[client] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// limited wraps an API handler with the per-client rate limit.
func (s *Sequencer) limited(h http.HandlerFunc) http.HandlerFunc {
	if s.cfg.RateLimit <= 0 {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		client, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			client = r.RemoteAddr
		}
		if !s.limit.allow(client, time.Now()) {
			w.Header().Set("Retry-After", "1")
			s.fail(w, http.StatusTooManyRequests, "too many requests: at most %g a second per client (bursts of %d)", s.cfg.RateLimit, s.cfg.RateBurst)
			return
		}
		h(w, r)
	}
}

// The rollup's view, read from the kernel's durable state through the
// rollup node: the head, a block, the committee.

type headView struct {
	Block        uint64 `json:"block"`         // the kernel's last block (0: none yet)
	Level        uint32 `json:"level"`         // the L1 level the rollup node processed
	OrderingHash string `json:"ordering_hash"` // BLAKE2b chain over every block record, hex
}

type blockView struct {
	Index           uint64   `json:"index"`
	Leader          string   `json:"leader"`           // the committed leader certificate's digest, hex
	CommitTimestamp uint64   `json:"commit_timestamp"` // the leader header's creation time (ms since the epoch)
	Transactions    []string `json:"transactions"`     // BLAKE2b-256 of each transaction (its id), in order
}

type authorityView struct {
	ID           int    `json:"id"`
	Name         string `json:"name"`
	Stake        uint64 `json:"stake"`
	ConsensusKey string `json:"consensus_key"` // ed25519, hex
	Address      string `json:"address"`
}

// noRollup answers the rollup-backed calls of a sequencer without one.
func (s *Sequencer) noRollup(w http.ResponseWriter) bool {
	if s.rollup == nil {
		s.fail(w, http.StatusNotFound, "this sequencer follows no rollup (start it with --rollup)")
		return true
	}
	return false
}

func (s *Sequencer) getHead(w http.ResponseWriter, r *http.Request) {
	if s.noRollup(w) {
		return
	}
	var v headView
	raw, ok, err := s.rollup.value(r.Context(), "/dsn/head")
	if err != nil {
		s.fail(w, http.StatusBadGateway, "rollup node: %v", err)
		return
	}
	if ok && len(raw) == 8 {
		v.Block = binary.BigEndian.Uint64(raw)
	}
	if h, ok, _ := s.rollup.value(r.Context(), "/dsn/ordering_hash"); ok {
		v.OrderingHash = hex.EncodeToString(h)
	}
	v.Level, _ = s.rollup.level(r.Context())
	writeJSON(w, http.StatusOK, v)
}

func (s *Sequencer) getBlock(w http.ResponseWriter, r *http.Request) {
	if s.noRollup(w) {
		return
	}
	n, err := strconv.ParseUint(r.PathValue("n"), 10, 64)
	if err != nil || n == 0 {
		s.fail(w, http.StatusBadRequest, "block: want a number from 1")
		return
	}
	raw, ok, err := s.rollup.value(r.Context(), "/dsn/blocks/"+strconv.FormatUint(n, 10))
	switch {
	case err != nil:
		s.fail(w, http.StatusBadGateway, "rollup node: %v", err)
		return
	case !ok:
		s.fail(w, http.StatusNotFound, "block %d is not in the rollup yet", n)
		return
	}
	b, _, err := state.ReadBlock(blockStore{raw}, 0)
	if err != nil {
		s.fail(w, http.StatusBadGateway, "rollup block %d: %v", n, err)
		return
	}
	v := blockView{Index: b.Index, Leader: hex.EncodeToString(b.Leader[:]), CommitTimestamp: b.CommitTimestamp, Transactions: []string{}}
	for _, d := range b.Transactions {
		v.Transactions = append(v.Transactions, hex.EncodeToString(d[:]))
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Sequencer) getAuthorities(w http.ResponseWriter, r *http.Request) {
	if s.noRollup(w) {
		return
	}
	raw, ok, err := s.rollup.value(r.Context(), "/dsn/committee")
	if err != nil || !ok {
		s.fail(w, http.StatusBadGateway, "rollup node: no committee in the rollup's state (%v)", err)
		return
	}
	c, err := narwhal.DecodeCommittee(raw)
	if err != nil {
		s.fail(w, http.StatusBadGateway, "the rollup's committee: %v", err)
		return
	}
	out := []authorityView{}
	for i, a := range c.Authorities {
		out = append(out, authorityView{ID: i, Name: a.Name, Stake: a.Stake, ConsensusKey: hex.EncodeToString(a.ConsensusKey[:]), Address: a.Address})
	}
	writeJSON(w, http.StatusOK, map[string]any{"epoch": c.Epoch, "authorities": out})
}

// Events: a server-sent-events stream of the tracked transactions'
// status changes ("ordered", "verified"), each event's data the status
// JSON of GET /v1/transactions/{id}.

// eventBuffer is how many events a subscriber may lag behind before it is
// dropped (its stream ends; it reconnects and reads statuses).
const eventBuffer = 4096

func (s *Sequencer) publishLocked(st *Status) {
	if len(s.subs) == 0 {
		return
	}
	b, _ := json.Marshal(st)
	ev := event{kind: st.Status, data: b}
	for ch := range s.subs {
		select {
		case ch <- ev:
		default:
			delete(s.subs, ch)
			close(ch)
		}
	}
}

type event struct {
	kind string
	data []byte
}

func (s *Sequencer) getEvents(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		s.fail(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	ch := make(chan event, eventBuffer)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if _, ok := s.subs[ch]; ok {
			delete(s.subs, ch)
			close(ch)
		}
		s.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": dsn sequencer events: ordered, verified\n\n")
	fl.Flush()
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keepalive.C:
			fmt.Fprint(w, ": keepalive\n\n")
			fl.Flush()
		case ev, ok := <-ch:
			if !ok {
				return // too slow: dropped
			}
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.kind, ev.data)
			fl.Flush()
		}
	}
}
