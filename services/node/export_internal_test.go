package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/bullshark"
	"github.com/tezos-dsn/dsn/internal/config"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/preblock"
	"github.com/tezos-dsn/dsn/internal/store"
)

// bigPreBlock writes into a fresh store a committed sub-DAG 1 of two
// certificates naming `batches` batches of `size` bytes each, and returns
// an export-only node over it (the Export server reads nothing else).
func bigPreBlock(t *testing.T, batches, size int, streams int) (*Node, []narwhal.Digest) {
	t.Helper()
	st, err := openStore(t.TempDir(), storeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var ws []store.Write
	var digests []narwhal.Digest
	certs := []*narwhal.Certificate{{Header: narwhal.Header{Author: 1, Round: 1}}, {Header: narwhal.Header{Author: 0, Round: 2}}}
	for k := range batches {
		tx := bytes.Repeat([]byte{byte(k)}, size)
		binary.BigEndian.PutUint32(tx, uint32(k))
		b := narwhal.Batch{Transactions: [][]byte{tx}}
		d := b.Digest()
		ws = append(ws, store.Put(store.BatchKey(d), b.Encode()))
		digests = append(digests, d)
		c := certs[k%2]
		c.Header.Payload = append(c.Header.Payload, d)
	}
	certs[1].Header.Parents = []narwhal.Digest{certs[0].Digest()}
	rec := bullshark.Record{Index: 1, Leader: certs[1].Digest(), CommitTimestamp: 1_700_000_000_000}
	for _, c := range certs {
		d := c.Digest()
		rec.Certificates = append(rec.Certificates, d)
		idx := binary.BigEndian.AppendUint64(nil, c.Round())
		idx = binary.BigEndian.AppendUint16(idx, uint16(c.Author()))
		ws = append(ws, store.Put(store.CertificateKey(c.Round(), uint16(c.Author())), c.Encode()), store.Put(store.CertDigestKey(d), idx))
	}
	ws = append(ws, store.Put(store.SubDAGKey(1), rec.Encode()))
	if err := st.Apply(ws); err != nil {
		t.Fatal(err)
	}
	cfg := config.TestNode()
	cfg.MaxExportStreams = streams
	n := &Node{cfg: &cfg, log: slog.New(slog.DiscardHandler), store: st, metrics: newMetrics(),
		head: 1, headCh: make(chan struct{}), stopped: make(chan struct{})}
	return n, digests
}

// serveExport serves n's Export on a loopback port.
func serveExport(t *testing.T, n *Node) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	dsnv1.RegisterExportServer(srv, newExportServer(n))
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// dialSmallWindow dials with gRPC's default 4 MiB receive limit and a
// fixed 64 KiB flow-control window, so a client that does not read holds
// little and the server's buffering shows.
func dialSmallWindow(t *testing.T, addr string) dsnv1.ExportClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return dsnv1.NewExportClient(conn)
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// A pre-block larger than 64 MiB reaches a client with gRPC's default
// limits, and `dsn listen`, in parts; readers that stall hold the node's
// memory to about a batch and a part each, not the pre-block.
func TestExportStreamsAPreBlockOver64MiB(t *testing.T) {
	const batches, size = 70, 1<<20 + 4096 // 70 batches just over 1 MiB: each spans two parts
	n, digests := bigPreBlock(t, batches, size, 6)
	addr := serveExport(t, n)
	client := dialSmallWindow(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	st, err := client.Export(ctx, &dsnv1.ExportRequest{From: 0})
	if err != nil {
		t.Fatal(err)
	}
	pb, _, err := preblock.NewReader(st).PreBlock()
	if err != nil {
		t.Fatal(err)
	}
	var total int
	var got []narwhal.Digest
	for i, raw := range pb.Certificates {
		c, err := narwhal.DecodeCertificate(raw)
		if err != nil {
			t.Fatal(err)
		}
		if len(pb.Batches[i].Batches) != len(c.Header.Payload) {
			t.Fatalf("certificate %d: %d batches for %d digests", i, len(pb.Batches[i].Batches), len(c.Header.Payload))
		}
		for j, raw := range pb.Batches[i].Batches {
			b, err := narwhal.DecodeBatch(raw)
			if err != nil || b.Digest() != c.Header.Payload[j] {
				t.Fatalf("certificate %d batch %d does not match its digest (%v)", i, j, err)
			}
			total += len(raw)
			got = append(got, c.Header.Payload[j])
		}
	}
	if total <= 64<<20 || len(got) != len(digests) {
		t.Fatalf("read %d bytes in %d batches; want > 64 MiB in %d", total, len(got), len(digests))
	}
	cancel()

	// Stalled readers: each takes the start of the pre-block, then stops.
	base := heapInUse()
	const stalled = 4
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	for range stalled {
		st, err := client.Export(ctx2, &dsnv1.ExportRequest{From: 0})
		if err != nil {
			t.Fatal(err)
		}
		if r, err := st.Recv(); err != nil || r.GetStart() == nil {
			t.Fatalf("first message: %v %v", r, err)
		}
	}
	time.Sleep(500 * time.Millisecond) // let the servers fill what they can (no condition to wait for: they block)
	grown := int64(heapInUse()) - int64(base)
	perStream := grown / stalled
	t.Logf("pre-block of %d MiB; %d stalled streams grew the heap by %.1f MiB (%.1f MiB per stream)",
		total>>20, stalled, float64(grown)/(1<<20), float64(perStream)/(1<<20))
	if perStream > 8<<20 {
		t.Fatalf("a stalled Export stream holds %.1f MiB; the bound is about one batch and one part", float64(perStream)/(1<<20))
	}
	// The stream limit: 6 slots, 4 stalled; two more fit, the next is refused.
	for k := range 3 {
		st, err := client.Export(ctx2, &dsnv1.ExportRequest{From: 1})
		if err == nil {
			_, err = st.Recv()
		}
		if k < 2 && err != nil {
			t.Fatalf("stream %d: %v", stalled+k+1, err)
		}
		if k == 2 && status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("stream over the limit: %v, want RESOURCE_EXHAUSTED", err)
		}
	}
	cancel2()

	// dsn listen reads it too.
	bin := filepath.Join(t.TempDir(), "dsn")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/dsn").CombinedOutput(); err != nil {
		t.Fatalf("build dsn: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "listen", "--endpoint", addr, "--count", "1").CombinedOutput()
	if err != nil {
		t.Fatalf("dsn listen: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := fmt.Sprintf("%d %7d %10d", 1, batches, batches*size)
	if len(lines) != 2 || !strings.Contains(strings.Join(strings.Fields(lines[1]), " "), strings.Join(strings.Fields(want), " ")) {
		t.Fatalf("dsn listen printed:\n%s\nwant a row starting %q", out, want)
	}
}

// A pre-block whose batches are not stored yet is not skipped: heartbeats
// name it and count the missing batches, and it streams once they arrive.
func TestExportWaitsForMissingBatches(t *testing.T) {
	n, digests := bigPreBlock(t, 4, 100, 4)
	raw, ok := n.store.Get(store.BatchKey(digests[3]))
	if !ok {
		t.Fatal("batch not stored")
	}
	if err := n.store.Apply([]store.Write{store.Del(store.BatchKey(digests[3]))}); err != nil {
		t.Fatal(err)
	}
	addr := serveExport(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := dialSmallWindow(t, addr).Export(ctx, &dsnv1.ExportRequest{})
	if err != nil {
		t.Fatal(err)
	}
	rd := preblock.NewReader(st)
	pb, hb, err := rd.PreBlock()
	if err != nil || hb == nil || hb.WaitingFor != 1 || hb.MissingBatches != 1 {
		t.Fatalf("want a heartbeat waiting for 1 batch of pre-block 1, got %v %v %v", pb, hb, err)
	}
	if err := n.store.Apply([]store.Write{store.Put(store.BatchKey(digests[3]), raw)}); err != nil {
		t.Fatal(err)
	}
	for {
		pb, _, err := rd.PreBlock()
		if err != nil {
			t.Fatal(err)
		}
		if pb != nil {
			if pb.Index != 1 {
				t.Fatalf("got pre-block %d", pb.Index)
			}
			return
		}
	}
}
