// Package state is the DSN rollup kernel's state machine: a Bullshark
// replica fed from the inbox (DESIGN.md §5). It reassembles submissions
// from targeted external messages (internal/da), authenticates their
// certificates — the tips by signature with internal/narwhal's Verifier,
// every other one by the digest link from a checked descendant — checks
// that each certificate comes with exactly the batches its header names,
// runs the certificates in causal order through internal/bullshark (the
// code the nodes run), and for every committed sub-DAG writes a block, the
// head and a running ordering hash, and hands each transaction to the
// Application.
//
// Everything lives in a Store (the kernel's durable storage): a kernel_run
// starts from a fresh instance, so Load rebuilds the Bullshark state and
// the DAG above the GC horizon on every run. It is a pure core: no clock,
// no randomness, no I/O besides the Store. Bad input is reported through
// the debug function and skipped; it never panics the kernel.
//
// Durable layout (keys under the kernel's /dsn/ prefix):
//
//	committee      canonical narwhal.Committee (origination setup; never from the inbox)
//	committee_ok   BLAKE2b-256 of the committee bytes the kernel validated (later levels skip it)
//	committee_points   the committee's keys decompressed (crypto.KeySet.Points), for later levels
//	gc_depth       u64, big-endian (setup)
//	bullshark      Bullshark state (watermarks, last index)
//	dag/<round>    the certificates of a round above the GC horizon: (digest ‖ u32 length ‖ canonical certificate)…
//	dag_min, dag_max   u64: rounds stored
//	batch/<certificate digest>/<i>   the i-th batch of a certificate whose block is not written yet
//	pending/<n>, need/<digest>   committed sub-DAGs waiting for withheld batches, and the certificates they need
//	blocks/<n>     block n: index u64 ‖ leader digest ‖ commit timestamp u64 ‖ count u32 ‖ transaction digests (BLAKE2b-256)
//	head           u64: the last block
//	ordering_hash  BLAKE2b-256(previous hash ‖ block n record), chained from 32 zero bytes
//	da/…           the reassembler's pending chunks
//	app/…          the Application's state (the reference one: count, bytes)
package state

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"golang.org/x/crypto/blake2b"

	"github.com/tezos-dsn/dsn/internal/bullshark"
	"github.com/tezos-dsn/dsn/internal/crypto"
	"github.com/tezos-dsn/dsn/internal/da"
	"github.com/tezos-dsn/dsn/internal/narwhal"
)

// Store is the kernel's durable key-value space (see the package doc for
// the layout). Values may be of any size.
type Store = da.Store

// Application receives the committed transactions, block by block, in
// order. It keeps its state under its own Store (the app/ prefix).
type Application interface {
	ApplyBlock(st Store, block uint64, txs [][]byte)
}

// Digests is the reference application. As in the proof of concept, the
// state is the transactions' digests: each block's list is already in its
// block record (blocks/<n>), and ordering_hash chains the records, so the
// application keeps only the totals — app/count (u64) and app/bytes (u64),
// two writes per block. (It kept its own chain of the digests too, hashing
// every transaction a second time; the profile found it.)
type Digests struct{}

// ApplyBlock implements Application.
func (Digests) ApplyBlock(st Store, _ uint64, txs [][]byte) {
	n, size := u64(st, "count"), u64(st, "bytes")
	for _, tx := range txs {
		n++
		size += uint64(len(tx))
	}
	putU64(st, "count", n)
	putU64(st, "bytes", size)
}

// Errors of Load.
var (
	ErrNoCommittee = errors.New("state: no committee in durable storage (origination setup missing)")
	ErrCorrupt     = errors.New("state: durable state does not decode")
)

// Machine is one kernel_run's view of the rollup state.
type Machine struct {
	st       Store
	app      Application
	debug    func(string)
	rollup   [20]byte
	verifier *narwhal.Verifier
	b        *bullshark.Bullshark
	da       *da.Reassembler
	queued   []queuedSubmission // completed this level, run by EndLevel
	// held: the digests of the certificates stored above the GC horizon
	// (loaded with them, kept up by store), so that a certificate is
	// looked up without decoding its round again.
	held map[narwhal.Digest]bool
}

// prefixed is a Store under a key prefix.
type prefixed struct {
	st     Store
	prefix string
}

func (p prefixed) Get(k string) ([]byte, bool) { return p.st.Get(p.prefix + k) }
func (p prefixed) Put(k string, v []byte)      { p.st.Put(p.prefix+k, v) }
func (p prefixed) Delete(k string)             { p.st.Delete(p.prefix + k) }

func u64(st Store, k string) uint64 {
	raw, ok := st.Get(k)
	if !ok || len(raw) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(raw)
}

func putU64(st Store, k string, v uint64) { st.Put(k, binary.BigEndian.AppendUint64(nil, v)) }

// Setup writes what origination gives the kernel: the committee and its
// GC depth (the installer or the rollup node's setup step calls it; the
// inbox never can).
func Setup(st Store, c *narwhal.Committee, gcDepth uint64) {
	st.Put("committee", c.Encode())
	putU64(st, "gc_depth", gcDepth)
}

// Load rebuilds the machine of the rollup at address rollup from st: the
// committee from the setup, Bullshark's state and the DAG above its GC
// horizon.
func Load(st Store, rollup [20]byte, app Application, debug func(string)) (*Machine, error) {
	raw, ok := st.Get("committee")
	if !ok {
		return nil, ErrNoCommittee
	}
	committee, err := narwhal.DecodeCommittee(raw)
	// The committee is validated once (its keys decompressed and checked,
	// which costs a level as much as a few signatures in the PVM); its
	// digest under committee_ok says that these very bytes passed.
	// The decompressed keys are kept beside it (committee_points): a key's
	// square root and inversion cost a level more than loading its DAG.
	sum := blake2b.Sum256(raw)
	var keys *crypto.KeySet
	if ok, _ := st.Get("committee_ok"); err == nil && string(ok) == string(sum[:]) {
		pts, _ := st.Get("committee_points")
		keys, _ = crypto.NewKeySetFromPoints(committee.ConsensusKeys(), pts)
	} else if err == nil {
		if err = committee.Validate(); err == nil {
			st.Put("committee_ok", sum[:])
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: committee: %w", ErrCorrupt, err)
	}
	if keys == nil {
		if keys, err = crypto.NewKeySet(committee.ConsensusKeys()); err != nil {
			return nil, fmt.Errorf("%w: committee keys: %w", ErrCorrupt, err)
		}
		st.Put("committee_points", keys.Points())
	}
	v := narwhal.NewVerifierWith(committee, keys)
	gcDepth := u64(st, "gc_depth")
	if gcDepth < 2 {
		return nil, fmt.Errorf("%w: gc_depth %d", ErrCorrupt, gcDepth)
	}
	m := &Machine{st: st, app: app, debug: debug, rollup: rollup, verifier: v,
		b: bullshark.New(committee, gcDepth), da: da.NewReassembler(prefixed{st, "da/"}, da.DefaultConfig()),
		held: map[narwhal.Digest]bool{}}
	if raw, ok := st.Get("bullshark"); ok {
		s, err := bullshark.DecodeState(raw)
		if err == nil {
			err = m.b.Restore(s)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: bullshark: %w", ErrCorrupt, err)
		}
	}
	for r := max(u64(st, "dag_min"), m.b.GCRound()+1); r <= u64(st, "dag_max"); r++ {
		if err := m.load(r); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// load re-inserts the stored certificates of round r into Bullshark. The
// digest was stored with each certificate by store, so Load, which runs
// every level, hashes nothing; and a certificate at or below its author's
// last committed round — most of the DAG — is not even decoded
// (Bullshark.InsertCommitted).
func (m *Machine) load(r uint64) error {
	raw, _ := m.st.Get("dag/" + strconv.FormatUint(r, 10))
	_, err := splitRound(raw, func(d narwhal.Digest, enc []byte) error {
		author, round, ok := narwhal.PeekCertificate(enc)
		if !ok || round != r {
			return errors.New("certificate of another round")
		}
		if int(author) < m.verifier.Committee().Size() && round <= m.b.LastCommitted(author) {
			if err := m.b.InsertCommitted(author, round, d); err != nil {
				return fmt.Errorf("re-insert %s: %w", d.Short(), err)
			}
		} else {
			c, err := narwhal.DecodeCertificate(enc)
			if err != nil {
				return err
			}
			if err := m.b.InsertKnown(c, d); err != nil {
				return fmt.Errorf("re-insert %s: %w", d.Short(), err)
			}
		}
		m.held[d] = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: dag round %d: %w", ErrCorrupt, r, err)
	}
	return nil
}

// round returns the stored certificates of round r and their digests.
func (m *Machine) round(r uint64) ([]*narwhal.Certificate, []narwhal.Digest, error) {
	raw, _ := m.st.Get("dag/" + strconv.FormatUint(r, 10))
	var out []*narwhal.Certificate
	digests, err := splitRound(raw, func(_ narwhal.Digest, enc []byte) error {
		c, err := narwhal.DecodeCertificate(enc)
		out = append(out, c)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: dag round %d: %w", ErrCorrupt, r, err)
	}
	return out, digests, nil
}

// splitRound walks a dag/<round> record — (digest ‖ u32 length ‖
// certificate)… — calling each for every certificate's encoding.
func splitRound(raw []byte, each func(narwhal.Digest, []byte) error) ([]narwhal.Digest, error) {
	var digests []narwhal.Digest
	for len(raw) > 0 {
		const head = len(narwhal.Digest{}) + 4
		if len(raw) < head || uint64(binary.BigEndian.Uint32(raw[head-4:])) > uint64(len(raw)-head) {
			return nil, errors.New("truncated record")
		}
		n := int(binary.BigEndian.Uint32(raw[head-4:]))
		d := narwhal.Digest(raw[:head-4])
		if err := each(d, raw[head:head+n]); err != nil {
			return nil, err
		}
		digests = append(digests, d)
		raw = raw[head+n:]
	}
	return digests, nil
}

// Head returns the last block's index.
func (m *Machine) Head() uint64 { return u64(m.st, "head") }

// StartLevel expires the reassembler's stale submissions; call it once per
// level before its messages (and EndLevel after them).
func (m *Machine) StartLevel(level uint32) { m.da.Expire(level) }

// Input handles one external message of level (its bytes after the
// inbox's 01 tag). Messages for other rollups and anything malformed are
// skipped, the latter with a debug line.
func (m *Machine) Input(level uint32, msg []byte) {
	contents, ok := da.Untarget(m.rollup, msg)
	if !ok {
		return // not ours
	}
	chunk, err := da.DecodeChunk(contents)
	if err != nil {
		m.debug(fmt.Sprintf("dsn: level %d: skipped message: %v", level, err))
		return
	}
	payload, err := m.da.Add(level, chunk)
	if err != nil {
		m.debug(fmt.Sprintf("dsn: level %d: skipped chunk %d/%d of %x: %v", level, chunk.Index, chunk.Count, chunk.ID[:4], err))
		return
	}
	if payload == nil {
		return
	}
	entries, err := DecodeSubmission(payload)
	if err != nil {
		m.debug(fmt.Sprintf("dsn: level %d: skipped submission %x: %v", level, chunk.ID[:4], err))
		return
	}
	m.queued = append(m.queued, queuedSubmission{level: level, id: chunk.ID, entries: entries})
}

// queuedSubmission is a reassembled submission waiting for EndLevel.
type queuedSubmission struct {
	level   uint32
	id      da.ID
	entries []Entry
}

// EndLevel runs the submissions completed during the level; call it once
// the level's messages are read. They are authenticated together first:
// a tip of one submission that a certificate of a later one names needs
// no signature check, so a level costs about one round of signature
// checks however many submissions the posters cut it into (signature
// checks are most of the kernel's time in the PVM). If that fails, each
// submission is run on its own, so a bad one is rejected alone, with the
// outcome it would have had without the others.
func (m *Machine) EndLevel() {
	q := m.queued
	m.queued = nil
	if len(q) > 1 {
		var all []Entry
		for _, s := range q {
			all = append(all, s.entries...)
		}
		if err := m.Submit(all); err == nil {
			return
		}
	}
	for _, s := range q {
		if err := m.Submit(s.entries); err != nil {
			m.debug(fmt.Sprintf("dsn: level %d: rejected submission %x: %v", s.level, s.id[:4], err))
		}
	}
}

// Submit authenticates a submission and runs its new certificates through
// Bullshark. A submission with any malformed or unauthenticated
// certificate is rejected whole; certificates Bullshark refuses (a missing
// parent, an equivocation) are skipped one by one with a debug line.
func (m *Machine) Submit(entries []Entry) error {
	var fresh, fills []Entry
	var known []*narwhal.Certificate
	seen := map[narwhal.Digest]int{} // index in fresh, -1: held already
	digests := map[*narwhal.Certificate]narwhal.Digest{}
	for i, e := range entries {
		c := e.Certificate
		// A certificate without signers is "stripped": a poster may drop
		// the signatures of any certificate a later one in the same
		// submission names as a parent, since that child's signers vouched
		// for the parent's digest, which binds its header. Its header is
		// checked here; a stripped certificate that no authenticated
		// certificate names is an unsigned tip, and fails below.
		check := m.verifier.CheckCertificateShape
		if c.Round() > 0 && len(c.Signers) == 0 && len(c.Signatures) == 0 {
			check = func(c *narwhal.Certificate) error { return m.verifier.CheckHeader(&c.Header) }
		}
		if err := check(c); err != nil {
			return fmt.Errorf("certificate %d: %w", i, err)
		}
		if c.Round() == 0 {
			continue // genesis is implicit
		}
		if e.Withheld && len(e.Batches) > 0 {
			return fmt.Errorf("certificate %s: withheld with %d batches", c.Digest().Short(), len(e.Batches))
		}
		if !e.Withheld && len(e.Batches) != len(c.Header.Payload) {
			return fmt.Errorf("certificate %s: %d batches for %d digests", c.Digest().Short(), len(e.Batches), len(c.Header.Payload))
		}
		for j, b := range e.Batches {
			if b.Digest() != c.Header.Payload[j] {
				return fmt.Errorf("certificate %s: batch %d does not match its digest", c.Digest().Short(), j)
			}
		}
		d := c.Digest()
		digests[c] = d
		if !e.Withheld {
			fills = append(fills, e)
		}
		if c.Round() <= m.b.GCRound() {
			continue
		}
		if i, ok := seen[d]; ok {
			// The same certificate twice: keep the copy with its batches
			// (a withheld copy must not shadow a full one).
			if i >= 0 && fresh[i].Withheld && !e.Withheld {
				fresh[i] = e
			}
			continue
		}
		seen[d] = -1
		if m.held[d] {
			// Authenticated before: it still vouches for its parents.
			known = append(known, c)
			continue
		}
		seen[d] = len(fresh)
		fresh = append(fresh, e)
	}
	// Tips carry the authentication: every other new certificate is a
	// parent (transitively) of a tip or of a certificate already held, and
	// their signers vouched for their parents' digests.
	referenced := map[narwhal.Digest]bool{}
	for _, c := range known {
		for _, p := range c.Header.Parents {
			referenced[p] = true
		}
	}
	for _, e := range fresh {
		for _, p := range e.Certificate.Header.Parents {
			referenced[p] = true
		}
	}
	var tips []*narwhal.Certificate
	for _, e := range fresh {
		if !referenced[digests[e.Certificate]] {
			tips = append(tips, e.Certificate)
		}
	}
	if err := m.verifier.CheckCertificates(tips); err != nil {
		return err
	}
	slices.SortStableFunc(fresh, func(a, b Entry) int {
		if a.Certificate.Round() != b.Certificate.Round() {
			if a.Certificate.Round() < b.Certificate.Round() {
				return -1
			}
			return 1
		}
		return int(a.Certificate.Author()) - int(b.Certificate.Author())
	})
	progress := false
	for _, e := range fresh {
		switch err := m.process(e); {
		case err == nil:
			progress = true
		case errors.Is(err, bullshark.ErrMissingParent):
			m.suspend(e)
		default:
			m.debug(fmt.Sprintf("dsn: skipped certificate %s: %v", e.Certificate.Digest().Short(), err))
		}
	}
	if progress {
		m.wake()
	}
	// The submission stands: its batches complete what is held without
	// them (after process, so that this submission's own certificates are
	// held), and may complete blocks that wait.
	for _, e := range fills {
		m.fill(e.Certificate, e.Batches)
	}
	m.drain()
	m.st.Put("bullshark", m.b.State().Encode())
	m.gc()
	return nil
}

func needKey(d narwhal.Digest) string { return "need/" + hex.EncodeToString(d[:]) }

// fill stores the batches of a certificate (its header's digest binds the
// payload, and each batch was checked against it) where they are missing:
// for a committed, unwritten block that needs them, whatever the GC
// horizon, or for an uncommitted certificate held without them (it came
// withheld first), so that its block need not wait when it commits.
func (m *Machine) fill(c *narwhal.Certificate, batches []*narwhal.Batch) {
	d := c.Digest()
	if _, needed := m.st.Get(needKey(d)); !needed {
		// Not committed yet: only a certificate held without its batches
		// (it came withheld) takes them, for when it commits.
		if c.Round() <= m.b.LastCommitted(c.Author()) || !m.known(c) {
			return
		}
	}
	for j, b := range batches {
		if _, ok := m.st.Get(batchKey(d, j)); !ok {
			m.st.Put(batchKey(d, j), b.Encode())
		}
	}
}

// process runs one authenticated certificate through Bullshark, keeps it,
// and writes the blocks it commits.
func (m *Machine) process(e Entry) error {
	c := e.Certificate
	if c.Round() <= m.b.GCRound() {
		return nil // Bullshark ignores it: nothing to keep
	}
	subdags, err := m.b.ProcessCertificate(c)
	if err != nil {
		return err
	}
	if m.held[m.b.DigestOf(c)] {
		return nil // held already (it waited for its parents and came again): stored once
	}
	m.store(e)
	for _, s := range subdags {
		m.commit(s)
	}
	return nil
}

// MaxSuspended bounds the authenticated certificates kept while their
// parents are missing (submissions from several posters may arrive out of
// order); past it the newest are dropped, and a poster must send them again.
const MaxSuspended = 4096

// suspend keeps an authenticated certificate whose parents have not
// arrived: "wait" lists their digests, "wait/<digest>" holds each entry.
func (m *Machine) suspend(e Entry) {
	d := e.Certificate.Digest()
	k := "wait/" + hex.EncodeToString(d[:])
	if _, ok := m.st.Get(k); ok {
		return
	}
	list, _ := m.st.Get("wait")
	if len(list)/32 >= MaxSuspended {
		m.debug(fmt.Sprintf("dsn: dropped certificate %s: %d certificates already wait for parents", d.Short(), MaxSuspended))
		return
	}
	m.st.Put(k, EncodeSubmission([]Entry{e}))
	m.st.Put("wait", append(append([]byte(nil), list...), d[:]...))
}

// wake processes the suspended certificates whose parents are now there,
// round by round, until nothing moves; those below the GC horizon go.
func (m *Machine) wake() {
	list, _ := m.st.Get("wait")
	if len(list) == 0 {
		return
	}
	var waiting []Entry
	for i := 0; i+32 <= len(list); i += 32 {
		k := "wait/" + hex.EncodeToString(list[i:i+32])
		raw, _ := m.st.Get(k)
		m.st.Delete(k)
		es, err := DecodeSubmission(raw)
		if err != nil || len(es) != 1 {
			panic(fmt.Sprintf("state: suspended entry does not decode: %v", err)) // written by suspend
		}
		waiting = append(waiting, es[0])
	}
	m.st.Delete("wait")
	slices.SortStableFunc(waiting, func(a, b Entry) int {
		if a.Certificate.Round() != b.Certificate.Round() {
			if a.Certificate.Round() < b.Certificate.Round() {
				return -1
			}
			return 1
		}
		return int(a.Certificate.Author()) - int(b.Certificate.Author())
	})
	for moved := true; moved; {
		moved = false
		rest := waiting[:0]
		for _, e := range waiting {
			if e.Certificate.Round() <= m.b.GCRound() {
				continue
			}
			switch err := m.process(e); {
			case err == nil:
				moved = true
			case errors.Is(err, bullshark.ErrMissingParent):
				rest = append(rest, e)
			default:
				m.debug(fmt.Sprintf("dsn: skipped certificate %s: %v", e.Certificate.Digest().Short(), err))
			}
		}
		waiting = rest
	}
	for _, e := range waiting {
		m.suspend(e)
	}
}

// known reports whether Bullshark holds this very certificate.
func (m *Machine) known(c *narwhal.Certificate) bool { return m.held[c.Digest()] }

func batchKey(cert narwhal.Digest, i int) string {
	return "batch/" + hex.EncodeToString(cert[:]) + "/" + strconv.Itoa(i)
}

// store keeps an accepted certificate and its batches.
func (m *Machine) store(e Entry) {
	c := e.Certificate
	d := m.b.DigestOf(c)
	m.held[d] = true
	for i, b := range e.Batches { // none if withheld
		m.st.Put(batchKey(d, i), b.Encode())
	}
	k := "dag/" + strconv.FormatUint(c.Round(), 10)
	raw, _ := m.st.Get(k)
	enc := c.Encode()
	raw = binary.BigEndian.AppendUint32(append(append([]byte(nil), raw...), d[:]...), uint32(len(enc)))
	m.st.Put(k, append(raw, enc...))
	if c.Round() > u64(m.st, "dag_max") {
		putU64(m.st, "dag_max", c.Round())
	}
	if _, ok := m.st.Get("dag_min"); !ok {
		putU64(m.st, "dag_min", c.Round())
	}
}

// commit queues sub-DAG s for writing as a block (pending/<index>: index,
// leader, commit timestamp, and each certificate's digest and batch count)
// and marks each certificate's batches as needed (need/<digest>), then
// writes what can be written. Blocks are written in order, each once all
// its batches are stored: one whose certificate came withheld waits for a
// later submission that carries them (a poster that withholds can delay
// the rollup, never change it).
func (m *Machine) commit(s *bullshark.CommittedSubDAG) {
	rec := binary.BigEndian.AppendUint64(nil, s.Index)
	leader := m.b.DigestOf(s.Leader)
	rec = append(rec, leader[:]...)
	rec = binary.BigEndian.AppendUint64(rec, s.CommitTimestamp)
	rec = binary.BigEndian.AppendUint32(rec, uint32(len(s.Certificates)))
	for _, c := range s.Certificates {
		d := m.b.DigestOf(c)
		rec = append(rec, d[:]...)
		rec = binary.BigEndian.AppendUint32(rec, uint32(len(c.Header.Payload)))
		m.st.Put(needKey(d), nil)
	}
	m.st.Put("pending/"+strconv.FormatUint(s.Index, 10), rec)
	m.drain()
}

// drain writes the pending blocks after the head whose batches are all
// stored, in order.
func (m *Machine) drain() {
	for {
		next := u64(m.st, "head") + 1
		raw, ok := m.st.Get("pending/" + strconv.FormatUint(next, 10))
		if !ok {
			return
		}
		if len(raw) < 52 {
			panic(fmt.Sprintf("state: pending block %d does not decode", next)) // written by commit
		}
		n := binary.BigEndian.Uint32(raw[48:])
		type cert struct {
			d     narwhal.Digest
			count int
		}
		var certs []cert
		for k := range int(n) {
			off := 52 + 36*k
			certs = append(certs, cert{d: narwhal.Digest(raw[off : off+32]), count: int(binary.BigEndian.Uint32(raw[off+32:]))})
		}
		for _, c := range certs {
			for j := range c.count {
				if _, ok := m.st.Get(batchKey(c.d, j)); !ok {
					return // a withheld certificate's batches have not come yet
				}
			}
		}
		var txs [][]byte
		for _, c := range certs {
			for j := range c.count {
				b, _ := m.st.Get(batchKey(c.d, j))
				batch, err := narwhal.DecodeBatch(b)
				if err != nil {
					panic(fmt.Sprintf("state: stored batch does not decode: %v", err)) // checked when stored
				}
				txs = append(txs, batch.Transactions...)
				m.st.Delete(batchKey(c.d, j))
			}
			m.st.Delete(needKey(c.d))
		}
		m.writeBlock(raw[:48], txs)
		m.st.Delete("pending/" + strconv.FormatUint(next, 10))
	}
}

// writeBlock writes a block (its index, leader and commit timestamp, then
// its transactions' digests), hands the transactions to the application,
// and moves the head and the ordering hash.
func (m *Machine) writeBlock(head []byte, txs [][]byte) {
	index := binary.BigEndian.Uint64(head)
	rec := append([]byte(nil), head...)
	rec = binary.BigEndian.AppendUint32(rec, uint32(len(txs)))
	for _, tx := range txs {
		td := blake2b.Sum256(tx)
		rec = append(rec, td[:]...)
	}
	m.app.ApplyBlock(prefixed{m.st, "app/"}, index, txs)
	m.st.Put("blocks/"+strconv.FormatUint(index, 10), rec)
	putU64(m.st, "head", index)
	prev, ok := m.st.Get("ordering_hash")
	if !ok {
		prev = make([]byte, 32)
	}
	h := blake2b.Sum256(append(append([]byte(nil), prev...), rec...))
	m.st.Put("ordering_hash", h[:])
}

// gc drops the rounds at or below Bullshark's GC horizon, with the batches
// of their certificates that were never committed.
func (m *Machine) gc() {
	gc := m.b.GCRound()
	lo, ok := m.st.Get("dag_min")
	if !ok || len(lo) != 8 {
		return
	}
	r := binary.BigEndian.Uint64(lo)
	for ; r <= gc; r++ {
		certs, digests, err := m.round(r)
		if err != nil {
			panic(err.Error()) // written by store: a bug
		}
		for i, c := range certs {
			if _, needed := m.st.Get(needKey(digests[i])); needed {
				continue // committed: its block is written once its batches come
			}
			for j := range c.Header.Payload {
				m.st.Delete(batchKey(digests[i], j))
			}
		}
		m.st.Delete("dag/" + strconv.FormatUint(r, 10))
	}
	putU64(m.st, "dag_min", r)
}

// Block is a decoded block record.
type Block struct {
	Index           uint64
	Leader          narwhal.Digest
	CommitTimestamp uint64
	Transactions    []narwhal.Digest // BLAKE2b-256 of each transaction, in order
}

// ReadBlock decodes block n from st.
func ReadBlock(st Store, n uint64) (Block, bool, error) {
	raw, ok := st.Get("blocks/" + strconv.FormatUint(n, 10))
	if !ok {
		return Block{}, false, nil
	}
	if len(raw) < 52 {
		return Block{}, true, fmt.Errorf("%w: block %d", ErrCorrupt, n)
	}
	b := Block{Index: binary.BigEndian.Uint64(raw), CommitTimestamp: binary.BigEndian.Uint64(raw[40:])}
	copy(b.Leader[:], raw[8:40])
	k := binary.BigEndian.Uint32(raw[48:])
	rest := raw[52:]
	if uint64(len(rest)) != 32*uint64(k) {
		return Block{}, true, fmt.Errorf("%w: block %d", ErrCorrupt, n)
	}
	b.Transactions = make([]narwhal.Digest, k)
	for i := range b.Transactions {
		copy(b.Transactions[i][:], rest[32*i:])
	}
	return b, true, nil
}
