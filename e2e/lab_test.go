// Package e2e holds the black-box end-to-end tests: the lab's containers
// (rendered from a manifest by internal lab, started with docker-compose
// exactly as `make lab-up` does) driven through their published ports.
// Without a Docker engine they skip with one line.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/lab"
	"github.com/tezos-dsn/dsn/services/stacktest"
)

// Lab is a running rendered lab.
type Lab struct {
	t       *testing.T
	dir     string
	project string
	m       *lab.Manifest
}

// image builds dsn:e2e from this checkout: the static binary and the DSN
// kernel, then the FROM-scratch image (nothing is pulled).
func image(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "dsn"), "../cmd/dsn")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build dsn: %v\n%s", err, out)
	}
	kernel := exec.Command(filepath.Join(bin, "dsn"), "kernel", "build", "--pkg", "./kernel/dsn", "--out", filepath.Join(bin, "dsn.wasm"))
	kernel.Dir = ".."
	if out, err := kernel.CombinedOutput(); err != nil {
		t.Fatalf("build the DSN kernel: %v\n%s", err, out)
	}
	const tag = "dsn:e2e"
	if out, err := exec.Command("docker", "build", "-q", "-t", tag, "-f", "../lab/Dockerfile", bin).CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	// The previous build's image lost its tag: remove such leftovers (ours
	// only, by label), or every run would leave 34 MB behind.
	exec.Command("docker", "image", "prune", "-f", "--filter", "label=dsn.image=1").Run()
	return tag
}

// startLab renders a manifest of n nodes (with the given link
// perturbations) on Docker-chosen host ports and starts it; cleanup (logs
// on failure, then down -v) is registered at once.
func startLab(t *testing.T, nodes int, shapes ...lab.Shape) *Lab {
	t.Helper()
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skip("no Docker engine: the container e2e tests skip")
	}
	if _, err := exec.LookPath("docker-compose"); err != nil {
		t.Skip("no docker-compose: the container e2e tests skip")
	}
	m := &lab.Manifest{Name: fmt.Sprintf("dsn-e2e-%d", os.Getpid()), Nodes: nodes, Seed: 1, Image: image(t), Shapes: shapes}
	l := &Lab{t: t, dir: t.TempDir(), project: m.Name, m: m}
	if err := lab.Render(m, l.dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := l.compose("logs", "--no-color", "--tail", "40")
			t.Logf("container logs:\n%s", out)
		}
		if out, err := l.compose("down", "-v", "--remove-orphans", "-t", "2"); err != nil {
			t.Logf("compose down: %v\n%s", err, out)
		}
	})
	if out, err := l.compose("up", "-d"); err != nil {
		t.Fatalf("compose up: %v\n%s", err, out)
	}
	return l
}

func (l *Lab) compose(args ...string) (string, error) {
	cmd := exec.Command("docker-compose", append([]string{"-p", l.project, "-f", filepath.Join(l.dir, "docker-compose.yml")}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// addr returns the host address of node n's container port (n = 0: the
// sequencer's).
func (l *Lab) addr(n, port int) string {
	l.t.Helper()
	service := "sequencer"
	if n > 0 {
		service = lab.Service(n)
	}
	return l.serviceAddr(service, port)
}

// serviceAddr returns the host address of a service's container port.
func (l *Lab) serviceAddr(service string, port int) string {
	l.t.Helper()
	out, err := l.compose("port", service, fmt.Sprint(port))
	if err != nil {
		l.t.Fatalf("port of %s: %v\n%s", service, err, out)
	}
	return strings.TrimSpace(out)
}

func (l *Lab) dial(n, port int) *grpc.ClientConn {
	l.t.Helper()
	conn, err := grpc.NewClient(l.addr(n, port), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { conn.Close() })
	return conn
}

// Transactions and Export return clients of node n's APIs.
func (l *Lab) Transactions(n int) dsnv1.TransactionsClient {
	return dsnv1.NewTransactionsClient(l.dial(n, lab.TransactionsPort))
}

// Export returns a client of node n's Export API.
func (l *Lab) Export(n int) dsnv1.ExportClient {
	return dsnv1.NewExportClient(l.dial(n, lab.ExportPort))
}

// Metrics scrapes node n.
func (l *Lab) Metrics(ctx context.Context, n int) (map[string]float64, error) {
	return lab.Scrape(ctx, l.addr(n, lab.MetricsPort))
}

// Committed returns node n's last committed index, or -1 if it does not
// answer.
func (l *Lab) Committed(ctx context.Context, n int) float64 {
	g, err := l.Metrics(ctx, n)
	if err != nil {
		return -1
	}
	return g["dsn_committed_subdags"]
}

// WaitCommitting waits until every node has committed a pre-block.
func (l *Lab) WaitCommitting(ctx context.Context) {
	l.t.Helper()
	waitFor(l.t, 90*time.Second, "every node to commit", func() bool {
		for n := 1; n <= l.m.Nodes; n++ {
			if l.Committed(ctx, n) < 1 {
				return false
			}
		}
		return true
	})
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Docker kills or starts node n's container.
func (l *Lab) docker(verb string, n int) {
	l.t.Helper()
	if out, err := l.compose(verb, lab.Service(n)); err != nil {
		l.t.Fatalf("%s %s: %v\n%s", verb, lab.Service(n), err, out)
	}
}

// container and network name what docker-compose 1 created.
func (l *Lab) container(n int) string { return l.project + "_" + lab.Service(n) + "_1" }
func (l *Lab) network() string        { return l.project + "_dsn" }

// partition cuts node n off the lab network and checks that no other
// network still links it (a second network would defeat the partition).
func (l *Lab) partition(n int) {
	l.t.Helper()
	if out, err := exec.Command("docker", "network", "disconnect", l.network(), l.container(n)).CombinedOutput(); err != nil {
		l.t.Fatalf("disconnect %s: %v\n%s", lab.Service(n), err, out)
	}
	out, err := exec.Command("docker", "inspect", "-f", "{{len .NetworkSettings.Networks}}", l.container(n)).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "0" {
		l.t.Fatalf("%s is still on %s network(s) after the partition: %v", lab.Service(n), strings.TrimSpace(string(out)), err)
	}
}

// heal puts node n back on the lab network under its service name.
func (l *Lab) heal(n int) {
	l.t.Helper()
	if out, err := exec.Command("docker", "network", "connect", "--alias", lab.Service(n), l.network(), l.container(n)).CombinedOutput(); err != nil {
		l.t.Fatalf("connect %s: %v\n%s", lab.Service(n), err, out)
	}
}

// KernelAgrees waits until the rollup node's kernel has written a block
// for every pre-block of ref (node 1's Export), then checks each block
// against its pre-block: the same leader and the same transactions, in
// order. It returns how many blocks it checked.
func (l *Lab) KernelAgrees(ref []*dsnv1.PreBlock) int {
	l.t.Helper()
	if len(ref) == 0 {
		return 0
	}
	rpc := stacktest.RollupRPC("http://" + l.serviceAddr("rollup-node", lab.RollupPort))
	last := ref[len(ref)-1].Index
	waitFor(l.t, 3*time.Minute, fmt.Sprintf("the kernel to write block %d", last), func() bool {
		return rpc.KernelHead() >= last
	})
	for _, pb := range ref {
		b, err := rpc.KernelBlock(pb.Index)
		if err != nil {
			l.t.Fatal(err)
		}
		if err := stacktest.SameAsPreBlock(b, pb); err != nil {
			l.t.Fatal(err)
		}
	}
	return len(ref)
}
