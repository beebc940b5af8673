package worker

import (
	"testing"

	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/store"
)

func committee(n int) *narwhal.Committee {
	c := &narwhal.Committee{Authorities: make([]narwhal.Authority, n)}
	for i := range c.Authorities {
		c.Authorities[i].Stake = 1000
	}
	return c
}

var cfg = Config{BatchSize: 100, MaxBatchDelay: 3, RetryTicks: 5, MaxResponseBytes: 1 << 20}

func msgsTo(out Output) map[narwhal.AuthorityID][]narwhal.Message {
	m := map[narwhal.AuthorityID][]narwhal.Message{}
	for _, e := range out.Messages {
		m[e.To] = append(m[e.To], e.Msg)
	}
	return m
}

// A batch sealed on size is handed to the primary at once, with its
// pending entry, and broadcast until a quorum of workers acknowledged it.
func TestSealOnSizeProposesAtOnce(t *testing.T) {
	st := store.NewMemory()
	w := New(cfg, committee(7), 0, st)
	out := w.Submit(1, make([]byte, 60))
	if len(out.Writes)+len(out.Messages) != 0 {
		t.Fatal("sealed below the size limit")
	}
	out = w.Submit(2, make([]byte, 60))
	if len(out.Writes) != 2 || out.Writes[0].Key[0] != store.PrefixBatch || out.Writes[1].Key[0] != store.PrefixPending || len(out.Messages) != 6 {
		t.Fatalf("seal: %d writes, %d messages; want the batch and its pending entry, and 6 broadcasts", len(out.Writes), len(out.Messages))
	}
	d := out.Messages[0].Msg.(*narwhal.BatchMsg).Batch.Digest()
	if len(out.Available) != 1 || out.Available[0].Digest != d || len(out.Available[0].Tickets) != 2 {
		t.Fatalf("seal: available %v; want the batch with both tickets", out.Available)
	}
	st.Apply(out.Writes)
	for _, from := range []narwhal.AuthorityID{1, 2, 3, 3} { // a duplicate ack counts once
		w.Receive(from, &narwhal.BatchAckMsg{Digest: d})
	}
	if s := w.Stats(); s.BatchesInFlight != 1 {
		t.Fatalf("4 of 7 stored it: %d in flight, want 1", s.BatchesInFlight)
	}
	w.Receive(4, &narwhal.BatchAckMsg{Digest: d})
	if s := w.Stats(); s.BatchesInFlight != 0 {
		t.Fatalf("a quorum stored it: %d in flight, want 0", s.BatchesInFlight)
	}
}

// The same transactions sealed again while their first batch is in flight
// (a client retried) are proposed again, without a second broadcast.
func TestSealAgainWhileInFlight(t *testing.T) {
	w := New(cfg, committee(4), 0, store.NewMemory())
	w.Submit(1, []byte("a"))
	first := w.Flush()
	w.Submit(2, []byte("a"))
	var again Output
	for i := 0; i < cfg.MaxBatchDelay; i++ {
		again = w.Tick()
	}
	if len(again.Available) != 1 || again.Available[0].Digest != first.Available[0].Digest || again.Available[0].Seq == first.Available[0].Seq {
		t.Fatalf("sealed again: available %v; want the same digest with a new pending entry", again.Available)
	}
	if len(again.Messages) != 0 {
		t.Fatalf("sealed again: %d broadcasts, want none (the first is in flight)", len(again.Messages))
	}
}

func TestSealOnDelayAndRetry(t *testing.T) {
	w := New(cfg, committee(4), 1, store.NewMemory())
	w.Submit(7, []byte("tx"))
	var out Output
	for i := 0; i < cfg.MaxBatchDelay; i++ {
		out = w.Tick()
	}
	if len(out.Messages) != 3 {
		t.Fatalf("delay seal: %d broadcasts, want 3", len(out.Messages))
	}
	d := out.Messages[0].Msg.(*narwhal.BatchMsg).Batch.Digest()
	w.Receive(0, &narwhal.BatchAckMsg{Digest: d})
	var all Output
	for i := 0; i < cfg.RetryTicks; i++ {
		o := w.Tick()
		all.Messages = append(all.Messages, o.Messages...)
	}
	got := msgsTo(all)
	if len(got[0]) != 0 || len(got[2]) != 1 || len(got[3]) != 1 {
		t.Fatalf("retry went to %v; want only the non-ackers 2 and 3", got)
	}
}

func TestStoreOthersBatchAndServeIt(t *testing.T) {
	st := store.NewMemory()
	w := New(cfg, committee(4), 0, st)
	b := narwhal.Batch{Transactions: [][]byte{[]byte("a"), []byte("b")}}
	out, err := w.Receive(2, &narwhal.BatchMsg{Batch: b})
	if err != nil || len(out.Writes) != 1 || len(out.Stored) != 1 {
		t.Fatalf("store: %v %+v", err, out)
	}
	if ack := out.Messages[0]; ack.To != 2 || ack.Msg.(*narwhal.BatchAckMsg).Digest != b.Digest() {
		t.Fatal("no ack to the sender")
	}
	st.Apply(out.Writes)
	out, _ = w.Receive(2, &narwhal.BatchMsg{Batch: b})
	if len(out.Writes) != 0 || len(out.Messages) != 1 {
		t.Fatal("a duplicate batch must be acked again without a write")
	}
	out, _ = w.Receive(3, &narwhal.BatchRequestMsg{Digests: []narwhal.Digest{b.Digest(), narwhal.Hash([]byte("nope"))}})
	resp := out.Messages[0].Msg.(*narwhal.BatchResponseMsg)
	if len(resp.Batches) != 1 || resp.Batches[0].Digest() != b.Digest() {
		t.Fatal("request not served from the store")
	}
}

func TestFetchMissingBatches(t *testing.T) {
	w := New(cfg, committee(4), 0, store.NewMemory())
	b := narwhal.Batch{Transactions: [][]byte{[]byte("x")}}
	out := w.Fetch([]narwhal.Digest{b.Digest()}, 2, 5)
	if len(out.Messages) != 0 {
		t.Fatal("fetch must first give the author's broadcast time to arrive")
	}
	for range headerFetchDelay {
		out = w.Tick()
	}
	if len(out.Messages) != 1 || out.Messages[0].To != 2 {
		t.Fatalf("fetch must then ask the header's author, got %+v", out.Messages)
	}
	for i := 0; i < cfg.RetryTicks; i++ {
		out = w.Tick()
	}
	if len(out.Messages) != 1 || out.Messages[0].To != 3 {
		t.Fatalf("retry must ask the next peer, got %+v", out.Messages)
	}
	bogus := narwhal.Batch{Transactions: [][]byte{[]byte("unasked")}}
	out, err := w.Receive(3, &narwhal.BatchResponseMsg{Batches: []narwhal.Batch{b, bogus}})
	if err == nil || len(out.Stored) != 1 || out.Stored[0] != b.Digest() {
		t.Fatalf("response: stored %v err %v; want the asked batch stored and an error for the other", out.Stored, err)
	}
	if !w.Has(b.Digest()) || w.Has(bogus.Digest()) {
		t.Fatal("Has disagrees with what was stored")
	}
}

// A header's batch that arrives by the author's broadcast during the
// delay is never asked for; a committed certificate's batch is asked for
// at once, even if a header's fetch was waiting.
func TestFetchWaitsForTheBroadcast(t *testing.T) {
	w := New(cfg, committee(4), 0, store.NewMemory())
	b := narwhal.Batch{Transactions: [][]byte{[]byte("on its way")}}
	w.Fetch([]narwhal.Digest{b.Digest()}, 2, 5)
	w.Receive(2, &narwhal.BatchMsg{Batch: b})
	for range 3 * headerFetchDelay {
		if out := w.Tick(); len(out.Messages) != 0 {
			t.Fatalf("asked for a batch the broadcast brought: %+v", out.Messages)
		}
	}
	c := narwhal.Batch{Transactions: [][]byte{[]byte("committed")}}
	w.Fetch([]narwhal.Digest{c.Digest()}, 2, 6)
	out := w.FetchCommitted([]narwhal.Digest{c.Digest()}, 2, 6)
	var asked bool
	for _, e := range out.Messages {
		if r, ok := e.Msg.(*narwhal.BatchRequestMsg); ok && e.To == 2 && len(r.Digests) == 1 && r.Digests[0] == c.Digest() {
			asked = true
		}
	}
	if !asked {
		t.Fatalf("a committed batch must be asked for at once: %+v", out.Messages)
	}
}

func TestPendingSequenceSurvivesRestart(t *testing.T) {
	st := store.NewMemory()
	st.Apply([]store.Write{store.Put(store.PendingKey(41), make([]byte, 32))})
	w := New(cfg, committee(1), 0, st)
	out := w.Submit(1, make([]byte, 200)) // single authority: quorum at once
	if len(out.Available) != 1 || out.Available[0].Seq != 42 {
		t.Fatalf("pending seq after restart = %+v, want 42", out.Available)
	}
}

func TestUnexpectedMessage(t *testing.T) {
	w := New(cfg, committee(4), 0, store.NewMemory())
	if _, err := w.Receive(1, &narwhal.VoteMsg{}); err == nil {
		t.Fatal("a primary message must be refused")
	}
}

// A batch of a committed certificate is fetched until it is stored: the GC
// horizon does not end the fetch, a restart resumes it from its durable
// mark, and storing the batch deletes the mark.
func TestCommittedFetchOutlivesGCAndRestart(t *testing.T) {
	st := store.NewMemory()
	w := New(cfg, committee(7), 0, st)
	b := narwhal.Batch{Transactions: [][]byte{[]byte("committed")}}
	d := b.Digest()
	other := narwhal.Batch{Transactions: [][]byte{[]byte("uncommitted")}}
	w.Fetch([]narwhal.Digest{other.Digest()}, 2, 4)
	out := w.FetchCommitted([]narwhal.Digest{d}, 3, 5)
	st.Apply(out.Writes)
	if _, ok := st.Get(store.MissingKey(d)); !ok {
		t.Fatal("no durable missing mark for a committed batch")
	}
	if m := msgsTo(out)[3]; len(m) != 1 {
		t.Fatalf("the author must be asked first: %v", out.Messages)
	}
	w.GC(10)
	if s := w.Stats(); s.BatchesFetching != 1 || s.BatchesMissing != 1 {
		t.Fatalf("after GC: %+v; want only the committed fetch left", s)
	}
	// Retries rotate through the peers.
	var asked []narwhal.AuthorityID
	for range 3 * cfg.RetryTicks {
		for to := range msgsTo(w.Tick()) {
			asked = append(asked, to)
		}
	}
	if len(asked) != 3 || asked[0] != 4 || asked[1] != 5 {
		t.Fatalf("retries asked %v; want 4, 5, 6", asked)
	}

	// Restart: the mark brings the fetch back, and Start asks for it.
	w = New(cfg, committee(7), 0, st)
	out = w.Start()
	if len(out.Messages) != 1 {
		t.Fatalf("restart sent %d requests, want 1", len(out.Messages))
	}
	req := out.Messages[0].Msg.(*narwhal.BatchRequestMsg)
	if len(req.Digests) != 1 || req.Digests[0] != d {
		t.Fatalf("restart asked for %v", req.Digests)
	}
	out, err := w.Receive(out.Messages[0].To, &narwhal.BatchResponseMsg{Batches: []narwhal.Batch{b}})
	if err != nil {
		t.Fatal(err)
	}
	st.Apply(out.Writes)
	if _, ok := st.Get(store.MissingKey(d)); ok {
		t.Fatal("the missing mark survived the batch")
	}
	if s := w.Stats(); s.BatchesFetching != 0 || s.BatchesMissing != 0 || s.FetchedBelowGC != 0 {
		t.Fatalf("after the response: %+v", s)
	}
}

// Flush seals at once when no own batch waits for its quorum, and
// otherwise lets transactions gather behind the one in flight.
func TestFlushFollowsNaglesRule(t *testing.T) {
	w := New(cfg, committee(4), 0, store.NewMemory())
	w.Submit(1, []byte("a"))
	out := w.Flush()
	if len(out.Sealed) != 1 {
		t.Fatal("nothing in flight: Flush must seal")
	}
	d := out.Sealed[0]
	w.Submit(2, []byte("b"))
	w.Submit(3, []byte("c"))
	if out := w.Flush(); len(out.Sealed) != 0 {
		t.Fatal("a batch in flight: Flush must wait")
	}
	w.Receive(1, &narwhal.BatchAckMsg{Digest: d})
	w.Receive(2, &narwhal.BatchAckMsg{Digest: d})
	if s := w.Stats(); s.BatchesInFlight != 0 {
		t.Fatal("quorum not reached")
	}
	out = w.Flush()
	if len(out.Sealed) != 1 || len(out.Messages) != 3 {
		t.Fatalf("after the quorum Flush must seal the two waiting transactions: %+v", out)
	}
	if b := out.Messages[0].Msg.(*narwhal.BatchMsg); len(b.Batch.Transactions) != 2 {
		t.Fatalf("sealed %d transactions, want 2", len(b.Batch.Transactions))
	}
}
