package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/config"
	"github.com/tezos-dsn/dsn/internal/dsnclient"
	"github.com/tezos-dsn/dsn/internal/load"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/preblock"
)

// localCluster runs `dsn node` as 7 separate processes, as `make run-dsn` does.
type localCluster struct {
	t     *testing.T
	bin   string
	dir   string
	base  int
	procs []*exec.Cmd
}

func buildDSN(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dsn")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build dsn: %v\n%s", err, out)
	}
	return bin
}

// freeBase finds a base port whose 7×4 node ports are all free.
// freeBase finds a free range of ports for 7 nodes. NB: it stays below
// Linux's ephemeral range (32768 and up), where outgoing connections and
// Docker's published ports (the e2e test runs beside this one) take ports
// at random and could take one between this check and the node's bind.
func freeBase(t *testing.T) int {
	for base := 20000 + os.Getpid()%50*200; base < 32600; base += 100 {
		ok := true
		for n := 1; n <= 7 && ok; n++ {
			for k := 0; k < 4; k++ {
				l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+10*n+k))
				if err != nil {
					ok = false
					break
				}
				l.Close()
			}
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

func (lc *localCluster) run(args ...string) string {
	lc.t.Helper()
	out, err := exec.Command(lc.bin, args...).CombinedOutput()
	if err != nil {
		lc.t.Fatalf("dsn %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (lc *localCluster) start(i int) {
	lc.t.Helper()
	log, err := os.Create(filepath.Join(lc.dir, fmt.Sprintf("node-%d.log", i+1)))
	if err != nil {
		lc.t.Fatal(err)
	}
	cmd := exec.Command(lc.bin, "node", "--config", filepath.Join(lc.dir, fmt.Sprintf("node-%d.toml", i+1)))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		lc.t.Fatal(err)
	}
	lc.procs[i] = cmd
	_, _, tx, _ := config.Ports(lc.base, i+1)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", tx))
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			raw, _ := os.ReadFile(log.Name())
			lc.t.Fatalf("node %d did not start: %s", i+1, raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (lc *localCluster) kill(i int) {
	if p := lc.procs[i]; p != nil {
		p.Process.Signal(syscall.SIGTERM)
		p.Wait()
		lc.procs[i] = nil
	}
}

// crash kills node i with SIGKILL: no shutdown path runs (kill -9).
func (lc *localCluster) crash(i int) {
	if p := lc.procs[i]; p != nil {
		p.Process.Kill()
		p.Wait()
		lc.procs[i] = nil
	}
}

func (lc *localCluster) endpoint(i int, export bool) string {
	_, ex, tx, _ := config.Ports(lc.base, i+1)
	if export {
		return fmt.Sprintf("127.0.0.1:%d", ex)
	}
	return fmt.Sprintf("127.0.0.1:%d", tx)
}

// follow reads node i's pre-blocks from 1 until every seq in want is seen,
// and returns them with the count of each stamped sequence number.
func (lc *localCluster) follow(ctx context.Context, i int, want map[uint64]bool) ([]*dsnv1.PreBlock, map[uint64]int) {
	lc.t.Helper()
	conn, err := grpc.NewClient(lc.endpoint(i, true), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		lc.t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := dsnv1.NewExportClient(conn).Export(ctx, &dsnv1.ExportRequest{From: 0})
	if err != nil {
		lc.t.Fatal(err)
	}
	seen := map[uint64]int{}
	missing := len(want)
	var pbs []*dsnv1.PreBlock
	rd := preblock.NewReader(st)
	for missing > 0 {
		pb, _, err := rd.PreBlock()
		if err != nil {
			lc.t.Fatalf("node %d export: %v (missing %d)", i+1, err, missing)
		}
		if pb == nil {
			continue
		}
		pbs = append(pbs, pb)
		for _, cb := range pb.Batches {
			for _, raw := range cb.Batches {
				b, err := narwhal.DecodeBatch(raw)
				if err != nil {
					lc.t.Fatal(err)
				}
				for _, tx := range b.Transactions {
					if s, ok := load.Seq(tx); ok {
						if seen[s]++; seen[s] == 1 && want[s] {
							missing--
						}
					}
				}
			}
		}
	}
	return pbs, seen
}

func seqs(from, n uint64) map[uint64]bool {
	m := map[uint64]bool{}
	for s := from; s < from+n; s++ {
		m[s] = true
	}
	return m
}

func samePrefix(t *testing.T, a, b []*dsnv1.PreBlock, what string) {
	t.Helper()
	if err := dsnclient.SamePrefix(a, b); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// TestSevenLocalProcesses is issue 3's acceptance run: 7 `dsn node`
// processes, `dsn spam` load, identical Export streams, 2 nodes killed and
// restarted.
func TestSevenLocalProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs 7 processes")
	}
	lc := &localCluster{t: t, bin: buildDSN(t), dir: t.TempDir(), base: freeBase(t), procs: make([]*exec.Cmd, 7)}
	lc.run("committee", "new", "--nodes", "7", "--out", lc.dir, "--base-port", fmt.Sprint(lc.base))
	for i := range lc.procs {
		lc.start(i)
	}
	t.Cleanup(func() {
		for i := range lc.procs {
			lc.kill(i)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	lc.run("spam", "--endpoint", lc.endpoint(0, false), "--count", "300", "--rate", "600", "--min-size", "100", "--max-size", "600")
	var ref []*dsnv1.PreBlock
	for i := 0; i < 7; i++ {
		pbs, seen := lc.follow(ctx, i, seqs(1, 300))
		for s := uint64(1); s <= 300; s++ {
			if seen[s] != 1 {
				t.Fatalf("node %d ordered spam transaction %d %d times", i+1, s, seen[s])
			}
		}
		if ref == nil {
			ref = pbs
		}
		samePrefix(t, ref, pbs, fmt.Sprintf("node %d vs node 1", i+1))
	}

	// `dsn listen` shows every spam transaction exactly once.
	csvPath := filepath.Join(lc.dir, "listen.csv")
	lc.run("listen", "--endpoint", lc.endpoint(4, true), "--from", "0", "--count", fmt.Sprint(len(ref)), "--csv", csvPath)
	raw, err := os.ReadFile(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	listened := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n")[1:] {
		listened[strings.SplitN(line, ",", 2)[0]]++
	}
	for s := 1; s <= 300; s++ {
		if listened[fmt.Sprint(s)] != 1 {
			t.Fatalf("dsn listen shows spam transaction %d %d times", s, listened[fmt.Sprint(s)])
		}
	}

	lc.crash(5)
	lc.crash(6)
	lc.run("spam", "--endpoint", lc.endpoint(2, false), "--count", "200", "--rate", "400", "--first-seq", "1001")
	after, seen := lc.follow(ctx, 3, seqs(1001, 200))
	for s := uint64(1001); s < 1201; s++ {
		if seen[s] != 1 {
			t.Fatalf("with 2 nodes killed, transaction %d ordered %d times", s, seen[s])
		}
	}
	samePrefix(t, ref, after, "after the kill")

	lc.start(5)
	lc.start(6)
	lc.run("spam", "--endpoint", lc.endpoint(5, false), "--count", "100", "--rate", "400", "--first-seq", "2001")
	// Every node, the crashed ones included, exports the same complete sequence.
	for i := range lc.procs {
		pbs, seen := lc.follow(ctx, i, seqs(2001, 100))
		for s := range seqs(1001, 200) {
			if seen[s] != 1 {
				t.Fatalf("restarted node %d: transaction %d ordered %d times", i+1, s, seen[s])
			}
		}
		samePrefix(t, after, pbs, fmt.Sprintf("restarted node %d", i+1))
	}
}
