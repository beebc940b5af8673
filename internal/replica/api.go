// Package replica composes one authority's protocol cores — the Narwhal
// worker (internal/worker), the Narwhal primary (internal/primary) and
// Bullshark (internal/bullshark) — into a single deterministic state machine
// with three inputs (Submit, Receive, Tick) and one kind of output (Output).
//
// It is the synchronous driver between the pure cores and a runtime: the
// consensus node (services/node) and the simulator (internal/sim) both drive a
// Replica, so they run exactly the same protocol code. A Replica is not safe
// for concurrent use: one goroutine (the runtime's event loop) owns it.
//
// The runtime's contract for every Output, in this order:
//  1. apply Output.Writes to the store as one atomic batch, after the
//     writes of every earlier Output;
//  2. then it may send the messages that promise nothing about this
//     node's store (Early: certificates, batches, requests, responses);
//  3. the rest waits for syncs, and for the signing record if
//     SignedChanged: a vote until the writes of the batches it vouches for
//     (Envelope.Vouches) are durable; an own header, acknowledgements of
//     Output.Acked tickets and the publication of Output.Committed
//     sub-DAGs until this Output's writes are (synced, with every earlier
//     Output's).
//
// A crash may lose any suffix of the Outputs whose writes were not synced
// yet, never one without the Outputs after it. Breaking the order can make
// a restarted node equivocate, lose an acknowledged transaction, or leave a
// batch its vote vouched for.
package replica

import (
	"github.com/tezos-dsn/dsn/internal/bullshark"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/store"
)

// CommittedSubDAG is one committed sub-DAG (pre-block) from Bullshark.
type CommittedSubDAG = bullshark.CommittedSubDAG

// Envelope is a message addressed to one peer.
type Envelope = narwhal.Envelope

// Early reports whether a message may leave before the writes of its
// Output are durable. Only votes and own headers may not: a vote vouches
// that this node stores the header's batches (they are in the writes of
// this or an earlier Output); a header is the node's signature for its
// round, and its store must still hold it, its batches' pending entries and
// the previous own certificate after a crash, or the restarted node could
// not send it again, or would propose those batches twice. A certificate,
// even an own new one, promises nothing about this node's store: a crash
// that loses it leaves the last proposed header, which the restarted node
// sends again (its voters vote the same), and a copy from a peer is taken
// as its certificate.
func Early(m narwhal.Message) bool {
	switch m.(type) {
	case *narwhal.VoteMsg, *narwhal.HeaderMsg:
		return false
	}
	return true
}

// Output is what one or more steps produced. See the package doc for the
// order in which a runtime must carry it out.
type Output struct {
	// Writes are applied before anything else in this Output happens, and
	// made durable before what is not Early.
	Writes []store.Write
	// SignedChanged: the node signed something new. Replica.Signed must be
	// durable outside the store before Messages leave, and handed back with
	// SetSigned after a restart: a store that loses writes must not make
	// the node sign twice for one round.
	SignedChanged bool
	// Messages to peers (never to self).
	Messages []Envelope
	// Acked holds the tickets of submitted transactions whose batch is
	// committed: ordered, whatever becomes of this node afterwards. (An
	// earlier acknowledgement, once the batch was stored on a quorum,
	// depended on this node living to propose it: a batch it never
	// proposed was lost with it, issue 15.)
	Acked []uint64
	// Committed holds newly committed sub-DAGs, in index order.
	Committed []*CommittedSubDAG
	// Accepted holds the certificates accepted into the DAG, in causal
	// order (what a DAG stream for rollup posters follows).
	Accepted []*narwhal.Certificate
	// Trace marks the steps of own batches on their way to the ordering,
	// for latency anatomy; a runtime may ignore it.
	Trace []TraceEvent
}

// Stage is a step of an own batch on its way to the ordering.
type Stage uint8

// The stages, in the order a batch passes them.
const (
	StageSealed    Stage = iota + 1 // sealed by this worker (and handed to the primary)
	StageProposed                   // named by a new own header
	StageCertified                  // that header certified
	StageCommitted                  // that certificate committed: its transactions are acknowledged
)

// String names the stage.
func (s Stage) String() string {
	return [...]string{"?", "sealed", "proposed", "certified", "committed"}[min(int(s), 4)]
}

// TraceEvent says that batches reached a stage.
type TraceEvent struct {
	Stage   Stage
	Batches []narwhal.Digest
}

// Append adds o's contents after out's, so a runtime can group several steps
// into one synced write (group commit) without changing their order.
func (out *Output) Append(o Output) {
	out.Writes = append(out.Writes, o.Writes...)
	out.SignedChanged = out.SignedChanged || o.SignedChanged
	out.Messages = append(out.Messages, o.Messages...)
	out.Acked = append(out.Acked, o.Acked...)
	out.Committed = append(out.Committed, o.Committed...)
	out.Accepted = append(out.Accepted, o.Accepted...)
	out.Trace = append(out.Trace, o.Trace...)
}

// Empty reports whether there is nothing to do.
func (out *Output) Empty() bool {
	return len(out.Writes) == 0 && !out.SignedChanged && len(out.Messages) == 0 && len(out.Acked) == 0 && len(out.Committed) == 0
}

func (out *Output) trace(s Stage, ds []narwhal.Digest) {
	if len(ds) > 0 {
		out.Trace = append(out.Trace, TraceEvent{Stage: s, Batches: ds})
	}
}
