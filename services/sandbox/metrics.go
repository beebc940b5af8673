package sandbox

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the sandbox's Prometheus series (GET /metrics), on a registry
// of its own (tests run several sandboxes in one process).
type metrics struct {
	reg                       *prometheus.Registry
	baked, included, outdated prometheus.Counter
	rejected                  *prometheus.CounterVec
}

func newMetrics(s *Sandbox) *metrics {
	reg := prometheus.NewRegistry()
	c := func(name, help string) prometheus.Counter {
		x := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dsn_sandbox", Name: name, Help: help})
		reg.MustRegister(x)
		return x
	}
	m := &metrics{
		reg:      reg,
		baked:    c("levels_baked_total", "Levels baked by this process."),
		included: c("operations_included_total", "Operations included in baked levels."),
		outdated: c("operations_outdated_total", "Mempool operations dropped because their branch left the live window."),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dsn_sandbox", Name: "operations_rejected_total",
			Help: "Injected operations refused, by error id."}, []string{"reason"}),
	}
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "dsn_sandbox", Name: name, Help: help}, f))
	}
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
	reg.MustRegister(m.rejected, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
