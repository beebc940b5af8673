package rollupnode

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tezos-dsn/dsn/internal/prom"
)

// metrics are the rollup node's Prometheus series, on a registry of its own.
type metrics struct {
	reg                                 *prom.Registry
	level, l1Level, queued              prometheus.Gauge
	messages, stuck, l1Reconnects       prometheus.Counter
	slow                                prometheus.Counter
	injectedOps, includedOps            prometheus.Counter
	reinjected, injectionErrors, badRPC prometheus.Counter
	levelSeconds                        prometheus.Histogram
}

func newMetrics() *metrics {
	reg := prom.NewRegistry("dsn_rollup")
	g := reg.Gauge
	c := reg.Counter
	m := &metrics{
		reg:             reg,
		level:           g("level", "Last L1 level processed by the kernel."),
		l1Level:         g("l1_level", "Last L1 head seen."),
		queued:          g("batcher_queue", "Messages waiting in the batcher's queue."),
		messages:        c("inbox_messages_total", "External messages fed to the kernel."),
		stuck:           c("stuck_levels_total", "Levels at which the kernel got stuck."),
		slow:            c("slow_levels_total", "Levels whose kernel runs took longer than kernel_slow_level (wall time; an alert, never a verdict)."),
		l1Reconnects:    c("l1_reconnects_total", "Reconnections to the L1 heads monitor."),
		injectedOps:     c("batcher_operations_injected_total", "add_messages operations injected."),
		includedOps:     c("batcher_operations_included_total", "add_messages operations seen in a processed level."),
		reinjected:      c("batcher_operations_reinjected_total", "Operations whose messages went back to the queue."),
		injectionErrors: c("batcher_injection_errors_total", "Injections the L1 refused or that failed."),
		badRPC:          c("rpc_bad_requests_total", "RPC requests answered with a 4xx."),
		levelSeconds:    reg.Histogram("level_seconds", "Time to run one level through the kernel and commit it.", prometheus.ExponentialBuckets(0.001, 2, 16)),
	}
	return m
}
