package node

import (
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/preblock"
	"github.com/tezos-dsn/dsn/internal/store"
)

// dagFeed is the live sequence of accepted certificates, in acceptance
// (causal) order, published by the committer once written to the store
// (before it syncs them: a certificate authenticates itself, so one a crash
// takes from the store is as valid in a reader's hands).
// It keeps the last feedCap; a reader that falls further behind must
// resume from a round.
type dagFeed struct {
	mu    sync.Mutex
	first uint64 // sequence number of certs[0]
	certs []*narwhal.Certificate
	ch    chan struct{} // closed and replaced on every publish
}

const feedCap = 50_000

func (f *dagFeed) publish(cs []*narwhal.Certificate) {
	if len(cs) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range cs {
		if c.Round() > 0 {
			f.certs = append(f.certs, c)
		}
	}
	if drop := len(f.certs) - feedCap; drop > 0 {
		f.certs = append([]*narwhal.Certificate(nil), f.certs[drop:]...)
		f.first += uint64(drop)
	}
	if f.ch != nil {
		close(f.ch)
	}
	f.ch = make(chan struct{})
}

// since returns the certificates from sequence number pos on, the next
// position, and a channel closed at the next publish.
func (f *dagFeed) since(pos uint64) ([]*narwhal.Certificate, uint64, <-chan struct{}, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ch == nil {
		f.ch = make(chan struct{})
	}
	end := f.first + uint64(len(f.certs))
	if pos < f.first {
		return nil, pos, nil, fmt.Errorf("the stream fell %d certificates behind the live feed", f.first-pos)
	}
	return append([]*narwhal.Certificate(nil), f.certs[pos-f.first:]...), end, f.ch, nil
}

func (f *dagFeed) position() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.first + uint64(len(f.certs))
}

// ExportDAG streams the certified DAG (see export.proto): the stored
// rounds from from_round on, then the live feed from where it stood when
// the call began, skipping what the replay already sent.
func (s *exportServer) ExportDAG(req *dsnv1.ExportDAGRequest, st dsnv1.Export_ExportDAGServer) error {
	n := s.n
	select {
	case s.slots <- struct{}{}:
	default:
		n.metrics.exportRefused.Inc()
		return status.Errorf(codes.ResourceExhausted, "%d export streams already open; retry later or on another node", cap(s.slots))
	}
	defer func() { <-s.slots }()
	n.metrics.exportStreams.Inc()
	defer n.metrics.exportStreams.Dec()

	pos := n.feed.position()
	sent := map[narwhal.Digest]uint64{} // digest -> round, for what the replay and the feed share
	send := func(c *narwhal.Certificate) error {
		d := c.Digest()
		if _, dup := sent[d]; dup || c.Round() < req.FromRound {
			return nil
		}
		if err := s.sendCertificate(st, c); err != nil {
			return err
		}
		sent[d] = c.Round()
		if len(sent) > 4*feedCap { // forget what can no longer come again: at or below the GC horizon
			gc := n.Status().GCRound
			for k, r := range sent {
				if r <= gc {
					delete(sent, k)
				}
			}
		}
		return nil
	}
	// Replay the stored rounds, in (round, author) order: causal.
	last := n.Status().DAGRound
	for r := max(req.FromRound, 1); r <= last; r++ {
		var certs []*narwhal.Certificate
		var derr error
		n.store.Scan(store.CertificateKey(r, 0), store.CertificateKey(r+1, 0), func(_, v []byte) bool {
			c, err := narwhal.DecodeCertificate(v)
			if err != nil {
				derr = err
				return false
			}
			certs = append(certs, c)
			return true
		})
		if derr != nil {
			return status.Errorf(codes.Internal, "stored certificate of round %d: %v", r, derr)
		}
		for _, c := range certs {
			if err := send(c); err != nil {
				return err
			}
		}
	}
	// Then live.
	hb := time.NewTicker(n.cfg.HeartbeatInterval.Duration)
	defer hb.Stop()
	for {
		certs, next, ch, err := n.feed.since(pos)
		if err != nil {
			return status.Errorf(codes.DataLoss, "%v: resume with from_round", err)
		}
		pos = next
		for _, c := range certs {
			if err := send(c); err != nil {
				return err
			}
		}
		if len(certs) > 0 {
			continue
		}
		select {
		case <-st.Context().Done():
			return st.Context().Err()
		case <-n.stopped:
			return status.Error(codes.Unavailable, "node stopping")
		case <-ch:
		case <-hb.C:
			head, _ := n.Head()
			if err := st.Send(&dsnv1.ExportResponse{Item: &dsnv1.ExportResponse_Heartbeat{Heartbeat: &dsnv1.Heartbeat{
				Head: head, UnixMs: uint64(time.Now().UnixMilli())}}}); err != nil {
				return err
			}
		}
	}
}

// sendCertificate sends c once its batches are stored; if some never can
// be (c is at or below the GC horizon, and no committed sub-DAG marked them
// missing, so nothing will ever need them), it sends c with its batches
// withheld.
func (s *exportServer) sendCertificate(st dsnv1.Export_ExportDAGServer, c *narwhal.Certificate) error {
	n := s.n
	for {
		var missing []narwhal.Digest
		for _, d := range c.Header.Payload {
			if _, ok := n.store.Size(store.BatchKey(d)); !ok {
				missing = append(missing, d)
			}
		}
		if len(missing) == 0 {
			return preblock.SplitCertificate(c.Encode(), len(c.Header.Payload), func(j int) ([]byte, error) {
				b, ok := n.store.Get(store.BatchKey(c.Header.Payload[j]))
				if !ok {
					return nil, fmt.Errorf("batch %s vanished", c.Header.Payload[j].Short())
				}
				return b, nil
			}, st.Send)
		}
		if c.Round() <= n.Status().GCRound {
			committed := false
			for _, d := range missing {
				if _, ok := n.store.Get(store.MissingKey(d)); ok {
					committed = true
				}
			}
			if !committed {
				return preblock.SplitCertificate(c.Encode(), len(c.Header.Payload), nil, st.Send)
			}
		}
		select {
		case <-st.Context().Done():
			return st.Context().Err()
		case <-n.stopped:
			return status.Error(codes.Unavailable, "node stopping")
		case <-time.After(20 * time.Millisecond):
		}
	}
}
