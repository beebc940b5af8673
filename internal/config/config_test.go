package config

import (
	"bytes"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func generated(t *testing.T) (string, []Generated) {
	t.Helper()
	dir := t.TempDir()
	c, gens, err := GenerateCommittee(rand.New(rand.NewSource(1)), 7, "127.0.0.1", DefaultBasePort)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteCommittee(dir, c, gens); err != nil {
		t.Fatal(err)
	}
	c2, err := LoadCommittee(filepath.Join(dir, "committee.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c2.Encode(), c.Encode()) {
		t.Fatal("committee changed through its file")
	}
	return dir, gens
}

func TestGeneratedCommitteeRoundTrips(t *testing.T) {
	dir, gens := generated(t)
	n, err := LoadNode(filepath.Join(dir, "node-3.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if n.P2PAddress != ":64030" || n.ExportAddress != ":64031" || n.TransactionsAddress != ":64032" || n.MetricsAddress != ":64033" {
		t.Fatalf("ports: %s %s %s %s", n.P2PAddress, n.ExportAddress, n.TransactionsAddress, n.MetricsAddress)
	}
	sk, err := LoadConsensusKey(n.Path(n.ConsensusKeyFile))
	if err != nil || sk.PublicKey() != gens[2].Consensus.PublicKey() {
		t.Fatalf("consensus key file: %v", err)
	}
	nk, err := LoadNetworkKey(n.Path(n.NetworkKeyFile))
	if err != nil || !nk.Equal(gens[2].Network) {
		t.Fatalf("network key file: %v", err)
	}
	if info, err := os.Stat(n.Path(n.ConsensusKeyFile)); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file must be 0600: %v", err)
	}
}

func TestSharedOrWeakKeysRejectedOnLoad(t *testing.T) {
	dir, _ := generated(t)
	path := filepath.Join(dir, "committee.toml")
	c, err := LoadCommittee(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		edit func(f *CommitteeFile)
		want string
	}{
		{func(f *CommitteeFile) { f.Authorities[4].ConsensusKey = f.Authorities[5].ConsensusKey }, "authorities[5].consensus_key: same key as authorities[4]"},
		{func(f *CommitteeFile) { f.Authorities[4].ConsensusKey = f.Authorities[4].NetworkKey }, "authorities[4].consensus_key: same key as network_key"},
		{func(f *CommitteeFile) { f.Authorities[4].ConsensusKey = "01" + strings.Repeat("00", 31) }, "authorities[4].consensus_key: crypto: invalid public key: small order"},
	} {
		f := FromCommittee(c)
		tc.edit(f)
		if err := writeTOML(path, f, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadCommittee(path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
}

func TestNodeValidateNamesFields(t *testing.T) {
	good := TestNode()
	good.Name, good.Committee, good.ConsensusKeyFile, good.NetworkKeyFile, good.DataDir = "n", "c", "b", "e", "d"
	good.P2PAddress, good.TransactionsAddress, good.ExportAddress = ":1", ":2", ":3"
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	cases := map[string]func(*Node){
		"name: missing":                 func(n *Node) { n.Name = "" },
		"p2p_address":                   func(n *Node) { n.P2PAddress = "nohost" },
		"transactions_address: missing": func(n *Node) { n.TransactionsAddress = "" },
		"tick: must be > 0":             func(n *Node) { n.Tick.Duration = 0 },
		"max_transaction_size":          func(n *Node) { n.MaxTransactionSize = 7 << 20 },
		"log_level":                     func(n *Node) { n.LogLevel = "loud" },
		"consensus.worker.batch_size":   func(n *Node) { n.Consensus.BatchSize = 0 },
		"consensus.gc_depth":            func(n *Node) { n.Consensus.GCDepth = 1 },
		"network.loss":                  func(n *Node) { n.Network.Loss = 1.5 },
	}
	for want, mutate := range cases {
		n := good
		mutate(&n)
		err := n.Validate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v", want, err)
		}
	}
}

func TestUnknownFieldRejected(t *testing.T) {
	dir, _ := generated(t)
	path := filepath.Join(dir, "node-1.toml")
	raw, _ := os.ReadFile(path)
	if err := os.WriteFile(path, append(raw, []byte("\ntypo_field = 1\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadNode(path); err == nil || !strings.Contains(err.Error(), "typo_field") {
		t.Fatalf("unknown field: %v", err)
	}
}
