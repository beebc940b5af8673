package sandbox

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tezos-dsn/dsn/internal/prom"
)

// metrics are the sandbox's Prometheus series (GET /metrics), on a registry
// of its own (tests run several sandboxes in one process).
type metrics struct {
	reg                       *prom.Registry
	baked, included, outdated prometheus.Counter
	rejected                  *prometheus.CounterVec
}

func newMetrics(s *Sandbox) *metrics {
	reg := prom.NewRegistry("dsn_sandbox")
	c := reg.Counter
	m := &metrics{
		reg:      reg,
		baked:    c("levels_baked_total", "Levels baked by this process."),
		included: c("operations_included_total", "Operations included in baked levels."),
		outdated: c("operations_outdated_total", "Mempool operations dropped because their branch left the live window."),
		rejected: reg.CounterVec("operations_rejected_total", "Injected operations refused, by error id.", "reason"),
	}
	gauge := reg.GaugeFunc
	gauge("head_level", "Level of the head.", func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return float64(s.chain.head.level)
	})
	gauge("mempool_operations", "Operations waiting in the mempool.", func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return float64(len(s.chain.mempool))
	})
	return m
}
