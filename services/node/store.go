package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/record"
	"github.com/cockroachdb/pebble/sstable"
	"github.com/cockroachdb/pebble/vfs"

	"github.com/tezos-dsn/dsn/internal/bullshark"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/pebblefatal"
	"github.com/tezos-dsn/dsn/internal/primary"
	"github.com/tezos-dsn/dsn/internal/store"
)

// storeMarker is the file a node writes into its data directory once it has
// created a store there. From then on the directory is never "new": a store
// that lost its pebble files is refused, never silently recreated.
const storeMarker = "DSN_STORE"

// storeRemedy ends every refusal to open a damaged store.
const storeRemedy = "move the directory aside and start the node on an empty data_dir to resync from peers (see docs/storage.md)"

// ErrStoreDamaged is wrapped by every refusal to open a store that failed a
// start-up check.
var ErrStoreDamaged = errors.New("node: store damaged")

// damagedError is a refusal: the directory, what failed (a file or a key)
// and the remedy, in one message.
type damagedError struct {
	dir, what string
	err       error
}

func (e *damagedError) Error() string {
	return fmt.Sprintf("store in %s is damaged, the node refuses to start: %s: %v; %s", e.dir, e.what, e.err, storeRemedy)
}

func (e *damagedError) Unwrap() []error { return []error{ErrStoreDamaged, e.err} }

func damaged(dir, what string, err error) error { return &damagedError{dir: dir, what: what, err: err} }

// storeOptions are the store's seams: the filesystem pebble works through
// (nil: the OS's; tests wrap it in vfs/errorfs).
type storeOptions struct {
	fs     vfs.FS
	signed signedRecord // the signing record: an existing store must not be behind it
}

// pebbleStore is the node's durable store: store.Reader for the cores, and
// Apply for their writes (one synced batch per call).
//
// Failure contract: pebble's fatal errors (Logger.Fatalf: a failed WAL
// write or sync, a failed MANIFEST update) and read errors never panic. The
// store records the first one (Fatal), tells the node, and parks the
// goroutine that hit it for good: pebble's contract is that Fatalf does not
// return, and a core must not go on with a read it could not make. The node
// then stops without waiting for parked goroutines and the process exits.
type pebbleStore struct {
	mu      sync.RWMutex // readers outside the event loop (Export) may race Close
	db      *pebble.DB
	dir     string
	closed  bool
	fatal   *pebblefatal.Signal
	existed bool          // opened on an existing store (not created)
	group   atomic.Uint64 // write groups committed so far (store.GroupKey), one per Write
	synced  atomic.Uint64 // write groups a completed sync covers (at most group)
	checked storeCheck    // what the start-up check covered (zero for a new store)
}

// Fatal returns a channel closed after a fatal store error, and that error
// once it is closed.
func (s *pebbleStore) Fatal() (<-chan struct{}, error) { return s.fatal.Fatal() }

func pebbleOptions(fs vfs.FS, fatal *pebblefatal.Signal, readOnly bool) *pebble.Options {
	// NB: batches dominate the writes (every node stores every batch). A
	// larger memtable and a higher L0 stop threshold keep compactions from
	// stalling the event loop's synced writes under load.
	return &pebble.Options{
		FS:                          fatal.FS(fs),
		Logger:                      fatal.Logger(),
		MemTableSize:                64 << 20,
		MemTableStopWritesThreshold: 4,
		L0CompactionThreshold:       4,
		L0StopWritesThreshold:       64,
		ReadOnly:                    readOnly,
		ErrorIfNotExists:            true,
	}
}

// openStore opens the store in dir, creating it only if dir is new (empty
// or absent). An existing store is first opened read-only and checked
// (checkStore); only a store that passes is opened for writing. Nothing is
// written before that (but pebble's LOCK file): pebble's read-write open
// replays and then discards the WAL, so a torn WAL checked afterwards would
// leave no trace, and a failed open must not rewrite CURRENT or MANIFEST.
func openStore(dir string, o storeOptions) (*pebbleStore, error) {
	fs := o.fs
	if fs == nil {
		fs = vfs.Default
	}
	fatal := pebblefatal.New(dir)
	isNew, err := newDataDir(fs, dir)
	if err != nil {
		return nil, err
	}
	if isNew {
		opts := pebbleOptions(fs, fatal, false)
		opts.ErrorIfNotExists = false
		db, err := pebble.Open(dir, opts)
		if err != nil {
			return nil, fmt.Errorf("create store in %s: %w", dir, err)
		}
		if err := writeMarker(fs, dir); err != nil {
			db.Close()
			return nil, err
		}
		ps := &pebbleStore{db: db, dir: dir, fatal: fatal}
		// A new store beside a kept signing record (--resync) counts its
		// write groups on from the record's, and says so at once (synced):
		// a crash before its first write must not leave it behind the record.
		ps.group.Store(o.signed.group)
		ps.synced.Store(o.signed.group)
		if o.signed.group > 0 {
			if err := ps.fatal.Commit(groupBatch(db, o.signed.group), pebble.Sync); err != nil {
				ps.close()
				return nil, err
			}
		}
		return ps, nil
	}
	walTail, err := checkFiles(fs, dir)
	if err != nil {
		return nil, err
	}
	ro, err := pebble.Open(dir, pebbleOptions(fs, fatal, true))
	if err != nil {
		return nil, damaged(dir, "pebble open (read-only)", err)
	}
	sc, checkErr := checkStore(ro, fs, dir, o.signed)
	if err := ro.Close(); err != nil && checkErr == nil {
		checkErr = damaged(dir, "pebble close (read-only)", err)
	}
	if checkErr != nil {
		return nil, checkErr
	}
	db, err := pebble.Open(dir, pebbleOptions(fs, fatal, false))
	if err != nil {
		return nil, damaged(dir, "pebble open", err)
	}
	if err := writeMarker(fs, dir); err != nil { // a store from before the marker
		db.Close()
		return nil, err
	}
	sc.walTail = walTail
	ps := &pebbleStore{db: db, dir: dir, fatal: fatal, existed: true, checked: sc}
	ps.group.Store(sc.group)
	ps.synced.Store(sc.group)
	return ps, nil
}

// newDataDir reports whether dir holds nothing yet (a mount point's
// lost+found aside); it creates dir if absent.
func newDataDir(fs vfs.FS, dir string) (bool, error) {
	names, err := fs.List(dir)
	if errors.Is(err, os.ErrNotExist) {
		if err := fs.MkdirAll(dir, 0o755); err != nil {
			return false, fmt.Errorf("data_dir: %w", err)
		}
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("data_dir %s: %w", dir, err)
	}
	for _, name := range names {
		// The signing record belongs to the node, not the store: it stays
		// when a damaged store is moved aside (docs/storage.md).
		if name != "lost+found" && name != signedFile {
			return false, nil
		}
	}
	return true, nil
}

// writeMarker writes the store marker durably (file and directory synced),
// once.
func writeMarker(fs vfs.FS, dir string) error {
	path := fs.PathJoin(dir, storeMarker)
	if _, err := fs.Stat(path); err == nil {
		return nil
	}
	f, err := fs.Create(path)
	if err != nil {
		return fmt.Errorf("store marker %s: %w", path, err)
	}
	_, err = io.WriteString(f, "dsn consensus node store: never delete pebble files by hand (docs/storage.md)\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		var d vfs.File
		if d, err = fs.OpenDir(dir); err == nil {
			err = d.Sync()
			d.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("store marker %s: %w", path, err)
	}
	return nil
}

// checkFiles checks, without pebble, the files pebble needs to find the
// store: CURRENT and the MANIFEST it names, and that the newest WAL ends on
// a whole record. Pebble itself opens a store without CURRENT as a new one
// and replays a torn WAL up to the tear without a word.
func checkFiles(fs vfs.FS, dir string) (walTail string, err error) {
	names, err := fs.List(dir)
	if err != nil {
		return "", fmt.Errorf("data_dir %s: %w", dir, err)
	}
	var newestLog string
	var newestNum uint64
	for _, name := range names {
		if strings.HasPrefix(name, "marker.manifest.") {
			return checkWAL(fs, dir, newestLogOf(names)) // a format that does not use CURRENT
		}
		var num uint64
		if n, _ := fmt.Sscanf(name, "%d.log", &num); n == 1 && name == fmt.Sprintf("%06d.log", num) && num >= newestNum {
			newestLog, newestNum = name, num
		}
	}
	raw, err := readAll(fs, fs.PathJoin(dir, "CURRENT"))
	if errors.Is(err, os.ErrNotExist) {
		return "", damaged(dir, "file CURRENT", errors.New("missing (it names the live MANIFEST; without it pebble would start an empty store over the old tables)"))
	}
	if err != nil {
		return "", damaged(dir, "file CURRENT", err)
	}
	manifest := strings.TrimSuffix(string(raw), "\n")
	if !strings.HasPrefix(manifest, "MANIFEST-") || strings.ContainsAny(manifest, "/\n") {
		return "", damaged(dir, "file CURRENT", fmt.Errorf("does not name a MANIFEST: %q", raw))
	}
	if _, err := fs.Stat(fs.PathJoin(dir, manifest)); err != nil {
		return "", damaged(dir, "file "+manifest+" (named by CURRENT)", err)
	}
	return checkWAL(fs, dir, newestLog)
}

func newestLogOf(names []string) string {
	var logs []string
	for _, name := range names {
		if strings.HasSuffix(name, ".log") {
			logs = append(logs, name)
		}
	}
	sort.Strings(logs) // fixed-width numbers: byte order is numeric order
	if len(logs) == 0 {
		return ""
	}
	return logs[len(logs)-1]
}

func readAll(fs vfs.FS, path string) ([]byte, error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 4096))
}

// checkWAL reads every record of the newest WAL. It ends at the first
// invalid record, as pebble's replay does: a process killed during a
// commit leaves one at the end (pebble writes a large record in several
// 32 KiB blocks), of a commit that was never acknowledged, and recycled WAL
// files hold stale records after the live ones. The node replays up to it,
// with a warning (tail). An I/O error is refused. NB: a WAL cut short by
// other means (a rollback of synced writes) looks the same; telling them
// apart needs a witness outside pebble (the never-sign-twice guard of
// issue 15, not built yet; docs/storage.md).
func checkWAL(fs vfs.FS, dir, name string) (tail string, err error) {
	if name == "" {
		return "", nil
	}
	var num uint64
	fmt.Sscanf(name, "%d.log", &num)
	f, err := fs.Open(fs.PathJoin(dir, name))
	if err != nil {
		return "", damaged(dir, "WAL "+name, err)
	}
	defer f.Close()
	r := record.NewReader(f, pebble.FileNum(num))
	records := 0
	for {
		rr, err := r.Next()
		if err == nil {
			_, err = io.Copy(io.Discard, rr)
		}
		switch {
		case errors.Is(err, io.EOF):
			return "", nil
		case record.IsInvalidRecord(err):
			return fmt.Sprintf("WAL %s ends in a torn or stale record after %d whole records (%v): replayed up to it, as pebble does", name, records, err), nil
		case err != nil:
			return "", damaged(dir, "WAL "+name, err)
		}
		records++
	}
}

// storeCheck says what the start-up check covered and what it cost.
type storeCheck struct {
	walTail    string // the WAL ended in a torn record (replayed up to it)
	tables     int
	tableBytes uint64
	subDAGs    uint64
	certs      int
	group      uint64 // the store's write groups (store.GroupKey)
	took       time.Duration
}

// checkStore checks a store opened read-only: every table's block
// checksums, then the node's invariants — the consensus state decodes;
// committed sub-DAGs 1..last are all stored, each with its certificates;
// the batches of the last one are stored or marked missing; the last
// proposed header and the votes decode.
func checkStore(db *pebble.DB, fs vfs.FS, dir string, signed signedRecord) (storeCheck, error) {
	start := time.Now()
	var sc storeCheck
	levels, err := db.SSTables()
	if err != nil {
		return sc, damaged(dir, "table list", err)
	}
	for _, level := range levels {
		for _, t := range level {
			name := fmt.Sprintf("%s.sst", t.BackingSSTNum)
			if err := checkTable(fs, fs.PathJoin(dir, name)); err != nil {
				return sc, damaged(dir, "table "+name, err)
			}
			sc.tables++
			sc.tableBytes += t.Size
		}
	}
	get := func(key []byte) ([]byte, bool, error) {
		v, closer, err := db.Get(key)
		if errors.Is(err, pebble.ErrNotFound) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		defer closer.Close()
		return append([]byte(nil), v...), true, nil
	}
	var last uint64
	raw, ok, err := get(store.ConsensusKey())
	if err != nil {
		return sc, damaged(dir, "key w (consensus state)", err)
	}
	if ok {
		s, err := bullshark.DecodeState(raw)
		if err != nil {
			return sc, damaged(dir, "key w (consensus state)", err)
		}
		last = s.LastIndex
	}
	var audited uint64
	if raw, ok, err := get(store.AuditedKey()); err != nil {
		return sc, damaged(dir, "key a (audited index)", err)
	} else if ok && len(raw) == 8 {
		audited = binary.BigEndian.Uint64(raw)
	}
	// certificate returns a committed certificate through its digest index.
	certificate := func(d narwhal.Digest, idx uint64) (*narwhal.Certificate, error) {
		raw, ok, err := get(store.CertDigestKey(d))
		if err == nil && (!ok || len(raw) != 10) {
			err = fmt.Errorf("certificate %s of sub-DAG %d: digest index missing", d.Short(), idx)
		}
		if err != nil {
			return nil, err
		}
		round, author := binary.BigEndian.Uint64(raw), binary.BigEndian.Uint16(raw[8:])
		raw, ok, err = get(store.CertificateKey(round, author))
		if err == nil && !ok {
			err = fmt.Errorf("certificate %s of sub-DAG %d (round %d, author %d) missing", d.Short(), idx, round, author)
		}
		if err != nil {
			return nil, err
		}
		sc.certs++
		return narwhal.DecodeCertificate(raw)
	}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{store.PrefixSubDAG}, UpperBound: store.PrefixEnd([]byte{store.PrefixSubDAG})})
	if err != nil {
		return sc, damaged(dir, "sub-DAG keys", err)
	}
	want := uint64(1)
	var checkErr error
	for ok := it.First(); ok && checkErr == nil; ok = it.Next() {
		key := fmt.Sprintf("key s/%d (committed sub-DAG)", want)
		k := it.Key()
		if len(k) != 9 || binary.BigEndian.Uint64(k[1:]) != want {
			checkErr = damaged(dir, key, fmt.Errorf("missing (found key %x instead)", k))
			break
		}
		rec, err := bullshark.DecodeRecord(it.Value())
		if err != nil {
			checkErr = damaged(dir, key, err)
			break
		}
		for _, d := range append(append([]narwhal.Digest(nil), rec.Certificates...), rec.Support...) {
			c, err := certificate(d, want)
			if err != nil {
				checkErr = damaged(dir, key, err)
				break
			}
			if want != last || audited < last {
				continue // batches: those of the last sub-DAG (see docs/storage.md); the audit marks the rest
			}
			for _, bd := range c.Header.Payload {
				_, stored, err := get(store.BatchKey(bd))
				if err == nil && !stored {
					if _, stored, err = get(store.MissingKey(bd)); err == nil && !stored {
						err = fmt.Errorf("batch %s of certificate %s neither stored nor marked missing", bd.Short(), d.Short())
					}
				}
				if err != nil {
					checkErr = damaged(dir, key, err)
					break
				}
			}
		}
		want++
	}
	if err := it.Close(); err != nil && checkErr == nil {
		checkErr = damaged(dir, "sub-DAG keys", err)
	}
	if checkErr != nil {
		return sc, checkErr
	}
	if want-1 != last {
		return sc, damaged(dir, fmt.Sprintf("key s/%d (committed sub-DAG)", want), fmt.Errorf("missing: the consensus state says %d sub-DAGs were committed, %d are stored", last, want-1))
	}
	sc.subDAGs = last
	// What the store says this node signed, for the signing record.
	var own primary.Signed
	if raw, ok, err := get(store.GroupKey()); err != nil || ok && len(raw) != 8 {
		if err == nil {
			err = fmt.Errorf("%d bytes", len(raw))
		}
		return sc, damaged(dir, "key g (write groups)", err)
	} else if ok {
		sc.group = binary.BigEndian.Uint64(raw)
	}
	if raw, ok, err := get(store.LastProposedKey()); err != nil {
		return sc, damaged(dir, "key h (last proposed header)", err)
	} else if ok {
		h, err := narwhal.DecodeHeader(raw)
		if err != nil {
			return sc, damaged(dir, "key h (last proposed header)", err)
		}
		own.Proposed = h.Round
	}
	// The signing record is written after the store's writes of the same
	// group, so an intact store is never behind it: not in its write
	// groups, nor in its last proposed header. One that is lost writes it
	// had synced (a truncated WAL, an older copy) and may lack committed
	// state or batches it vouched for.
	if signed.group > sc.group {
		return sc, damaged(dir, "store against the signing record "+signedFile, fmt.Errorf("the store has %d write groups, the signing record was written after group %d: the store lost writes it had synced (a truncated WAL, an older copy)", sc.group, signed.group))
	}
	if behind := signedBehind(own, signed.Signed); behind != "" {
		return sc, damaged(dir, "store against the signing record "+signedFile, errors.New(behind))
	}
	sc.took = time.Since(start)
	return sc, nil
}

// checkTable verifies the checksum of every block of one table.
func checkTable(fs vfs.FS, path string) error {
	f, err := fs.Open(path)
	if err != nil {
		return err
	}
	readable, err := sstable.NewSimpleReadable(f)
	if err != nil {
		f.Close()
		return err
	}
	r, err := sstable.NewReader(readable, sstable.ReaderOptions{}) // closes readable on error
	if err != nil {
		return err
	}
	defer r.Close() // closes readable
	return r.ValidateBlockChecksums()
}

// readFailed stops the node on a read error: a node that cannot read its
// own state must not go on, and must not take "unreadable" for "absent".
func (s *pebbleStore) readFailed(key []byte, err error) {
	s.fatal.FailAndPark(fmt.Errorf("store in %s: read key %x: %w; %s", s.dir, key, err, storeRemedy))
}

// Get implements store.Reader. A read error other than "not found" stops
// the node (see pebbleStore).
func (s *pebbleStore) Get(key []byte) ([]byte, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, false
	}
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false
	}
	if err != nil {
		s.readFailed(key, err)
	}
	out := append([]byte(nil), v...)
	closer.Close()
	return out, true
}

// Size returns the length of key's value without copying it.
func (s *pebbleStore) Size(key []byte) (int, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, false
	}
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false
	}
	if err != nil {
		s.readFailed(key, err)
	}
	n := len(v)
	closer.Close()
	return n, true
}

// Scan implements store.Reader.
func (s *pebbleStore) Scan(start, end []byte, fn func(k, v []byte) bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: start, UpperBound: end})
	if err != nil {
		s.readFailed(start, err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		if !fn(it.Key(), it.Value()) {
			break
		}
	}
	if err := it.Close(); err != nil {
		s.readFailed(start, err)
	}
}

// Apply writes ws as one atomic batch and syncs it to disk (Write, then
// Sync).
func (s *pebbleStore) Apply(ws []store.Write) error {
	if _, err := s.Write(ws); err != nil {
		return err
	}
	return s.Sync()
}

// Write applies ws as one atomic batch, the next write group, without
// syncing it: readers see it at once, and a crash may lose it (pebble keeps
// unsynced WAL records in its own buffer, so even a kill -9 may) together
// with every later group, never an earlier one without it (one WAL, in
// order). It returns the group's number. A failed commit is fatal inside
// pebble (Fatalf): Write returns the fatal error, and the node stops.
func (s *pebbleStore) Write(ws []store.Write) (uint64, error) {
	if len(ws) == 0 {
		return s.group.Load(), nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, fmt.Errorf("store in %s: closed", s.dir)
	}
	if _, err := s.Fatal(); err != nil { // after a fatal error, nothing more is written
		return 0, err
	}
	g := s.group.Load() + 1 // one writer: the node's committer
	b := groupBatch(s.db, g)
	for _, w := range ws {
		var err error
		if w.Delete {
			err = b.Delete(w.Key, nil)
		} else {
			err = b.Set(w.Key, w.Value, nil)
		}
		if err != nil {
			b.Close()
			return 0, fmt.Errorf("store batch: %w", err)
		}
	}
	// A failed commit is fatal inside pebble, which parks the committing
	// goroutine; Write still returns (pebblefatal.Commit), and releases the
	// store's lock, so that the node stops and closes the store cleanly.
	if err := s.fatal.Commit(b, pebble.NoSync); err != nil {
		return 0, err
	}
	s.group.Store(g) // in the WAL now: a Sync from here on covers it
	return g, nil
}

// Sync makes every group written so far durable (Synced then counts
// them). Safe to call from several goroutines.
func (s *pebbleStore) Sync() error {
	g := s.group.Load()
	if g <= s.synced.Load() {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("store in %s: closed", s.dir)
	}
	if _, err := s.Fatal(); err != nil {
		return err
	}
	// A synced WAL record without data syncs the WAL up to it: every group
	// written before.
	b := s.db.NewBatch()
	if err := b.LogData(nil, nil); err != nil {
		b.Close()
		return fmt.Errorf("store sync: %w", err)
	}
	if err := s.fatal.CommitSync(s.db, b); err != nil {
		return err
	}
	for { // two goroutines may sync at once: keep the larger
		if old := s.synced.Load(); old >= g || s.synced.CompareAndSwap(old, g) {
			return nil
		}
	}
}

// Synced returns how many write groups a completed sync covers.
func (s *pebbleStore) Synced() uint64 { return s.synced.Load() }

// groupBatch returns a batch that starts by recording write group n.
func groupBatch(db *pebble.DB, n uint64) *pebble.Batch {
	b := db.NewBatch()
	_ = b.Set(store.GroupKey(), binary.BigEndian.AppendUint64(nil, n), nil) // an unindexed batch's Set cannot fail
	return b
}

// Close closes the store; after a fatal error it gives up after a few
// seconds (pebblefatal.Signal.Close).
func (s *pebbleStore) Close() error { return s.fatal.Close(s.close) }

func (s *pebbleStore) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.db.Close()
}

// loadCertificate returns a stored certificate's canonical bytes and value.
func loadCertificate(st *pebbleStore, d narwhal.Digest) ([]byte, *narwhal.Certificate, error) {
	raw, ok := store.CertificateByDigest(st, d)
	if !ok {
		return nil, nil, fmt.Errorf("certificate %s not stored", d.Short())
	}
	c, err := narwhal.DecodeCertificate(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("stored certificate %s: %w", d.Short(), err)
	}
	return raw, c, nil
}
