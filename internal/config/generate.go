package config

import (
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/tezos-dsn/dsn/internal/crypto"
	"github.com/tezos-dsn/dsn/internal/narwhal"
)

// DefaultBasePort gives the PoC's port layout: node N (1..9) uses 640N0 for
// p2p, 640N1 for export (pre-blocks), 640N2 for transactions, 640N3 for
// metrics.
const DefaultBasePort = 64000

// Ports returns node n's ports (1-based, n ≤ 9) above base.
func Ports(base, n int) (p2p, export, transactions, metrics int) {
	b := base + 10*n
	return b, b + 1, b + 2, b + 3
}

// Generated is one generated authority: its keys and node config.
type Generated struct {
	Consensus *crypto.SecretKey
	Network   ed25519.PrivateKey
	Node      Node
}

// GenerateCommittee makes n authorities with fresh keys (stake 1000 each)
// whose nodes listen on host with the Ports layout from basePort (ports may be overridden
// by the caller afterwards). Node configs reference files relative to dir.
func GenerateCommittee(rand io.Reader, n int, host string, basePort int) (*narwhal.Committee, []Generated, error) {
	if n < 1 || n > 9 {
		return nil, nil, fmt.Errorf("nodes: %d, want 1..9 (ports base+10N..base+10N+3)", n)
	}
	if basePort < 1024 || basePort+10*n+3 > 65535 {
		return nil, nil, fmt.Errorf("base port %d: ports must stay in 1024..65535", basePort)
	}
	c := &narwhal.Committee{}
	gens := make([]Generated, n)
	for i := 0; i < n; i++ {
		sk, err := crypto.GenerateKey(rand)
		if err != nil {
			return nil, nil, err
		}
		pub, priv, err := ed25519.GenerateKey(rand)
		if err != nil {
			return nil, nil, fmt.Errorf("generate network key: %w", err)
		}
		name := fmt.Sprintf("node-%d", i+1)
		p2p, export, tx, metrics := Ports(basePort, i+1)
		a := narwhal.Authority{Name: name, Stake: 1000, ConsensusKey: sk.PublicKey(),
			Address: fmt.Sprintf("%s:%d", host, p2p)}
		copy(a.NetworkKey[:], pub)
		c.Authorities = append(c.Authorities, a)
		node := DefaultNode()
		node.Name = name
		node.Committee = "committee.toml"
		node.ConsensusKeyFile = name + ".consensus"
		node.NetworkKeyFile = name + ".ed25519"
		node.DataDir = filepath.Join("db", name)
		node.P2PAddress = fmt.Sprintf(":%d", p2p)
		node.ExportAddress = fmt.Sprintf(":%d", export)
		node.TransactionsAddress = fmt.Sprintf(":%d", tx)
		node.MetricsAddress = fmt.Sprintf(":%d", metrics)
		gens[i] = Generated{Consensus: sk, Network: priv, Node: node}
	}
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	return c, gens, nil
}

// WriteCommittee writes committee.toml, each node's key files and
// node-N.toml into dir.
func WriteCommittee(dir string, c *narwhal.Committee, gens []Generated) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := SaveCommittee(filepath.Join(dir, "committee.toml"), c); err != nil {
		return err
	}
	for i := range gens {
		g := &gens[i]
		if err := SaveKeys(filepath.Join(dir, g.Node.ConsensusKeyFile), g.Consensus, filepath.Join(dir, g.Node.NetworkKeyFile), g.Network); err != nil {
			return err
		}
		if err := SaveNode(filepath.Join(dir, g.Node.Name+".toml"), &g.Node); err != nil {
			return err
		}
	}
	return nil
}
