// Package lab renders a topology manifest (lab/manifests/*.toml) into what
// the container lab runs: compose/docker-compose.yml and compose/config/
// (committee, keys, node, sandbox and rollup-node configs, the kernel's
// setup). `dsn lab render` calls it and `make lab-up` starts the result
// with docker-compose; the e2e tests start the same manifest's containers
// (Manifest.Containers) through testcontainers-go (lab/labtest). Images
// are built from this repository (lab/Dockerfile: FROM scratch, the static
// dsn binary and the DSN kernel), never pulled.
package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"golang.org/x/crypto/blake2b"

	"github.com/tezos-dsn/dsn/internal/config"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/pvm"
	"github.com/tezos-dsn/dsn/internal/tezos"
	"github.com/tezos-dsn/dsn/kernel/state"
	"github.com/tezos-dsn/dsn/services/sandbox"
)

// Manifest is a lab topology.
type Manifest struct {
	// Name is the compose project name; containers are <name>_nodeN_1.
	Name string `toml:"name"`
	// Nodes is the committee size (1..9).
	Nodes int `toml:"nodes"`
	// Seed derives the lab's keys (public: the lab is not production).
	Seed int64 `toml:"seed"`
	// Image is the dsn image tag the containers run.
	Image string `toml:"image"`
	// BasePort: node N publishes BasePort+10N (p2p), +1 (export), +2
	// (transactions), +3 (metrics) on the host's loopback; 0 lets Docker
	// choose.
	BasePort  int       `toml:"base_port"`
	Consensus Consensus `toml:"consensus"`
	L1        L1        `toml:"l1"`
	// Shapes perturb nodes' links: delay, jitter and loss on every message
	// a node sends to its peers (in the node's transport: tc netem may be
	// missing on a lab machine).
	Shapes []Shape `toml:"shape"`
	// Load, if its rate is set, adds a container that offers timestamped
	// transactions to node 1 for as long as the lab runs (`dsn spam`).
	Load Load `toml:"load"`
	// GOMAXPROCS is every container's Go runtime threads; 0 means 1. The
	// lab runs all its services on one machine: with the runtime's default
	// (every core), ten runtimes stop the world for their collections on
	// cores the others hold, and a round waits behind them. BenchmarkLab on
	// 2 cores, p99 at 100 / 1,000 tx/s, medians of 3-5 runs: 413 / 609 ms
	// with the default, 248 / 543 with 1 for the nodes only, 212 / 381 with
	// 1 for all. On a larger machine, give each its share of the cores.
	GOMAXPROCS int `toml:"gomaxprocs"`
}

// gomaxprocs is GOMAXPROCS with its default.
func (m *Manifest) gomaxprocs() int { return max(m.GOMAXPROCS, 1) }

// Load is a constant offered load.
type Load struct {
	Rate float64 `toml:"rate"` // transactions per second (0: no load container)
	Size int     `toml:"size"` // bytes per transaction (default 512)
}

// Shape is one node's outgoing-link perturbation.
type Shape struct {
	Node   int             `toml:"node"`
	Delay  config.Duration `toml:"delay"`
	Jitter config.Duration `toml:"jitter"`
	Loss   float64         `toml:"loss"` // probability in [0, 1)
}

// L1 holds the sandbox's parameters.
type L1 struct {
	// BlockTime is the sandbox's level interval (default 1s).
	BlockTime string `toml:"block_time"`
}

// Consensus holds the node parameters the manifest sets.
type Consensus struct {
	GCDepth uint64 `toml:"gc_depth"`
}

// Ports inside every node container.
const (
	P2PPort          = 7000
	ExportPort       = 7001
	TransactionsPort = 7002
	MetricsPort      = 7003
	// SequencerPort is the sequencer's HTTP API, SandboxPort the L1
	// sandbox's RPC and RollupPort the rollup node's, each published as is
	// on the host (base_port 0: Docker chooses).
	SequencerPort = 8080
	SandboxPort   = 20000
	RollupPort    = 8932
	// BatchingKeys is how many sandbox accounts sign the rollup node's
	// add_messages operations: 16 operations of 32 KiB fill the sandbox's
	// 512 KiB block.
	BatchingKeys = 16
	// KernelPath is where the image holds the DSN kernel.
	KernelPath = "/kernel/dsn.wasm"
)

// RollupAddress is the lab rollup's sr1 address, derived as Tezos derives
// an originated rollup's (internal/tezos.RollupAddress) from an operation
// hash that the seed fixes.
func (m *Manifest) RollupAddress() string {
	op := blake2b.Sum256([]byte(fmt.Sprintf("dsn lab origination, seed %d", m.Seed)))
	a := tezos.RollupAddress(op, 0)
	return tezos.Base58CheckEncode(tezos.PrefixRollup, a[:])
}

// LoadManifest reads and checks a manifest.
func LoadManifest(path string) (*Manifest, error) {
	var m Manifest
	md, err := toml.DecodeFile(path, &m)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, fmt.Errorf("manifest %s: unknown keys %v", path, und)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", path, err)
	}
	return &m, nil
}

// Validate checks the fields.
func (m *Manifest) Validate() error {
	switch {
	case m.Name == "" || strings.ContainsAny(m.Name, " /_"):
		return fmt.Errorf("name: %q must be non-empty, without spaces, slashes or underscores", m.Name)
	case m.Nodes < 1 || m.Nodes > 9:
		return fmt.Errorf("nodes: %d, want 1..9", m.Nodes)
	case m.Image == "":
		return fmt.Errorf("image: missing")
	case m.BasePort != 0 && (m.BasePort < 1024 || m.BasePort+10*m.Nodes+3 > 65535):
		return fmt.Errorf("base_port: %d leaves ports outside 1024..65535", m.BasePort)
	case m.Consensus.GCDepth != 0 && m.Consensus.GCDepth < 2:
		return fmt.Errorf("consensus.gc_depth: must be >= 2")
	case m.GOMAXPROCS < 0 || m.GOMAXPROCS > 1024:
		return fmt.Errorf("gomaxprocs: %d, want 0 (1) .. 1024", m.GOMAXPROCS)
	}
	for i, sh := range m.Shapes {
		switch {
		case sh.Node < 1 || sh.Node > m.Nodes:
			return fmt.Errorf("shape %d: node %d, want 1..%d", i, sh.Node, m.Nodes)
		case sh.Delay.Duration < 0 || sh.Delay.Duration > 10*time.Second || sh.Jitter.Duration < 0 || sh.Jitter.Duration > 10*time.Second:
			return fmt.Errorf("shape %d: delay and jitter must be within 0..10s", i)
		case sh.Loss < 0 || sh.Loss >= 1:
			return fmt.Errorf("shape %d: loss %g, want [0, 1)", i, sh.Loss)
		}
	}
	if m.Load.Rate < 0 || m.Load.Size < 0 || m.Load.Size > 256<<10 {
		return fmt.Errorf("load: rate %g and size %d must be positive, size at most 256 KiB", m.Load.Rate, m.Load.Size)
	}
	if m.L1.BlockTime != "" {
		d, err := time.ParseDuration(m.L1.BlockTime)
		if err != nil || d < sandbox.MinBlockTime || d > sandbox.MaxBlockTime {
			return fmt.Errorf("l1.block_time: %q, want %s..%s", m.L1.BlockTime, sandbox.MinBlockTime, sandbox.MaxBlockTime)
		}
	}
	return nil
}

// Service names node N's container: nodeN.
func Service(n int) string { return fmt.Sprintf("node%d", n) }

// Render writes out/docker-compose.yml and out/config/ for the manifest.
// The same manifest always gives the same files.
func Render(m *Manifest, out string) error {
	cfgDir := filepath.Join(out, "config")
	if err := os.RemoveAll(cfgDir); err != nil {
		return err
	}
	c, gens, err := config.GenerateCommittee(rand.New(rand.NewSource(m.Seed)), m.Nodes, "unused", config.DefaultBasePort)
	if err != nil {
		return err
	}
	for i := range gens {
		c.Authorities[i].Address = fmt.Sprintf("%s:%d", Service(i+1), P2PPort)
		n := &gens[i].Node
		n.DataDir = "/data"
		n.P2PAddress = fmt.Sprintf(":%d", P2PPort)
		n.ExportAddress = fmt.Sprintf(":%d", ExportPort)
		n.TransactionsAddress = fmt.Sprintf(":%d", TransactionsPort)
		n.MetricsAddress = fmt.Sprintf(":%d", MetricsPort)
		n.Profiling = true // a lab is for looking inside: go tool pprof http://127.0.0.1:640N3/debug/pprof/profile
		if m.Consensus.GCDepth != 0 {
			n.Consensus.GCDepth = m.Consensus.GCDepth
		}
		for _, sh := range m.Shapes {
			if sh.Node == i+1 {
				n.Network = config.Shaping{Delay: sh.Delay, Jitter: sh.Jitter, Loss: sh.Loss}
			}
		}
	}
	if err := config.WriteCommittee(cfgDir, c, gens); err != nil {
		return err
	}
	if err := writeRollup(m, cfgDir, c, gens[0].Node.Consensus.GCDepth); err != nil {
		return err
	}
	// Key files are read by the container's root user; 0644 keeps the
	// render readable in a checkout (the lab's keys are public anyway).
	for i := range gens {
		for _, f := range []string{gens[i].Node.ConsensusKeyFile, gens[i].Node.NetworkKeyFile} {
			if err := os.Chmod(filepath.Join(cfgDir, f), 0o644); err != nil {
				return err
			}
		}
	}
	return os.WriteFile(filepath.Join(out, "docker-compose.yml"), []byte(compose(m)), 0o644)
}

// writeRollup writes the sandbox's and the rollup node's configs and the
// kernel's setup file (the committee the kernel verifies against, as the
// installer's setup step writes it at origination).
func writeRollup(m *Manifest, dir string, c *narwhal.Committee, gcDepth uint64) error {
	d := pvm.NewDurable()
	state.Setup(d.Under("/dsn/"), c, gcDepth)
	setup, err := json.MarshalIndent(pvm.SetupFrom(d, "/dsn"), "", " ")
	if err != nil {
		return err
	}
	blockTime := m.L1.BlockTime
	if blockTime == "" {
		blockTime = "1s"
	}
	var keys []string
	for _, a := range tezos.SandboxAccounts(BatchingKeys) {
		keys = append(keys, strconv.Quote(a.SecretKey))
	}
	files := map[string]string{
		"setup.json": string(setup) + "\n",
		"sandbox.toml": fmt.Sprintf(`# The L1 sandbox (dsn sandbox). Rendered by dsn lab render.
listen = ":%d"
data_dir = "/data"
block_time = %q
`, SandboxPort, blockTime),
		"rollup-node.toml": fmt.Sprintf(`# The rollup node (dsn rollup-node). Rendered by dsn lab render.
listen = ":%d"
data_dir = "/data"
l1_endpoint = "http://sandbox:%d"
rollup = %q
origination_level = 0
boot_sector_file = %q
setup_file = "/config/setup.json"
# Sandbox accounts (public keys: lab only): the well-known bootstrap accounts, then derived ones.
batching_keys = [%s]
`, RollupPort, SandboxPort, m.RollupAddress(), KernelPath, strings.Join(keys, ", ")),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Container is one service of the lab, as both drivers run it: the
// compose file (`make lab-up`) and lab/labtest (the e2e tests, through
// testcontainers-go).
type Container struct {
	Name    string   // service name, also its DNS name on the lab network
	Command []string // the dsn subcommand and its flags
	Ports   []int    // container ports published on the host's loopback
	// HostPorts are the fixed host ports for Ports (base_port manifests);
	// nil: Docker chooses.
	HostPorts []int
	Data      bool // a volume <name>-data at /data
	Config    bool // the rendered config directory at /config, read-only
	// HealthPath and HealthPort: the container is up when GET HealthPath
	// on HealthPort answers 200 (a node: its metrics endpoint); no path:
	// no health check (the load generator).
	HealthPath string
	HealthPort int
	DependsOn  []string
	// Env is the container's environment, in order.
	Env [][2]string
}

// Containers lists the lab's containers in start order: the nodes, the L1
// sandbox, the rollup node, the sequencer.
func (m *Manifest) Containers() []Container {
	var nodes []string
	var cs []Container
	for n := 1; n <= m.Nodes; n++ {
		c := Container{Name: Service(n), Command: []string{"node", "--config", fmt.Sprintf("/config/node-%d.toml", n)},
			Ports: []int{P2PPort, ExportPort, TransactionsPort, MetricsPort}, Data: true, Config: true,
			HealthPath: "/metrics", HealthPort: MetricsPort}
		if m.BasePort != 0 {
			for k := range c.Ports {
				c.HostPorts = append(c.HostPorts, m.BasePort+10*n+k)
			}
		}
		cs = append(cs, c)
		nodes = append(nodes, Service(n))
	}
	fixed := func(port int) []int {
		if m.BasePort == 0 {
			return nil
		}
		return []int{port}
	}
	cs = append(cs,
		Container{Name: "sandbox", Command: []string{"sandbox", "--config", "/config/sandbox.toml"},
			Ports: []int{SandboxPort}, HostPorts: fixed(SandboxPort), Data: true, Config: true,
			HealthPath: "/health", HealthPort: SandboxPort},
		Container{Name: "rollup-node", Command: []string{"rollup-node", "--config", "/config/rollup-node.toml"},
			Ports: []int{RollupPort}, HostPorts: fixed(RollupPort), Data: true, Config: true,
			HealthPath: "/health", HealthPort: RollupPort, DependsOn: []string{"sandbox"}})
	var eps []string
	for n := 1; n <= m.Nodes; n++ {
		eps = append(eps, fmt.Sprintf("%s:%d/%s:%d", Service(n), TransactionsPort, Service(n), ExportPort))
	}
	cs = append(cs, Container{Name: "sequencer",
		// No per-client rate limit in the lab: every client on the host
		// reaches the sequencer from Docker's gateway address, one bucket.
		Command: []string{"sequencer", "--listen", fmt.Sprintf(":%d", SequencerPort), "--nodes", strings.Join(eps, ","),
			"--rollup", fmt.Sprintf("http://rollup-node:%d", RollupPort), "--rate-limit", "0"},
		Ports: []int{SequencerPort}, HostPorts: fixed(SequencerPort),
		HealthPath: "/health", HealthPort: SequencerPort, DependsOn: append(nodes, "rollup-node")})
	if m.Load.Rate > 0 {
		size := m.Load.Size
		if size == 0 {
			size = 512
		}
		cs = append(cs, Container{Name: "load",
			Command: []string{"spam", "--endpoint", fmt.Sprintf("%s:%d", Service(1), TransactionsPort),
				"--rate", strconv.FormatFloat(m.Load.Rate, 'f', -1, 64), "--min-size", strconv.Itoa(size), "--max-size", strconv.Itoa(size)},
			DependsOn: []string{Service(1)}})
	}
	for i := range cs {
		cs[i].Env = append(cs[i].Env, [2]string{"GOMAXPROCS", strconv.Itoa(m.gomaxprocs())})
	}
	return cs
}

// compose renders the compose file (format 2.4: docker-compose 1.29 reads it).
func compose(m *Manifest) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Rendered by `dsn lab render` from the %q manifest; do not edit.\n", m.Name)
	b.WriteString("version: \"2.4\"\n\nservices:\n")
	var volumes []string
	for _, c := range m.Containers() {
		fmt.Fprintf(&b, "  %s:\n", c.Name)
		fmt.Fprintf(&b, "    image: %s\n", m.Image)
		b.WriteString("    command: [")
		for i, a := range c.Command {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", a)
		}
		b.WriteString("]\n")
		if len(c.Env) > 0 {
			b.WriteString("    environment:\n")
			for _, kv := range c.Env {
				fmt.Fprintf(&b, "      %s: %q\n", kv[0], kv[1])
			}
		}
		if c.Config || c.Data {
			b.WriteString("    volumes:\n")
			if c.Config {
				b.WriteString("      - ./config:/config:ro\n")
			}
			if c.Data {
				fmt.Fprintf(&b, "      - %s-data:/data\n", c.Name)
				volumes = append(volumes, c.Name+"-data")
			}
		}
		if len(c.Ports) > 0 {
			b.WriteString("    ports:\n")
		}
		for k, p := range c.Ports {
			if c.HostPorts == nil {
				fmt.Fprintf(&b, "      - \"127.0.0.1::%d\"\n", p)
			} else {
				fmt.Fprintf(&b, "      - \"127.0.0.1:%d:%d\"\n", c.HostPorts[k], p)
			}
		}
		b.WriteString("    networks: [dsn]\n")
		if len(c.DependsOn) > 0 {
			fmt.Fprintf(&b, "    depends_on: [%s]\n", strings.Join(c.DependsOn, ", "))
		}
		b.WriteString("    stop_grace_period: 5s\n")
		if c.HealthPath == "" {
			continue
		}
		b.WriteString("    healthcheck:\n")
		if c.HealthPath == "/metrics" {
			fmt.Fprintf(&b, "      test: [\"CMD\", \"/dsn\", \"health\", \"--metrics\", \"127.0.0.1:%d\"]\n", c.HealthPort)
		} else {
			fmt.Fprintf(&b, "      test: [\"CMD\", \"/dsn\", \"health\", \"--url\", \"http://127.0.0.1:%d%s\"]\n", c.HealthPort, c.HealthPath)
		}
		b.WriteString("      interval: 2s\n      timeout: 2s\n      retries: 15\n")
	}
	b.WriteString("\nnetworks:\n  dsn: {}\n\nvolumes:\n")
	for _, v := range volumes {
		fmt.Fprintf(&b, "  %s: {}\n", v)
	}
	return b.String()
}

// Scrape reads a node's Prometheus metrics (http://addr/metrics) and
// returns the dsn_* and process_* (CPU, memory) gauges and counters
// without labels.
func Scrape(ctx context.Context, addr string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics %s: %s", addr, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !(strings.HasPrefix(line, "dsn_") || strings.HasPrefix(line, "process_")) || strings.Contains(line, "{") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}

// HostPorts returns node n's published export, transactions and metrics
// ports (a manifest with a fixed base port).
func (m *Manifest) HostPorts(n int) (export, transactions, metrics int) {
	b := m.BasePort + 10*n
	return b + 1, b + 2, b + 3
}
