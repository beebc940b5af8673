// Package config reads and writes the files an operator edits: the committee
// file (every authority's keys and address, shared by the whole committee)
// and a node's own config (its identity, key files, addresses and protocol
// parameters). TOML on disk; keys as hex. Loading validates everything and
// names the offending field in errors.
package config

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/tezos-dsn/dsn/internal/crypto"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/replica"
)

// CommitteeFile is the on-disk form of a committee.
type CommitteeFile struct {
	Epoch       uint64          `toml:"epoch"`
	Authorities []AuthorityFile `toml:"authority"`
}

// AuthorityFile is one authority in the committee file.
type AuthorityFile struct {
	Name         string `toml:"name"`
	Stake        uint64 `toml:"stake"`
	ConsensusKey string `toml:"consensus_key"` // hex, 32 bytes (ed25519): signs votes
	NetworkKey   string `toml:"network_key"`   // hex, 32 bytes (ed25519): mutual TLS
	Address      string `toml:"address"`       // host:port of the node-to-node endpoint
}

// ToCommittee decodes keys and validates the committee.
func (f *CommitteeFile) ToCommittee() (*narwhal.Committee, error) {
	c := &narwhal.Committee{Epoch: f.Epoch}
	for i, a := range f.Authorities {
		field := fmt.Sprintf("authority[%d]", i)
		ck, err := crypto.DecodeKey(a.ConsensusKey, crypto.PublicKeySize)
		if err != nil {
			return nil, fmt.Errorf("%s.consensus_key: %w", field, err)
		}
		nk, err := crypto.DecodeKey(a.NetworkKey, ed25519.PublicKeySize)
		if err != nil {
			return nil, fmt.Errorf("%s.network_key: %w", field, err)
		}
		if _, _, err := net.SplitHostPort(a.Address); err != nil {
			return nil, fmt.Errorf("%s.address: %w", field, err)
		}
		auth := narwhal.Authority{Name: a.Name, Stake: a.Stake, Address: a.Address}
		copy(auth.ConsensusKey[:], ck)
		copy(auth.NetworkKey[:], nk)
		c.Authorities = append(c.Authorities, auth)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// FromCommittee returns the file form of a committee.
func FromCommittee(c *narwhal.Committee) *CommitteeFile {
	f := &CommitteeFile{Epoch: c.Epoch}
	for _, a := range c.Authorities {
		f.Authorities = append(f.Authorities, AuthorityFile{
			Name: a.Name, Stake: a.Stake, Address: a.Address,
			ConsensusKey: crypto.EncodeKey(a.ConsensusKey[:]),
			NetworkKey:   crypto.EncodeKey(a.NetworkKey[:]),
		})
	}
	return f
}

// DecodeFile reads the TOML file at path into v (over whatever v holds:
// the defaults) and refuses a key v has no field for; what names the file
// in errors ("node config").
func DecodeFile(what, path string, v any) error {
	md, err := toml.DecodeFile(path, v)
	if err != nil {
		return fmt.Errorf("read %s %s: %w", what, path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return fmt.Errorf("%s %s: unknown field %q", what, path, und[0].String())
	}
	return nil
}

// LoadCommittee reads and validates a committee file.
func LoadCommittee(path string) (*narwhal.Committee, error) {
	var f CommitteeFile
	if err := DecodeFile("committee", path, &f); err != nil {
		return nil, err
	}
	c, err := f.ToCommittee()
	if err != nil {
		return nil, fmt.Errorf("committee %s: %w", path, err)
	}
	return c, nil
}

// SaveCommittee writes a committee file.
func SaveCommittee(path string, c *narwhal.Committee) error {
	return writeTOML(path, FromCommittee(c), 0o644)
}

func writeTOML(path string, v any, mode os.FileMode) error {
	var b strings.Builder
	if err := toml.NewEncoder(&b).Encode(v); err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	if err := os.WriteFile(path, []byte(b.String()), mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Duration is a time.Duration written as text ("5ms") in TOML.
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText formats a Go duration.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Node is a consensus node's config file.
type Node struct {
	// Name of this node's authority in the committee file.
	Name string `toml:"name"`
	// Committee file path.
	Committee string `toml:"committee"`
	// ConsensusKeyFile holds the hex ed25519 seed (32 bytes) that signs votes.
	ConsensusKeyFile string `toml:"consensus_key_file"`
	// NetworkKeyFile holds the hex ed25519 seed (32 bytes).
	NetworkKeyFile string `toml:"network_key_file"`
	// DataDir holds the node's pebble store.
	DataDir string `toml:"data_dir"`
	// P2PAddress is where peers connect (host:port; host may be empty).
	P2PAddress string `toml:"p2p_address"`
	// TransactionsAddress serves the Transactions gRPC API.
	TransactionsAddress string `toml:"transactions_address"`
	// ExportAddress serves the Export (pre-block) gRPC API.
	ExportAddress string `toml:"export_address"`
	// MetricsAddress serves Prometheus /metrics; empty disables it.
	MetricsAddress string `toml:"metrics_address"`
	// Profiling also serves Go's profiles (/debug/pprof/) on the metrics
	// address. Off by default: they show the node's internals, and taking
	// one costs CPU.
	Profiling bool `toml:"profiling"`
	// Tick is the protocol tick; the consensus parameters count in ticks.
	Tick Duration `toml:"tick"`
	// MaxTransactionSize in bytes (protocol maximum: 6 MiB).
	MaxTransactionSize int `toml:"max_transaction_size"`
	// HeartbeatInterval of the Export stream.
	HeartbeatInterval Duration `toml:"heartbeat_interval"`
	// MaxExportStreams bounds the Export streams served at once; each holds
	// about one part (1 MiB) and one batch in memory.
	MaxExportStreams int `toml:"max_export_streams"`
	// LogLevel: debug, info, warn or error.
	LogLevel string `toml:"log_level"`
	// Consensus holds the protocol parameters.
	Consensus Consensus `toml:"consensus"`
	// Network shapes outgoing traffic (lab experiments; tc netem may be missing).
	Network Shaping `toml:"network"`

	dir string // directory of the config file; relative paths resolve against it
}

// Consensus holds the replica parameters, in ticks and bytes.
type Consensus struct {
	BatchSize        int    `toml:"batch_size"`
	MaxBatchDelay    int    `toml:"max_batch_delay_ticks"`
	MaxHeaderDelay   int    `toml:"max_header_delay_ticks"`
	LeaderTimeout    int    `toml:"leader_timeout_ticks"`
	RetryTicks       int    `toml:"retry_ticks"`
	MaxHeaderPayload int    `toml:"max_header_payload"`
	GCDepth          uint64 `toml:"gc_depth"`
}

// Shaping adds delay, jitter and loss to every outgoing peer message.
type Shaping struct {
	Delay  Duration `toml:"delay"`
	Jitter Duration `toml:"jitter"`
	Loss   float64  `toml:"loss"` // probability in [0, 1)
}

// DefaultNode returns production defaults (addresses and paths empty).
func DefaultNode() Node {
	r := replica.DefaultConfig()
	return Node{
		Tick:               Duration{5 * time.Millisecond},
		MaxTransactionSize: 256 << 10,
		HeartbeatInterval:  Duration{time.Second},
		MaxExportStreams:   64,
		LogLevel:           "info",
		Consensus: Consensus{
			BatchSize:        r.Worker.BatchSize,
			MaxBatchDelay:    r.Worker.MaxBatchDelay,
			MaxHeaderDelay:   r.Primary.MaxHeaderDelay,
			LeaderTimeout:    r.Primary.LeaderTimeout,
			RetryTicks:       r.Primary.RetryTicks,
			MaxHeaderPayload: r.Primary.MaxHeaderPayload,
			GCDepth:          r.GCDepth,
		},
	}
}

// TestNode returns defaults for fast in-process tests.
func TestNode() Node {
	n := DefaultNode()
	t := replica.TestConfig()
	n.Consensus.MaxHeaderDelay = t.Primary.MaxHeaderDelay
	n.Consensus.RetryTicks = t.Primary.RetryTicks
	n.HeartbeatInterval = Duration{200 * time.Millisecond}
	return n
}

// Replica returns the replica parameters.
func (n *Node) Replica() replica.Config {
	r := replica.DefaultConfig()
	r.Worker.BatchSize = n.Consensus.BatchSize
	r.Worker.MaxBatchDelay = n.Consensus.MaxBatchDelay
	r.Worker.RetryTicks = n.Consensus.RetryTicks
	r.Primary.MaxHeaderDelay = n.Consensus.MaxHeaderDelay
	r.Primary.LeaderTimeout = n.Consensus.LeaderTimeout
	r.Primary.RetryTicks = n.Consensus.RetryTicks
	r.Primary.MaxHeaderPayload = n.Consensus.MaxHeaderPayload
	r.GCDepth = n.Consensus.GCDepth
	return r
}

func checkAddr(field, addr string, optional bool) error {
	if addr == "" {
		if optional {
			return nil
		}
		return fmt.Errorf("%s: missing", field)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	return nil
}

// Validate checks every field; errors name the field.
func (n *Node) Validate() error {
	var errs []error
	req := func(field, v string) {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s: missing", field))
		}
	}
	req("name", n.Name)
	req("committee", n.Committee)
	req("consensus_key_file", n.ConsensusKeyFile)
	req("network_key_file", n.NetworkKeyFile)
	req("data_dir", n.DataDir)
	for _, a := range []struct {
		f, v string
		opt  bool
	}{{"p2p_address", n.P2PAddress, false}, {"transactions_address", n.TransactionsAddress, false},
		{"export_address", n.ExportAddress, false}, {"metrics_address", n.MetricsAddress, true}} {
		if err := checkAddr(a.f, a.v, a.opt); err != nil {
			errs = append(errs, err)
		}
	}
	if n.Tick.Duration <= 0 {
		errs = append(errs, errors.New("tick: must be > 0"))
	}
	if n.HeartbeatInterval.Duration <= 0 {
		errs = append(errs, errors.New("heartbeat_interval: must be > 0"))
	}
	if n.MaxExportStreams <= 0 {
		errs = append(errs, errors.New("max_export_streams: must be > 0"))
	}
	if n.MaxTransactionSize <= 0 || n.MaxTransactionSize > narwhal.MaxTransactionSize {
		errs = append(errs, fmt.Errorf("max_transaction_size: must be in 1..%d", narwhal.MaxTransactionSize))
	}
	switch n.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level: %q is not debug, info, warn or error", n.LogLevel))
	}
	if err := n.Replica().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("consensus.%w", err))
	}
	if n.Network.Delay.Duration < 0 || n.Network.Jitter.Duration < 0 {
		errs = append(errs, errors.New("network.delay, network.jitter: must be >= 0"))
	}
	if n.Network.Loss < 0 || n.Network.Loss >= 1 {
		errs = append(errs, errors.New("network.loss: must be in [0, 1)"))
	}
	return errors.Join(errs...)
}

// Path resolves a path from the config against the config file's directory.
func (n *Node) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || n.dir == "" {
		return p
	}
	return filepath.Join(n.dir, p)
}

// LoadNode reads a node config over the defaults and validates it.
func LoadNode(path string) (*Node, error) {
	n := DefaultNode()
	if err := DecodeFile("node config", path, &n); err != nil {
		return nil, err
	}
	n.dir = filepath.Dir(path)
	if err := n.Validate(); err != nil {
		return nil, fmt.Errorf("node config %s: %w", path, err)
	}
	return &n, nil
}

// SaveNode writes a node config.
func SaveNode(path string, n *Node) error { return writeTOML(path, n, 0o644) }

// LoadConsensusKey reads a hex ed25519 seed file.
func LoadConsensusKey(path string) (*crypto.SecretKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read consensus key: %w", err)
	}
	b, err := crypto.DecodeKey(string(raw), crypto.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("consensus key %s: %w", path, err)
	}
	return crypto.SecretKeyFromSeed(b)
}

// LoadNetworkKey reads a hex ed25519 seed file.
func LoadNetworkKey(path string) (ed25519.PrivateKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read network key: %w", err)
	}
	b, err := crypto.DecodeKey(string(raw), ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("network key %s: %w", path, err)
	}
	return ed25519.NewKeyFromSeed(b), nil
}

// SaveKeys writes the consensus and network seeds as hex files (0600).
func SaveKeys(consensusPath string, consensus *crypto.SecretKey, netPath string, netKey ed25519.PrivateKey) error {
	if err := os.WriteFile(consensusPath, []byte(crypto.EncodeKey(consensus.Seed())+"\n"), 0o600); err != nil {
		return fmt.Errorf("write consensus key: %w", err)
	}
	if err := os.WriteFile(netPath, []byte(crypto.EncodeKey(netKey.Seed())+"\n"), 0o600); err != nil {
		return fmt.Errorf("write network key: %w", err)
	}
	return nil
}
