package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/record"
	"github.com/cockroachdb/pebble/vfs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/bullshark"
	"github.com/tezos-dsn/dsn/internal/config"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/store"
)

// committedStore writes into a fresh store in dir a committed sequence of
// n sub-DAGs, each of `certs` certificates naming one batch of `size`
// bytes, as the replica writes it (records, certificates with their digest
// index, batches, consensus state, audited index), and closes it. It
// returns the last sub-DAG's record.
func committedStore(t testing.TB, dir string, n, certs, size int) bullshark.Record {
	t.Helper()
	st, err := openStore(dir, storeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var rec bullshark.Record
	var parents []narwhal.Digest
	rng := rand.New(rand.NewSource(int64(n)))
	for idx := 1; idx <= n; idx++ {
		var ws []store.Write
		rec = bullshark.Record{Index: uint64(idx), CommitTimestamp: uint64(idx)}
		var next []narwhal.Digest
		for a := range certs {
			tx := make([]byte, size)
			rng.Read(tx) // incompressible, like real transactions
			b := narwhal.Batch{Transactions: [][]byte{tx}}
			c := narwhal.Certificate{Header: narwhal.Header{Author: narwhal.AuthorityID(a), Round: uint64(idx), Parents: parents,
				Payload: []narwhal.Digest{b.Digest()}}}
			d := c.Digest()
			idxv := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint64(nil, c.Round()), uint16(a))
			ws = append(ws, store.Put(store.BatchKey(b.Digest()), b.Encode()),
				store.Put(store.CertificateKey(c.Round(), uint16(a)), c.Encode()), store.Put(store.CertDigestKey(d), idxv))
			rec.Certificates = append(rec.Certificates, d)
			next = append(next, d)
		}
		slices.SortFunc(next, func(a, b narwhal.Digest) int { return bytes.Compare(a[:], b[:]) })
		parents = next // canonical: sorted
		rec.Leader = rec.Certificates[len(rec.Certificates)-1]
		state := bullshark.State{LastIndex: uint64(idx), CommittedRound: uint64(idx), LastCommitted: make([]uint64, certs)}
		ws = append(ws, store.Put(store.SubDAGKey(uint64(idx)), rec.Encode()), store.Put(store.ConsensusKey(), state.Encode()),
			store.Put(store.AuditedKey(), binary.BigEndian.AppendUint64(nil, uint64(idx))))
		if err := st.Apply(ws); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return rec
}

// edit applies ws to the store in dir with the node's own open path.
func edit(t testing.TB, dir string, ws ...store.Write) {
	t.Helper()
	st, err := openStore(dir, storeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(ws); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

// The start-up check refuses a store that lost committed state, naming the
// key; a batch marked missing is fine (the worker fetches it).
func TestOpenRefusesLostCommittedState(t *testing.T) {
	batchOf := func(t *testing.T, dir string, rec bullshark.Record) narwhal.Digest {
		st, err := openStore(dir, storeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		_, c, err := loadCertificate(st, rec.Certificates[0])
		if err != nil {
			t.Fatal(err)
		}
		return c.Header.Payload[0]
	}
	for _, tc := range []struct {
		name string
		edit func(t *testing.T, dir string, rec bullshark.Record) []store.Write
		want string // "" : the store opens
	}{
		{"intact", func(*testing.T, string, bullshark.Record) []store.Write { return nil }, ""},
		{"sub-DAG record lost", func(*testing.T, string, bullshark.Record) []store.Write {
			return []store.Write{store.Del(store.SubDAGKey(7))}
		}, "key s/7 (committed sub-DAG): missing"},
		{"last sub-DAG lost", func(*testing.T, string, bullshark.Record) []store.Write {
			return []store.Write{store.Del(store.SubDAGKey(20))}
		}, "key s/20 (committed sub-DAG): missing: the consensus state says 20"},
		{"certificate lost", func(_ *testing.T, _ string, rec bullshark.Record) []store.Write {
			return []store.Write{store.Del(store.CertificateKey(20, 1))}
		}, "key s/20 (committed sub-DAG): certificate"},
		{"batch lost", func(t *testing.T, dir string, rec bullshark.Record) []store.Write {
			return []store.Write{store.Del(store.BatchKey(batchOf(t, dir, rec)))}
		}, "neither stored nor marked missing"},
		{"batch marked missing", func(t *testing.T, dir string, rec bullshark.Record) []store.Write {
			d := batchOf(t, dir, rec)
			return []store.Write{store.Del(store.BatchKey(d)), store.Put(store.MissingKey(d), make([]byte, 10))}
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			rec := committedStore(t, dir, 20, 4, 512)
			if ws := tc.edit(t, dir, rec); len(ws) > 0 {
				edit(t, dir, ws...)
			}
			st, err := openStore(dir, storeOptions{})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				st.Close()
				return
			}
			if err == nil {
				st.Close()
				t.Fatalf("opened a store that lost committed state (%s)", tc.name)
			}
			if !errors.Is(err, ErrStoreDamaged) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), dir) {
				t.Fatalf("refusal %q\ndoes not name %q and the directory", err, tc.want)
			}
		})
	}
}

// Only an empty directory gets a new store: one whose pebble files are
// gone but whose marker stays is refused, and nothing is created in it.
func TestOpenNeverRecreatesAStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	committedStore(t, dir, 3, 4, 128)
	if _, err := os.Stat(filepath.Join(dir, storeMarker)); err != nil {
		t.Fatalf("no store marker after creation: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != storeMarker {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	_, err := openStore(dir, storeOptions{})
	if err == nil || !errors.Is(err, ErrStoreDamaged) {
		t.Fatalf("a wiped store with its marker: %v, want a refusal", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("the refused open left %d files, want the marker only", len(entries))
	}
	// A mount point's lost+found does not make a directory "used".
	fresh := filepath.Join(t.TempDir(), "mnt")
	if err := os.MkdirAll(filepath.Join(fresh, "lost+found"), 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := openStore(fresh, storeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
}

// What the start-up check costs on a store of a few thousand committed
// sub-DAGs (reported in docs/storage.md). DSN_STORE_CHECK_SUBDAGS and
// DSN_STORE_CHECK_BATCH size it up.
func TestStartupCheckCost(t *testing.T) {
	n, size := 3000, 4<<10
	if s := os.Getenv("DSN_STORE_CHECK_SUBDAGS"); s != "" {
		fmt.Sscan(s, &n)
	}
	if s := os.Getenv("DSN_STORE_CHECK_BATCH"); s != "" {
		fmt.Sscan(s, &size)
	}
	if testing.Short() {
		n = 300
	}
	dir := filepath.Join(t.TempDir(), "data")
	start := time.Now()
	committedStore(t, dir, n, 4, size)
	built := time.Since(start)
	// Tables, as on a node that ran a while: reopen flushes nothing by
	// itself, so compact through pebble.
	st, err := openStore(dir, storeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.db.Compact([]byte{0}, []byte{0xff}, false); err != nil {
		t.Fatal(err)
	}
	st.Close()
	start = time.Now()
	st, err = openStore(dir, storeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	open := time.Since(start)
	sc := st.checked
	st.Close()
	t.Logf("%d sub-DAGs, %d certificates, %d tables of %.1f MiB (built in %s): open with checks %s, checks alone %s",
		sc.subDAGs, sc.certs, sc.tables, float64(sc.tableBytes)/(1<<20), built.Round(time.Millisecond),
		open.Round(time.Millisecond), sc.took.Round(time.Millisecond))
	if sc.subDAGs != uint64(n) || sc.tables == 0 {
		t.Fatalf("checked %d sub-DAGs in %d tables, want %d in some", sc.subDAGs, sc.tables, n)
	}
}

// Below min_free_bytes the Transactions API refuses with RESOURCE_EXHAUSTED
// (probe faked); above it, a transaction goes through to the event loop.
// The free space is a metric either way.
func TestTransactionsRefusedBelowFreeSpaceWatermark(t *testing.T) {
	st, err := openStore(t.TempDir(), storeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	free := uint64(100 << 20)
	cfg := config.TestNode()
	n := &Node{cfg: &cfg, log: slog.New(slog.DiscardHandler), store: st, metrics: newMetrics(),
		headCh: make(chan struct{}), stopped: make(chan struct{}), submits: make(chan submission, 1),
		opts: options{minFreeBytes: 256 << 20, freeBytes: func(string) (uint64, error) { return free, nil }}}
	n.sampleFreeSpace()
	api := &txServer{n: n}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = api.SubmitTransaction(ctx, &dsnv1.Transaction{Transaction: []byte("tx")})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "below min_free_bytes") {
		t.Fatalf("with %d bytes free: %v, want RESOURCE_EXHAUSTED", free, err)
	}
	if got := gauge(t, n, "dsn_data_dir_free_bytes"); got != float64(free) {
		t.Fatalf("dsn_data_dir_free_bytes = %v, want %d", got, free)
	}
	free = 300 << 20
	n.sampleFreeSpace()
	_, err = api.SubmitTransaction(ctx, &dsnv1.Transaction{Transaction: []byte("tx")})
	if status.Code(err) != codes.DeadlineExceeded { // no event loop runs: it waited for its acknowledgement
		t.Fatalf("with %d bytes free: %v, want it admitted", free, err)
	}
	n.opts.minFreeBytes, free = 0, 0 // 0 disables the watermark
	n.sampleFreeSpace()
	if err := n.lowOnSpace(); err != nil {
		t.Fatalf("watermark 0: %v", err)
	}
}

func gauge(t *testing.T, n *Node, name string) float64 {
	t.Helper()
	mfs, err := n.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// A WAL whose last record is torn — what a process killed while pebble
// wrote a large commit's 32 KiB blocks leaves: a commit never
// acknowledged, and never in the signing record — is replayed up to the
// tear, with a note, as pebble does.
func TestWALTornTailIsReplayed(t *testing.T) {
	dir := t.TempDir()
	var buf bytes.Buffer
	w := record.NewWriter(&buf)
	for _, n := range []int{100, 100 << 10} {
		if _, err := w.WriteRecord(bytes.Repeat([]byte{7}, n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	whole := buf.Bytes()
	if err := os.WriteFile(filepath.Join(dir, "000004.log"), whole[:len(whole)-30<<10], 0o644); err != nil {
		t.Fatal(err)
	}
	tail, err := checkWAL(vfs.Default, dir, "000004.log")
	if err != nil || !strings.Contains(tail, "after 1 whole records") {
		t.Fatalf("torn tail: %q %v", tail, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "000004.log"), whole, 0o644); err != nil {
		t.Fatal(err)
	}
	if tail, err := checkWAL(vfs.Default, dir, "000004.log"); err != nil || tail != "" {
		t.Fatalf("whole WAL: %q %v", tail, err)
	}
}
