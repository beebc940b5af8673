package sequencer

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tezos-dsn/dsn/internal/prom"
)

// metrics are the sequencer's Prometheus series (GET /metrics).
type metrics struct {
	reg                             *prom.Registry
	accepted, ordered, unavailable  prometheus.Counter
	verified, mismatches            prometheus.Counter
	posted, postedMsgs, postedBytes prometheus.Counter
	turnsTaken                      prometheus.Counter
	postErrors, reposts             prometheus.Counter
	rejected                        *prometheus.CounterVec
}

func newMetrics(s *Sequencer) *metrics {
	reg := prom.NewRegistry("dsn_sequencer")
	c := reg.Counter
	m := &metrics{
		reg:         reg,
		accepted:    c("transactions_accepted_total", "Transactions a node acknowledged."),
		ordered:     c("transactions_ordered_total", "Tracked transactions seen in a committed pre-block."),
		unavailable: c("submissions_unavailable_total", "Submissions no node acknowledged (answered 503)."),
		verified:    c("transactions_verified_total", "Tracked transactions found in the kernel's blocks."),
		mismatches:  c("verification_mismatches_total", "Tracked transactions whose place in the kernel's block differs from the pre-block's (never expected)."),
		posted:      c("certificates_posted_total", "Certificates posted to the rollup node."),
		postedMsgs:  c("messages_posted_total", "Inbox messages (DA chunks) posted to the rollup node."),
		postedBytes: c("posted_bytes_total", "Bytes of the inbox messages posted to the rollup node."),
		postErrors:  c("post_errors_total", "Posts the rollup node refused or that failed (retried)."),
		reposts:     c("reposts_total", "Times posting restarted from the rollup's DAG because it stalled."),
		turnsTaken:  c("turn_certificates_taken_total", "Certificates of another sequencer's turn posted because it was late."),
		rejected:    reg.CounterVec("requests_rejected_total", "API requests answered with an error, by HTTP status.", "code"),
	}
	gauge := reg.GaugeFunc
	gauge("head", "Index of the last pre-block followed.", func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return float64(s.head)
	})
	gauge("tracked_transactions", "Transactions whose status is kept.", func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return float64(len(s.status))
	})
	gauge("nodes_up", "Consensus nodes that answered their last call.", func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		n := 0
		for _, u := range s.up {
			if u {
				n++
			}
		}
		return float64(n)
	})
	return m
}
