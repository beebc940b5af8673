package node

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are one node's Prometheus series, on a registry of its own (tests
// run several nodes in one process).
type metrics struct {
	reg *prometheus.Registry

	round, dagRound, gcRound, committed  prometheus.Gauge
	dagSize, suspended, queue, inflight  prometheus.Gauge
	batchesSealed, batchesFromPeers      prometheus.Gauge
	batchesFetching, batchesMissing      prometheus.Gauge
	exportStreams, freeBytes             prometheus.Gauge
	exported, exportRefused              prometheus.Counter
	logSuppressed, handshakesRejected    prometheus.Counter
	messagesIn, messagesOut, badMessages prometheus.Counter
	bytesIn, bytesOut                    prometheus.Counter
	rejected                             prometheus.Counter
	dropped                              *prometheus.CounterVec
	transactions, acked                  prometheus.Counter
	syncSeconds                          prometheus.Histogram
	loopBatch                            prometheus.Histogram
}

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	g := func(name, help string) prometheus.Gauge {
		x := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "dsn", Name: name, Help: help})
		reg.MustRegister(x)
		return x
	}
	c := func(name, help string) prometheus.Counter {
		x := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dsn", Name: name, Help: help})
		reg.MustRegister(x)
		return x
	}
	m := &metrics{
		reg:                reg,
		round:              g("round", "Round of the last header this node proposed."),
		dagRound:           g("dag_round", "Highest round with an accepted certificate."),
		gcRound:            g("gc_round", "Garbage-collection horizon."),
		committed:          g("committed_subdags", "Index of the last committed sub-DAG."),
		dagSize:            g("dag_certificates", "Certificates in memory (above the GC horizon)."),
		suspended:          g("suspended_certificates", "Certificates waiting for missing ancestors."),
		queue:              g("pending_digests", "Own batch digests acknowledged and waiting for a header."),
		inflight:           g("uncommitted_own_headers", "Own certified headers not yet committed."),
		batchesSealed:      g("batches_sealed", "Batches sealed by this worker."),
		batchesFromPeers:   g("batches_from_peers", "Batches of other workers stored here."),
		batchesFetching:    g("batches_fetching", "Batches requested from peers and not stored yet."),
		batchesMissing:     g("committed_batches_missing", "Batches of committed certificates not stored yet (Export waits for them)."),
		exportStreams:      g("export_streams", "Export streams being served."),
		freeBytes:          g("data_dir_free_bytes", "Bytes free for the node in its data directory's filesystem (sampled every second)."),
		exported:           c("exported_preblocks_total", "Pre-blocks sent on Export streams."),
		exportRefused:      c("export_refused_total", "Export calls refused because max_export_streams were open."),
		handshakesRejected: c("handshakes_rejected_total", "Peer TLS handshakes refused (key not in the committee)."),
		logSuppressed:      c("log_lines_suppressed_total", "Log lines dropped by per-peer rate limiting."),
		messagesIn:         c("messages_in_total", "Node-to-node messages received."),
		messagesOut:        c("messages_out_total", "Node-to-node messages sent."),
		bytesIn:            c("bytes_in_total", "Node-to-node bytes received."),
		bytesOut:           c("bytes_out_total", "Node-to-node bytes sent."),
		badMessages:        c("bad_messages_total", "Messages that did not decode."),
		rejected:           c("rejected_messages_total", "Messages the protocol rejected (bad peer input)."),
		transactions:       c("transactions_total", "Transactions submitted."),
		acked:              c("transactions_acked_total", "Transactions acknowledged (stored on a quorum)."),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dsn", Name: "dropped_messages_total",
			Help: "Outgoing messages dropped because a peer's queue was full."}, []string{"peer"}),
		syncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "dsn", Name: "store_sync_seconds",
			Help: "Latency of one synced store batch.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		loopBatch: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "dsn", Name: "loop_events_per_sync",
			Help: "Events grouped into one synced write (group commit).", Buckets: prometheus.ExponentialBuckets(1, 2, 10)}),
	}
	reg.MustRegister(m.dropped, m.syncSeconds, m.loopBatch,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
