package sequencer

import (
	"net/http"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/receipt"
)

// Receipts (docs/sequencer.md, "Receipts"): when a followed pre-block
// orders a tracked transaction, the sequencer keeps what proves it — the
// batch, its certificate, a parent path down from a committed leader, and
// the leader's support — as an internal/receipt.Receipt.
//
// Only a pre-block whose anchor was directly committed carries support
// certificates; an anchor ordered through a later directly committed one
// (docs/consensus.md, "an anchor every round") carries none. So a
// transaction's receipt waits for a pre-block that carries support and
// whose leader reaches the transaction's certificate — in practice the
// same pre-block or the next — and is built from that leader, through a
// path that crosses the pre-blocks in between. A supported leader that
// does not reach it (its anchor was ordered through a directly committed
// one of a round above the next supported leader's) leaves it waiting: any
// supported leader two rounds above that anchor reaches it. The
// pre-blocks' certificates are kept in a window until then; their batches
// are not, only those of the waiting transactions.

// receiptWindow bounds the pre-blocks kept waiting for support; past it
// the waiting receipts are built from their own pre-block's leader,
// without support (not seen in the tests).
const receiptWindow = 64

// receiptOverhead is what one kept receipt is charged besides its batch:
// about three certificates of a small committee and the JSON fields.
const receiptOverhead = 1024

// receiptBook builds and keeps receipts; s.mu guards it.
type receiptBook struct {
	max, maxBytes int

	waiting []waitingReceipt
	window  map[narwhal.Digest]receipt.Known // certificates of the pre-blocks since the first waiting receipt
	blocks  int                              // pre-blocks in window

	kept  map[narwhal.Digest]*receipt.Receipt
	order []keptReceipt // oldest first, for eviction
	bytes int           // charged to the kept receipts
}

// waitingReceipt is an ordered transaction whose receipt waits for support.
type waitingReceipt struct {
	o      receipt.Ordered
	leader narwhal.Digest // of its own pre-block: the fallback
	charge int
}

type keptReceipt struct {
	id     narwhal.Digest
	charge int
}

// found is a tracked transaction the scan of one pre-block found.
type found struct {
	o         receipt.Ordered // Cert not set yet
	certIndex int             // the certificate among the pre-block's
	charge    int
}

func newReceiptBook(max, maxBytes int) *receiptBook {
	return &receiptBook{max: max, maxBytes: maxBytes, window: map[narwhal.Digest]receipt.Known{}, kept: map[narwhal.Digest]*receipt.Receipt{}}
}

// enabled reports whether receipts are built at all (Config.Receipts > 0).
func (b *receiptBook) enabled() bool { return b.max > 0 }

// receiptsFor takes a followed pre-block and the tracked transactions
// found in it, and keeps the receipts it completes (those of earlier
// pre-blocks too). Problems are logged: a receipt that cannot be built is skipped, never
// holds up following.
func (s *Sequencer) receiptsFor(pb *dsnv1.PreBlock, fs []found) {
	b := s.receipts
	if len(b.waiting) == 0 && len(fs) == 0 {
		return // nothing waits: no window to keep
	}
	digests := make([]narwhal.Digest, len(pb.Certificates))
	for i, raw := range pb.Certificates {
		c, err := narwhal.DecodeCertificate(raw)
		if err != nil {
			s.log.Warn("receipts: certificate does not decode; skipping this pre-block's receipts", "index", pb.Index, "err", err)
			continue
		}
		digests[i] = c.Digest()
		b.window[digests[i]] = receipt.Known{Cert: c, Raw: raw}
	}
	b.blocks++
	var leader narwhal.Digest
	copy(leader[:], pb.Leader)
	for _, f := range fs {
		f.o.Cert = digests[f.certIndex]
		b.waiting = append(b.waiting, waitingReceipt{o: f.o, leader: leader, charge: f.charge})
	}
	var support []receipt.Known
	for _, raw := range pb.Support {
		c, err := narwhal.DecodeCertificate(raw)
		if err != nil {
			s.log.Warn("receipts: support certificate does not decode", "index", pb.Index, "err", err)
			support = nil
			break
		}
		support = append(support, receipt.Known{Cert: c, Raw: raw})
	}
	if len(support) == 0 && b.blocks < receiptWindow {
		return // wait for the commit's support
	}
	paths := map[narwhal.Digest]*receipt.Paths{}
	pathsFrom := func(l narwhal.Digest) *receipt.Paths {
		if paths[l] == nil {
			paths[l] = receipt.ShortestPaths(l, b.window)
		}
		return paths[l]
	}
	var still []waitingReceipt
	for _, w := range b.waiting {
		var r *receipt.Receipt
		var err error
		if len(support) > 0 {
			r, err = receipt.Build(w.o, pathsFrom(leader), support)
			if r == nil && b.blocks < receiptWindow {
				still = append(still, w) // a later supported leader reaches it
				continue
			}
		}
		if r == nil {
			// The window is full: the transaction's own leader, unsupported.
			r, err = receipt.Build(w.o, pathsFrom(w.leader), nil)
		}
		if err != nil {
			s.log.Warn("receipts: cannot build", "id", w.o.ID, "index", w.o.Index, "err", err)
			continue
		}
		b.keep(s, r, w.charge)
	}
	b.waiting = still
	if len(still) == 0 {
		b.window, b.blocks = map[narwhal.Digest]receipt.Known{}, 0
	}
}

// keep stores a receipt, evicting the oldest past the bounds.
func (b *receiptBook) keep(s *Sequencer, r *receipt.Receipt, charge int) {
	id := narwhal.Digest(r.ID)
	b.kept[id] = r
	b.order = append(b.order, keptReceipt{id: id, charge: charge})
	b.bytes += charge
	if st, ok := s.status[id]; ok {
		st.Receipt = "/v1/transactions/" + st.ID + "/receipt"
	}
	for len(b.order) > 0 && (len(b.order) > b.max || b.bytes > b.maxBytes) {
		old := b.order[0]
		b.order = b.order[1:]
		b.bytes -= old.charge
		delete(b.kept, old.id)
		if st, ok := s.status[old.id]; ok {
			st.Receipt = ""
		}
	}
}

// Receipt returns a transaction's receipt, or the reason there is none.
func (s *Sequencer) Receipt(id narwhal.Digest) (*receipt.Receipt, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.receipts.kept[id]; r != nil {
		return r, ""
	}
	st, ok := s.status[id]
	switch {
	case !ok:
		return nil, "unknown transaction (not submitted here, or no longer tracked)"
	case st.Status == "pending":
		return nil, "pending: a receipt exists once the transaction is ordered"
	case !s.receipts.enabled():
		return nil, "this sequencer keeps no receipts"
	}
	for _, w := range s.receipts.waiting {
		if w.o.ID == id {
			return nil, "ordered: the receipt waits for the commit's support certificates (retry shortly)"
		}
	}
	return nil, "receipt no longer kept (this sequencer keeps the most recent ones)"
}

func (s *Sequencer) getReceipt(w http.ResponseWriter, r *http.Request) {
	id, ok := s.parseID(w, r)
	if !ok {
		return
	}
	rc, why := s.Receipt(id)
	if rc == nil {
		s.fail(w, http.StatusNotFound, "%s", why)
		return
	}
	// NB: encoded outside the lock: a kept receipt is never modified.
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(rc.Encode())
}
