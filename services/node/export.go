package node

import (
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/bullshark"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/preblock"
	"github.com/tezos-dsn/dsn/internal/store"
)

// exportServer streams committed sub-DAGs (pre-blocks) in bounded parts
// (internal/preblock). Memory per stream: the pre-block's certificates, one
// batch and one part in flight (gRPC blocks Send once a stream has 64 KiB
// queued), whatever the pre-block's size. At most cfg.MaxExportStreams run
// at once.
type exportServer struct {
	dsnv1.UnimplementedExportServer
	n     *Node
	slots chan struct{}
}

func newExportServer(n *Node) *exportServer {
	return &exportServer{n: n, slots: make(chan struct{}, n.cfg.MaxExportStreams)}
}

// stalledLogEvery spaces the log lines of an Export waiting for batches.
const stalledLogEvery = 10 * time.Second

// Export replays pre-blocks from the store and then follows new commits;
// the same loop serves both, so the switch from history to live has no gap.
// A pre-block whose batches are still being fetched delays the stream,
// never skips: heartbeats, a log line and a metric say what it waits for.
func (s *exportServer) Export(req *dsnv1.ExportRequest, st dsnv1.Export_ExportServer) error {
	n := s.n
	if req.From == ^uint64(0) {
		return status.Error(codes.InvalidArgument, "from: no index follows 2^64-1")
	}
	select {
	case s.slots <- struct{}{}:
	default:
		n.metrics.exportRefused.Inc()
		return status.Errorf(codes.ResourceExhausted, "%d export streams already open; retry later or on another node", cap(s.slots))
	}
	defer func() { <-s.slots }()
	n.metrics.exportStreams.Inc()
	defer n.metrics.exportStreams.Dec()

	ctx := st.Context()
	next := req.From + 1
	hb := time.NewTicker(n.cfg.HeartbeatInterval.Duration)
	defer hb.Stop()
	var stalledSince, lastLog time.Time
	poll := minExportPoll
	for {
		head, changed := n.Head()
		beat := &dsnv1.Heartbeat{Head: head}
		if next <= head {
			pb, err := loadPreBlock(n.store, next)
			if err != nil {
				n.log.Error("export", "index", next, "err", err)
				return status.Errorf(codes.Internal, "pre-block %d: %v", next, err)
			}
			if len(pb.missing) == 0 {
				if !stalledSince.IsZero() {
					n.log.Info("export resumed", "index", next, "waited", time.Since(stalledSince).Round(time.Millisecond).String())
					stalledSince = time.Time{}
				}
				if err := preblock.Split(pb.source(n.store), st.Send); err != nil {
					return err
				}
				n.metrics.exported.Inc()
				next++
				poll = minExportPoll
				continue
			}
			beat.WaitingFor, beat.MissingBatches = next, uint32(len(pb.missing))
			if now := time.Now(); stalledSince.IsZero() || now.Sub(lastLog) >= stalledLogEvery {
				if stalledSince.IsZero() {
					stalledSince = now
				}
				lastLog = now
				n.log.Info("export waits for batches", "index", next, "missing", len(pb.missing),
					"first", pb.missing[0].Short(), "waiting", now.Sub(stalledSince).Round(time.Millisecond).String())
			}
			select { // the batches are being fetched: poll, keep the heartbeat
			case <-ctx.Done():
				return ctx.Err()
			case <-n.stopped:
				return status.Error(codes.Unavailable, "node stopping")
			case <-time.After(poll):
				poll = min(2*poll, maxExportPoll)
				continue
			case <-hb.C:
			}
		} else {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-n.stopped:
				return status.Error(codes.Unavailable, "node stopping")
			case <-changed:
				continue
			case <-hb.C:
			}
		}
		beat.UnixMs = uint64(time.Now().UnixMilli())
		if err := st.Send(&dsnv1.ExportResponse{Item: &dsnv1.ExportResponse_Heartbeat{Heartbeat: beat}}); err != nil {
			return err
		}
	}
}

// A pre-block whose batches are still on their way is polled for, first
// every millisecond (a batch broadcast is usually a round trip behind its
// commit), then backing off to every 20 ms (a node catching up).
const (
	minExportPoll = time.Millisecond
	maxExportPoll = 20 * time.Millisecond
)

// storedPreBlock is a committed sub-DAG as stored: its certificates
// decoded, its batches still on disk.
type storedPreBlock struct {
	rec     bullshark.Record
	certs   []*narwhal.Certificate
	raws    [][]byte
	support [][]byte
	bytes   uint64
	batches int
	missing []narwhal.Digest // batches not stored yet
}

// loadPreBlock reads sub-DAG idx's record and certificates, and checks that
// every batch is stored (without holding them).
func loadPreBlock(st *pebbleStore, idx uint64) (*storedPreBlock, error) {
	raw, ok := st.Get(store.SubDAGKey(idx))
	if !ok {
		return nil, fmt.Errorf("sub-DAG %d not stored", idx)
	}
	rec, err := bullshark.DecodeRecord(raw)
	if err != nil {
		return nil, err
	}
	pb := &storedPreBlock{rec: rec}
	for _, d := range rec.Certificates {
		raw, c, err := loadCertificate(st, d)
		if err != nil {
			return nil, err
		}
		pb.certs, pb.raws = append(pb.certs, c), append(pb.raws, raw)
		for _, bd := range c.Header.Payload {
			size, ok := st.Size(store.BatchKey(bd))
			if !ok {
				pb.missing = append(pb.missing, bd)
			}
			pb.bytes += uint64(size)
			pb.batches++
		}
	}
	for _, d := range rec.Support {
		raw, _, err := loadCertificate(st, d)
		if err != nil {
			return nil, err
		}
		pb.support = append(pb.support, raw)
	}
	return pb, nil
}

// source streams the pre-block, loading one batch at a time.
func (pb *storedPreBlock) source(st *pebbleStore) preblock.Source {
	return preblock.Source{
		Start: &dsnv1.PreBlockStart{
			Index: pb.rec.Index, Leader: pb.rec.Leader[:], CommitTimestamp: pb.rec.CommitTimestamp,
			Certificates: uint32(len(pb.certs)), Support: uint32(len(pb.support)),
			Batches: uint32(pb.batches), BatchBytes: pb.bytes,
		},
		Certificate: func(i int) ([]byte, int, error) { return pb.raws[i], len(pb.certs[i].Header.Payload), nil },
		Batch: func(i, j int) ([]byte, error) {
			d := pb.certs[i].Header.Payload[j]
			b, ok := st.Get(store.BatchKey(d))
			if !ok {
				return nil, fmt.Errorf("batch %s of sub-DAG %d vanished", d.Short(), pb.rec.Index)
			}
			return b, nil
		},
		Support: func(k int) ([]byte, error) { return pb.support[k], nil },
	}
}
