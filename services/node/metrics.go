package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tezos-dsn/dsn/internal/prom"
)

// metrics are one node's Prometheus series, on a registry of its own (tests
// run several nodes in one process).
type metrics struct {
	reg *prom.Registry

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
	loopBatch, commitGroup               prometheus.Histogram
}

func newMetrics() *metrics {
	reg := prom.NewRegistry("dsn")
	g := reg.Gauge
	c := reg.Counter
	m := &metrics{
		reg:                reg,
		round:              g("round", "Round of the last header this node proposed."),
		dagRound:           g("dag_round", "Highest round with an accepted certificate."),
		gcRound:            g("gc_round", "Garbage-collection horizon."),
		committed:          g("committed_subdags", "Index of the last committed sub-DAG."),
		dagSize:            g("dag_certificates", "Certificates in memory (above the GC horizon)."),
		suspended:          g("suspended_certificates", "Certificates waiting for missing ancestors."),
		queue:              g("pending_digests", "Own sealed batch digests waiting for a header."),
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
		acked:              c("transactions_acked_total", "Transactions acknowledged (their batch committed)."),
		dropped:            reg.CounterVec("dropped_messages_total", "Outgoing messages dropped because a peer's queue was full.", "peer"),
		syncSeconds:        reg.Histogram("store_sync_seconds", "Latency of one store sync (it makes every write group so far durable).", prometheus.ExponentialBuckets(0.0001, 2, 16)),
		loopBatch:          reg.Histogram("loop_events_per_sync", "Events handled as one group by the event loop.", prometheus.ExponentialBuckets(1, 2, 10)),
		commitGroup:        reg.Histogram("groups_per_sync", "Groups of events made durable by one sync (group commit).", prometheus.ExponentialBuckets(1, 2, 8)),
	}
	return m
}
