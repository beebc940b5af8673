package node

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/config"
	"github.com/tezos-dsn/dsn/internal/crypto/mtls"
	"github.com/tezos-dsn/dsn/internal/narwhal"
)

// maxFrame bounds one node-to-node message.
const maxFrame = 64 << 20

// windowSize is the HTTP/2 flow-control window of peer streams: batches of
// hundreds of KB must not wait for a window update every 64 KB.
const windowSize = 16 << 20

// keepaliveTime and keepaliveTimeout: both sides of a peer link ping an
// idle connection every keepaliveTime and drop it when no answer comes in
// keepaliveTimeout. NB: a partition or a silently dead peer sends no RST:
// without pings a link would wait on a dead TCP connection for the
// kernel's retransmission timeout (many minutes) before reconnecting — the
// container e2e partition test found exactly that.
const (
	keepaliveTime    = 2 * time.Second
	keepaliveTimeout = 2 * time.Second
)

// logEvery is the least interval between two warnings about one peer.
const logEvery = 5 * time.Second

// outboxSize bounds each peer's queue; when it is full new messages are
// dropped and counted (the protocol retries what matters).
const outboxSize = 16 << 10

// inbound is a decoded message from an authenticated peer.
type inbound struct {
	from narwhal.AuthorityID
	msg  narwhal.Message
}

// transport carries narwhal messages between nodes over gRPC streams with
// mutual TLS pinned to the committee's ed25519 keys. The sender of an
// inbound message is the TLS peer, never a field of the message.
type transport struct {
	self      narwhal.AuthorityID
	committee *narwhal.Committee
	cert      tls.Certificate
	shaping   config.Shaping
	log       *slog.Logger
	metrics   *metrics

	limit  *logLimiter // per-peer rate limit of warnings about peer input
	in     chan inbound
	peers  []*peerLink
	server *grpc.Server
	wg     sync.WaitGroup
}

// peerLink is the outgoing side of one peer. Consensus messages (headers,
// votes, certificates, requests) have a queue of their own that the sender
// drains first, so that a backlog of batches never delays — or, when the
// data queue overflows, drops — the messages that advance rounds.
type peerLink struct {
	id      narwhal.AuthorityID
	addr    string
	key     ed25519.PublicKey
	control chan queued
	data    chan queued
}

// isData reports whether a message carries batches (bulk data).
func isData(m narwhal.Message) bool {
	switch m.(type) {
	case *narwhal.BatchMsg, *narwhal.BatchResponseMsg:
		return true
	}
	return false
}

type queued struct {
	msg narwhal.Message
	at  time.Time
}

func newTransport(self narwhal.AuthorityID, c *narwhal.Committee, netKey ed25519.PrivateKey, shaping config.Shaping, log *slog.Logger, m *metrics) (*transport, error) {
	cert, err := mtls.NewCertificate(netKey)
	if err != nil {
		return nil, err
	}
	if !netKey.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(c.Authorities[self].NetworkKey[:])) {
		return nil, fmt.Errorf("network key does not match committee entry %s", c.Authorities[self].Name)
	}
	t := &transport{self: self, committee: c, cert: cert, shaping: shaping, log: log, metrics: m,
		in: make(chan inbound, 4096), limit: newLogLimiter(logEvery, m.logSuppressed.Inc)}
	for i := range c.Authorities {
		if narwhal.AuthorityID(i) == self {
			t.peers = append(t.peers, nil)
			continue
		}
		t.peers = append(t.peers, &peerLink{
			id: narwhal.AuthorityID(i), addr: c.Authorities[i].Address,
			key:     ed25519.PublicKey(c.Authorities[i].NetworkKey[:]),
			control: make(chan queued, outboxSize),
			data:    make(chan queued, outboxSize),
		})
	}
	return t, nil
}

// serve starts the gRPC server on lis and the outbound links; both stop
// when ctx ends.
func (t *transport) serve(ctx context.Context, lis net.Listener) {
	var allowed []ed25519.PublicKey
	for i := range t.committee.Authorities {
		allowed = append(allowed, ed25519.PublicKey(t.committee.Authorities[i].NetworkKey[:]))
	}
	// A rejected handshake (a key not in the committee) is logged, at most
	// once per remote address and interval.
	tlsCfg := mtls.ServerConfig(t.cert, allowed)
	verify := tlsCfg.VerifyPeerCertificate
	tlsCfg.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
		err := verify(raw, chains)
		if err != nil {
			t.metrics.handshakesRejected.Inc()
			t.limit.log(t.log, slog.LevelWarn, "handshake", "rejected p2p handshake", "err", err)
		}
		return err
	}
	t.server = grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tlsCfg)),
		grpc.MaxRecvMsgSize(maxFrame),
		grpc.InitialWindowSize(windowSize),
		grpc.InitialConnWindowSize(windowSize),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: keepaliveTime, Timeout: keepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveTime / 2, PermitWithoutStream: true}),
	)
	dsnv1.RegisterPeerServer(t.server, &peerServer{t: t})
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		if err := t.server.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.log.Error("p2p server stopped", "err", err)
		}
	}()
	for _, p := range t.peers {
		if p != nil {
			t.wg.Add(1)
			go func() {
				defer t.wg.Done()
				t.runLink(ctx, p)
			}()
		}
	}
	go func() {
		<-ctx.Done()
		t.server.Stop()
	}()
}

func (t *transport) wait() { t.wg.Wait() }

// send queues a message for a peer without blocking.
func (t *transport) send(to narwhal.AuthorityID, m narwhal.Message) {
	p := t.peers[to]
	q := p.control
	if isData(m) {
		q = p.data
	}
	select {
	case q <- queued{msg: m, at: time.Now()}:
	default:
		t.metrics.dropped.WithLabelValues(t.committee.Authorities[to].Name).Inc()
	}
}

// runLink keeps a stream to one peer open and drains its queue into it.
func (t *transport) runLink(ctx context.Context, p *peerLink) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := t.stream(ctx, p)
		if ctx.Err() != nil {
			return
		}
		t.log.Debug("peer link down", "peer", t.committee.Authorities[p.id].Name, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (t *transport) stream(ctx context.Context, p *peerLink) error {
	conn, err := grpc.NewClient(p.addr,
		grpc.WithTransportCredentials(credentials.NewTLS(mtls.ClientConfig(t.cert, p.key))),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(maxFrame)),
		grpc.WithInitialWindowSize(windowSize),
		grpc.WithInitialConnWindowSize(windowSize),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveTime, Timeout: keepaliveTimeout, PermitWithoutStream: true}))
	if err != nil {
		return fmt.Errorf("dial %s: %w", p.addr, err)
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := dsnv1.NewPeerClient(conn).Stream(sctx)
	if err != nil {
		return fmt.Errorf("open stream to %s: %w", p.addr, err)
	}
	for {
		var q queued
		select {
		case q = <-p.control:
		default:
			select {
			case <-ctx.Done():
				return ctx.Err()
			case q = <-p.control:
			case q = <-p.data:
			}
		}
		if t.shaping.Loss > 0 && rand.Float64() < t.shaping.Loss {
			continue
		}
		if d := t.shaping.Delay.Duration; d > 0 || t.shaping.Jitter.Duration > 0 {
			if j := t.shaping.Jitter.Duration; j > 0 {
				d += time.Duration(rand.Int64N(int64(j)))
			}
			if wait := time.Until(q.at.Add(d)); wait > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(wait):
				}
			}
		}
		frame := narwhal.EncodeMessage(q.msg)
		if err := st.Send(&dsnv1.Frame{Message: frame}); err != nil {
			// The message is lost with the stream; the protocol retries.
			return fmt.Errorf("send to %s: %w", p.addr, err)
		}
		t.metrics.messagesOut.Inc()
		t.metrics.bytesOut.Add(float64(len(frame)))
	}
}

// peerServer receives the streams other nodes open to this one.
type peerServer struct {
	dsnv1.UnimplementedPeerServer
	t *transport
}

func (s *peerServer) Stream(st dsnv1.Peer_StreamServer) error {
	t := s.t
	from, err := t.peerOf(st.Context())
	if err != nil {
		return err
	}
	for {
		f, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return st.SendAndClose(&dsnv1.StreamClosed{})
		}
		if err != nil {
			return err
		}
		t.metrics.messagesIn.Inc()
		t.metrics.bytesIn.Add(float64(len(f.Message)))
		m, err := narwhal.DecodeMessage(f.Message)
		if err != nil {
			t.metrics.badMessages.Inc()
			name := t.committee.Authorities[from].Name
			t.limit.log(t.log, slog.LevelWarn, name, "undecodable message", "peer", name, "err", err)
			continue
		}
		select {
		case t.in <- inbound{from: from, msg: m}:
		case <-st.Context().Done():
			return st.Context().Err()
		}
	}
}

// peerOf maps the TLS peer's key to its authority.
func (t *transport) peerOf(ctx context.Context) (narwhal.AuthorityID, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return 0, errors.New("no peer in context")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return 0, errors.New("peer without TLS")
	}
	key, err := mtls.PeerKey(info.State)
	if err != nil {
		return 0, err
	}
	for i := range t.committee.Authorities {
		if key.Equal(ed25519.PublicKey(t.committee.Authorities[i].NetworkKey[:])) && narwhal.AuthorityID(i) != t.self {
			return narwhal.AuthorityID(i), nil
		}
	}
	return 0, fmt.Errorf("%w: %x", mtls.ErrUnpinnedPeer, []byte(key))
}
