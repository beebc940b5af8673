// Package preblock reads a node's Export stream. A pre-block (a committed
// sub-DAG with its batches) has no size bound, so the node sends it in parts
// of at most PartBytes of batch data (see api/dsn/v1/export.proto); this
// package checks the order of the parts and gives them back as whole
// certificates and whole batches (Reader.Next), or as whole pre-blocks
// (Reader.PreBlock). The node's Export server splits with Split, so the two
// sides share one definition of the framing.
package preblock

import (
	"errors"
	"fmt"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
)

// PartBytes bounds the batch data of one BatchPart message.
const PartBytes = 1 << 20

// DefaultMaxBatchBytes bounds one reassembled batch: a node's transport
// carries no larger message (services/node maxFrame).
const DefaultMaxBatchBytes = 64 << 20

// DefaultMaxPreBlockBytes bounds the batch bytes of a pre-block that
// Reader.PreBlock assembles in memory.
const DefaultMaxPreBlockBytes = 1 << 30

// ErrProtocol reports a stream whose parts are out of order or inconsistent.
var ErrProtocol = errors.New("preblock: malformed export stream")

// Receiver is the receiving side of an Export call
// (dsnv1.Export_ExportClient satisfies it).
type Receiver interface {
	Recv() (*dsnv1.ExportResponse, error)
}

// Kind says what an Item holds.
type Kind int

// The kinds of Item, in the order a pre-block's items come.
const (
	KindHeartbeat   Kind = iota // between pre-blocks
	KindStart                   // a pre-block begins: Item.Start
	KindCertificate             // Item.Certificate (its batches follow unless Support)
	KindBatch                   // Item.Batch: one whole batch of the last certificate
	KindEnd                     // the pre-block Item.Index is complete
)

// Item is one unit of the stream, with batches reassembled.
type Item struct {
	Kind      Kind
	Heartbeat *dsnv1.Heartbeat
	Start     *dsnv1.PreBlockStart
	// Certificate is a canonical certificate; Support marks the leader's
	// support certificates, which come after all batches.
	Certificate []byte
	Support     bool
	// Batch is a canonical batch; BatchOf is the index of its certificate
	// among the pre-block's (non-support) certificates.
	Batch   []byte
	BatchOf int
	// Index is the pre-block's index (KindStart, KindCertificate, KindBatch, KindEnd).
	Index uint64
}

// Reader reads one Export stream. Not safe for concurrent use.
type Reader struct {
	r             Receiver
	maxBatch      int
	maxPreBlock   uint64
	cur           *dsnv1.PreBlockStart // nil between pre-blocks
	certs         uint32               // non-support certificates seen
	support       uint32
	batchesLeft   uint32 // batches still due for the current certificate
	batches       uint32 // batches seen in this pre-block
	bytes         uint64
	partial       []byte
	supportPhase  bool
	lastEnd       uint64
	lastEndExists bool
}

// Option adjusts a Reader.
type Option func(*Reader)

// WithMaxBatchBytes bounds one reassembled batch (default DefaultMaxBatchBytes).
func WithMaxBatchBytes(n int) Option { return func(r *Reader) { r.maxBatch = n } }

// WithMaxPreBlockBytes bounds the batch bytes of a pre-block announced by
// its start, for every reader (default DefaultMaxPreBlockBytes).
func WithMaxPreBlockBytes(n uint64) Option { return func(r *Reader) { r.maxPreBlock = n } }

// NewReader reads from r.
func NewReader(r Receiver, opts ...Option) *Reader {
	rd := &Reader{r: r, maxBatch: DefaultMaxBatchBytes, maxPreBlock: DefaultMaxPreBlockBytes}
	for _, o := range opts {
		o(rd)
	}
	return rd
}

// LastComplete returns the index of the last pre-block whose end arrived:
// the `from` to resume with after the stream breaks.
func (rd *Reader) LastComplete() (uint64, bool) { return rd.lastEnd, rd.lastEndExists }

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// Next returns the next item. Errors from the stream come back as they are;
// a stream that breaks the framing gets an ErrProtocol error.
func (rd *Reader) Next() (Item, error) {
	for {
		m, err := rd.r.Recv()
		if err != nil {
			return Item{}, err
		}
		it, done, err := rd.step(m)
		if err != nil || done {
			return it, err
		}
	}
}

// step consumes one message; done reports whether it completed an item.
func (rd *Reader) step(m *dsnv1.ExportResponse) (Item, bool, error) {
	switch x := m.Item.(type) {
	case *dsnv1.ExportResponse_Heartbeat:
		if rd.cur != nil {
			return Item{}, false, protoErr("heartbeat inside pre-block %d", rd.cur.Index)
		}
		return Item{Kind: KindHeartbeat, Heartbeat: x.Heartbeat}, true, nil
	case *dsnv1.ExportResponse_Start:
		s := x.Start
		switch {
		case rd.cur != nil:
			return Item{}, false, protoErr("pre-block %d starts inside %d", s.Index, rd.cur.Index)
		case s.Index == 0 || rd.lastEndExists && s.Index != rd.lastEnd+1:
			return Item{}, false, protoErr("pre-block %d after %d", s.Index, rd.lastEnd)
		case len(s.Leader) != 32:
			return Item{}, false, protoErr("pre-block %d: leader digest of %d bytes", s.Index, len(s.Leader))
		case s.Certificates == 0:
			return Item{}, false, protoErr("pre-block %d without certificates", s.Index)
		case s.BatchBytes > rd.maxPreBlock:
			return Item{}, false, fmt.Errorf("preblock: pre-block %d holds %d bytes of batches, over the limit of %d", s.Index, s.BatchBytes, rd.maxPreBlock)
		}
		rd.cur, rd.certs, rd.support, rd.batchesLeft, rd.batches, rd.bytes, rd.supportPhase = s, 0, 0, 0, 0, 0, false
		return Item{Kind: KindStart, Start: s, Index: s.Index}, true, nil
	case *dsnv1.ExportResponse_Certificate:
		c := x.Certificate
		switch {
		case rd.cur == nil:
			return Item{}, false, protoErr("certificate outside a pre-block")
		case rd.batchesLeft > 0 || len(rd.partial) > 0:
			return Item{}, false, protoErr("pre-block %d: certificate before the previous one's batches", rd.cur.Index)
		case len(c.Certificate) == 0:
			return Item{}, false, protoErr("pre-block %d: empty certificate", rd.cur.Index)
		}
		if c.Support {
			if rd.certs != rd.cur.Certificates || rd.support >= rd.cur.Support || c.Batches != 0 {
				return Item{}, false, protoErr("pre-block %d: unexpected support certificate", rd.cur.Index)
			}
			rd.support++
			rd.supportPhase = true
		} else {
			if rd.supportPhase || rd.certs >= rd.cur.Certificates {
				return Item{}, false, protoErr("pre-block %d: more than %d certificates", rd.cur.Index, rd.cur.Certificates)
			}
			rd.certs++
			rd.batchesLeft = c.Batches
		}
		return Item{Kind: KindCertificate, Certificate: c.Certificate, Support: c.Support, Index: rd.cur.Index}, true, nil
	case *dsnv1.ExportResponse_Batch:
		b := x.Batch
		switch {
		case rd.cur == nil:
			return Item{}, false, protoErr("batch outside a pre-block")
		case rd.batchesLeft == 0:
			return Item{}, false, protoErr("pre-block %d: batch beyond its certificate's payload", rd.cur.Index)
		case len(b.Data) > PartBytes:
			return Item{}, false, protoErr("pre-block %d: batch part of %d bytes", rd.cur.Index, len(b.Data))
		case len(rd.partial)+len(b.Data) > rd.maxBatch:
			return Item{}, false, fmt.Errorf("preblock: pre-block %d: batch over the limit of %d bytes", rd.cur.Index, rd.maxBatch)
		case rd.bytes+uint64(len(b.Data)) > rd.cur.BatchBytes:
			return Item{}, false, protoErr("pre-block %d: more batch bytes than the %d announced", rd.cur.Index, rd.cur.BatchBytes)
		}
		rd.bytes += uint64(len(b.Data))
		rd.partial = append(rd.partial, b.Data...)
		if !b.Last {
			return Item{}, false, nil
		}
		batch := rd.partial
		rd.partial = nil
		rd.batchesLeft--
		rd.batches++
		return Item{Kind: KindBatch, Batch: batch, BatchOf: int(rd.certs) - 1, Index: rd.cur.Index}, true, nil
	case *dsnv1.ExportResponse_End:
		e := x.End
		switch {
		case rd.cur == nil || e.Index != rd.cur.Index:
			return Item{}, false, protoErr("end of pre-block %d that did not start", e.Index)
		case rd.certs != rd.cur.Certificates || rd.support != rd.cur.Support || rd.batchesLeft > 0 || len(rd.partial) > 0 ||
			rd.batches != rd.cur.Batches || rd.bytes != rd.cur.BatchBytes:
			return Item{}, false, protoErr("pre-block %d ends incomplete: %d/%d certificates, %d/%d support, %d/%d batches, %d/%d bytes",
				e.Index, rd.certs, rd.cur.Certificates, rd.support, rd.cur.Support, rd.batches, rd.cur.Batches, rd.bytes, rd.cur.BatchBytes)
		}
		rd.cur = nil
		rd.lastEnd, rd.lastEndExists = e.Index, true
		return Item{Kind: KindEnd, Index: e.Index}, true, nil
	default:
		return Item{}, false, protoErr("unknown item %T", m.Item)
	}
}

// PreBlock returns the next whole pre-block, or the next heartbeat (exactly
// one of the two is non-nil when err is nil).
func (rd *Reader) PreBlock() (*dsnv1.PreBlock, *dsnv1.Heartbeat, error) {
	var pb *dsnv1.PreBlock
	for {
		it, err := rd.Next()
		if err != nil {
			return nil, nil, err
		}
		switch it.Kind {
		case KindHeartbeat:
			return nil, it.Heartbeat, nil
		case KindStart:
			pb = &dsnv1.PreBlock{Index: it.Start.Index, Leader: it.Start.Leader, CommitTimestamp: it.Start.CommitTimestamp}
		case KindCertificate:
			if it.Support {
				pb.Support = append(pb.Support, it.Certificate)
			} else {
				pb.Certificates = append(pb.Certificates, it.Certificate)
				pb.Batches = append(pb.Batches, &dsnv1.CertificateBatches{})
			}
		case KindBatch:
			bs := pb.Batches[it.BatchOf]
			bs.Batches = append(bs.Batches, it.Batch)
		case KindEnd:
			return pb, nil, nil
		}
	}
}

// SplitCertificate sends one certificate and its n batches (loaded one at
// a time, each cut into parts of at most PartBytes); batch nil sends it
// with batches withheld (ExportDAG).
func SplitCertificate(cert []byte, n int, batch func(j int) ([]byte, error), send func(*dsnv1.ExportResponse) error) error {
	part := &dsnv1.CertificatePart{Certificate: cert, Batches: uint32(n), BatchesWithheld: batch == nil}
	if err := send(&dsnv1.ExportResponse{Item: &dsnv1.ExportResponse_Certificate{Certificate: part}}); err != nil || batch == nil {
		return err
	}
	for j := 0; j < n; j++ {
		b, err := batch(j)
		if err != nil {
			return err
		}
		for off := 0; ; off += PartBytes {
			end := min(off+PartBytes, len(b))
			if err := send(&dsnv1.ExportResponse{Item: &dsnv1.ExportResponse_Batch{
				Batch: &dsnv1.BatchPart{Data: b[off:end], Last: end == len(b)}}}); err != nil {
				return err
			}
			if end == len(b) {
				break
			}
		}
	}
	return nil
}

// DAGEntry is one certificate of an ExportDAG stream with its batches.
type DAGEntry struct {
	Certificate []byte
	Batches     [][]byte // nil when Withheld
	Withheld    bool
}

// DAGReader reads an ExportDAG stream. Not safe for concurrent use.
type DAGReader struct {
	r        Receiver
	maxBatch int
}

// NewDAGReader reads from r; a batch over maxBatch bytes is an error
// (0: DefaultMaxBatchBytes).
func NewDAGReader(r Receiver, maxBatch int) *DAGReader {
	if maxBatch <= 0 {
		maxBatch = DefaultMaxBatchBytes
	}
	return &DAGReader{r: r, maxBatch: maxBatch}
}

// Next returns the next certificate with its batches, or a heartbeat.
func (rd *DAGReader) Next() (*DAGEntry, *dsnv1.Heartbeat, error) {
	m, err := rd.r.Recv()
	if err != nil {
		return nil, nil, err
	}
	switch x := m.Item.(type) {
	case *dsnv1.ExportResponse_Heartbeat:
		return nil, x.Heartbeat, nil
	case *dsnv1.ExportResponse_Certificate:
		c := x.Certificate
		if len(c.Certificate) == 0 || c.Support {
			return nil, nil, protoErr("DAG stream: empty or support certificate")
		}
		e := &DAGEntry{Certificate: c.Certificate, Withheld: c.BatchesWithheld}
		if e.Withheld {
			return e, nil, nil
		}
		for range c.Batches {
			var b []byte
			for {
				m, err := rd.r.Recv()
				if err != nil {
					return nil, nil, err
				}
				p := m.GetBatch()
				switch {
				case p == nil:
					return nil, nil, protoErr("DAG stream: certificate without its %d batches", c.Batches)
				case len(p.Data) > PartBytes:
					return nil, nil, protoErr("DAG stream: batch part of %d bytes", len(p.Data))
				case len(b)+len(p.Data) > rd.maxBatch:
					return nil, nil, fmt.Errorf("preblock: DAG stream: batch over the limit of %d bytes", rd.maxBatch)
				}
				b = append(b, p.Data...)
				if p.Last {
					break
				}
			}
			e.Batches = append(e.Batches, b)
		}
		return e, nil, nil
	default:
		return nil, nil, protoErr("DAG stream: unexpected %T", m.Item)
	}
}

// Source is what Split reads a pre-block from: certificates and batches in
// stream order, loaded one at a time so that the sender holds at most one
// batch in memory.
type Source struct {
	Start *dsnv1.PreBlockStart
	// Certificate returns the i-th certificate's canonical bytes and the
	// number of batches its header names.
	Certificate func(i int) ([]byte, int, error)
	// Batch returns the canonical bytes of certificate i's j-th batch.
	Batch func(i, j int) ([]byte, error)
	// Support returns the k-th support certificate.
	Support func(k int) ([]byte, error)
}

// Split sends one pre-block as parts through send, in the order the Reader
// expects.
func Split(src Source, send func(*dsnv1.ExportResponse) error) error {
	if err := send(&dsnv1.ExportResponse{Item: &dsnv1.ExportResponse_Start{Start: src.Start}}); err != nil {
		return err
	}
	for i := 0; i < int(src.Start.Certificates); i++ {
		cert, n, err := src.Certificate(i)
		if err != nil {
			return err
		}
		if err := SplitCertificate(cert, n, func(j int) ([]byte, error) { return src.Batch(i, j) }, send); err != nil {
			return err
		}
	}
	for k := 0; k < int(src.Start.Support); k++ {
		cert, err := src.Support(k)
		if err != nil {
			return err
		}
		if err := send(&dsnv1.ExportResponse{Item: &dsnv1.ExportResponse_Certificate{
			Certificate: &dsnv1.CertificatePart{Certificate: cert, Support: true}}}); err != nil {
			return err
		}
	}
	return send(&dsnv1.ExportResponse{Item: &dsnv1.ExportResponse_End{End: &dsnv1.PreBlockEnd{Index: src.Start.Index}}})
}
