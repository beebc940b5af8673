// Package localnet runs a committee of consensus nodes inside one process,
// over real gRPC on 127.0.0.1 with pebble in one directory: the sequencer's
// --mock-consensus, and the harness of the node tests and benchmarks
// (services/node/nodetest).
package localnet

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/tezos-dsn/dsn/internal/config"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/services/node"
)

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Write generates a committee of n nodes (keys from rnd), each with a p2p
// address on a free loopback port and its APIs on ports the OS picks at
// start, and writes the keys, committee.toml and one node config per node
// into dir. base is the node config to start from (config.DefaultNode or
// config.TestNode); tune, if not nil, adjusts each one.
//
// NB: a p2p port is chosen free, closed, and bound again by its node a
// moment later; another process may take it in between (Start then fails
// with "address already in use": write a new committee and try again).
func Write(dir string, n int, rnd io.Reader, base config.Node, tune func(*config.Node)) (*narwhal.Committee, []*config.Node, error) {
	c, gens, err := config.GenerateCommittee(rnd, n, "127.0.0.1", config.DefaultBasePort)
	if err != nil {
		return nil, nil, err
	}
	for i := range gens {
		p2p, err := freePort()
		if err != nil {
			return nil, nil, err
		}
		c.Authorities[i].Address = fmt.Sprintf("127.0.0.1:%d", p2p)
		nc := base
		g := gens[i].Node
		nc.Name, nc.Committee, nc.ConsensusKeyFile, nc.NetworkKeyFile, nc.DataDir = g.Name, g.Committee, g.ConsensusKeyFile, g.NetworkKeyFile, g.DataDir
		nc.P2PAddress = c.Authorities[i].Address
		nc.TransactionsAddress = "127.0.0.1:0"
		nc.ExportAddress = "127.0.0.1:0"
		if tune != nil {
			tune(&nc)
		}
		gens[i].Node = nc
	}
	if err := config.WriteCommittee(dir, c, gens); err != nil {
		return nil, nil, err
	}
	cfgs := make([]*config.Node, n)
	for i := range gens {
		if cfgs[i], err = config.LoadNode(filepath.Join(dir, gens[i].Node.Name+".toml")); err != nil {
			return nil, nil, err
		}
	}
	return c, cfgs, nil
}

// Running is a node started by Start.
type Running struct {
	Node   *node.Node
	Config *config.Node
	cancel context.CancelFunc
	exited chan struct{} // closed when Run returned
	err    error         // what Run returned
}

// Start starts a node (from its store, if it has one) and returns once it
// listens on its APIs, or with the error of a node that stopped at start.
func Start(cfg *config.Node, log *slog.Logger, opts ...node.Option) (*Running, error) {
	n, err := node.New(cfg, log, opts...)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", cfg.Name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{Node: n, Config: cfg, cancel: cancel, exited: make(chan struct{})}
	go func() {
		r.err = n.Run(ctx)
		close(r.exited)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for n.Addr("export") == "" || n.Addr("transactions") == "" {
		if time.Now().After(deadline) {
			r.Stop()
			return nil, fmt.Errorf("%s did not start listening", cfg.Name)
		}
		select {
		case <-r.exited:
			cancel()
			return nil, fmt.Errorf("%s stopped at start: %w", cfg.Name, r.err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	return r, nil
}

// Done is closed when the node stops, on its own (a fatal error: Err says
// which) or by Stop.
func (r *Running) Done() <-chan struct{} { return r.exited }

// Err returns what the node's Run returned, once Done is closed.
func (r *Running) Err() error {
	<-r.exited
	return r.err
}

// Stop stops the node and returns what its Run returned (nil for a clean
// stop); its store stays on disk. It may be called more than once.
func (r *Running) Stop() error {
	r.cancel()
	return r.Err()
}

// Endpoint is a running node's client addresses.
type Endpoint struct{ Transactions, Export string }

// Net is a committee running in this process.
type Net struct {
	Dir       string
	Committee *narwhal.Committee
	Nodes     []*Running
}

// Up starts a committee of n nodes kept in dir: the one written there
// before (keys, configs and stores: the nodes resume from their stores), or
// a new one with the default node parameters. A new committee's p2p port
// taken meanwhile by another process fails the start: call Up again with
// an empty directory.
func Up(dir string, n int, rnd io.Reader, log *slog.Logger) (*Net, error) {
	var c *narwhal.Committee
	var cfgs []*config.Node
	if _, err := os.Stat(filepath.Join(dir, "committee.toml")); err == nil {
		if c, err = config.LoadCommittee(filepath.Join(dir, "committee.toml")); err != nil {
			return nil, err
		}
		if c.Size() != n {
			return nil, fmt.Errorf("%s holds a committee of %d nodes, not %d", dir, c.Size(), n)
		}
		for _, a := range c.Authorities {
			cfg, err := config.LoadNode(filepath.Join(dir, a.Name+".toml"))
			if err != nil {
				return nil, err
			}
			cfgs = append(cfgs, cfg)
		}
	} else if c, cfgs, err = Write(dir, n, rnd, config.DefaultNode(), nil); err != nil {
		return nil, err
	}
	nw := &Net{Dir: dir, Committee: c}
	for _, cfg := range cfgs {
		r, err := Start(cfg, log.With("node", cfg.Name))
		if err != nil {
			nw.Close()
			return nil, err
		}
		nw.Nodes = append(nw.Nodes, r)
	}
	return nw, nil
}

// Endpoints returns the nodes' client addresses, in committee order.
func (n *Net) Endpoints() []Endpoint {
	var out []Endpoint
	for _, r := range n.Nodes {
		out = append(out, Endpoint{Transactions: r.Node.Addr("transactions"), Export: r.Node.Addr("export")})
	}
	return out
}

// Close stops every node; the first error a node's Run returned is
// returned.
func (n *Net) Close() error {
	var first error
	for _, r := range n.Nodes {
		if err := r.Stop(); err != nil && first == nil {
			first = err
		}
	}
	n.Nodes = nil
	return first
}
