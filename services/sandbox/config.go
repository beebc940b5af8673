package sandbox

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/tezos-dsn/dsn/internal/config"
	"github.com/tezos-dsn/dsn/internal/tezos"
)

// Config is the sandbox's configuration: TOML on disk (LoadConfig), flags
// override (cmd/dsn/sandbox.go).
type Config struct {
	// Listen is the HTTP RPC address (host:port; host may be empty).
	Listen string `toml:"listen"`
	// DataDir holds the pebble store: the chain and the applied counters.
	// Required.
	DataDir string `toml:"data_dir"`
	// BlockTime is the interval between two levels, 100ms to 6s.
	BlockTime config.Duration `toml:"block_time"`
	// Accounts are the "edpk…" public keys allowed as operation sources.
	// Each starts at counter 0. Default: the keys of
	// tezos.SandboxAccounts(tezos.SandboxAccountCount), the bootstrap
	// accounts first.
	Accounts []string `toml:"accounts"`
	// MaxBlockBytes bounds the operation bytes of one block; at least
	// tezos.MaxOperationSize so that every valid operation fits.
	MaxBlockBytes int `toml:"max_block_bytes"`
	// MaxOperationsTTL is how many levels back an operation's branch may
	// be: the branch must be one of the last MaxOperationsTTL blocks
	// (head included).
	MaxOperationsTTL int `toml:"max_operations_ttl"`
	// GenesisTimestamp is the timestamp of level 0, used at the first start
	// only (it is stored with the chain). Zero: the time of the first start.
	GenesisTimestamp time.Time `toml:"genesis_timestamp"`
	// LogLevel is debug, info, warn or error; empty blocks log at debug.
	LogLevel string `toml:"log_level"`
}

// DefaultConfig returns the defaults; DataDir must still be set.
func DefaultConfig() Config {
	var accounts []string
	for _, a := range tezos.SandboxAccounts(tezos.SandboxAccountCount) {
		priv, err := tezos.ParseSecretKey(a.SecretKey)
		if err != nil {
			panic(fmt.Sprintf("sandbox: bootstrap account %s: %v", a.Name, err))
		}
		accounts = append(accounts, tezos.EncodePublicKey(priv.Public().(ed25519.PublicKey)))
	}
	return Config{
		Listen:           ":20000",
		BlockTime:        config.Duration{Duration: time.Second},
		Accounts:         accounts,
		MaxBlockBytes:    512 << 10,
		MaxOperationsTTL: 120,
		LogLevel:         "info",
	}
}

// TestConfig returns a configuration for tests: a fast block time, an
// ephemeral port and dir as the data directory.
func TestConfig(dir string) Config {
	c := DefaultConfig()
	c.Listen = "127.0.0.1:0"
	c.DataDir = dir
	c.BlockTime.Duration = 100 * time.Millisecond
	return c
}

// Block-time bounds: faster than 100ms makes every level share its
// timestamp second with nine others; slower than 6s is slower than mainnet.
const (
	MinBlockTime = 100 * time.Millisecond
	MaxBlockTime = 6 * time.Second
)

// Validate checks every field and names the offending one.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if c.DataDir == "" {
		return errors.New("data_dir: required")
	}
	if d := c.BlockTime.Duration; d < MinBlockTime || d > MaxBlockTime {
		return fmt.Errorf("block_time: %s is outside %s..%s", d, MinBlockTime, MaxBlockTime)
	}
	if len(c.Accounts) == 0 {
		return errors.New("accounts: at least one public key is required")
	}
	if _, err := c.accountKeys(); err != nil {
		return err
	}
	if c.MaxBlockBytes < tezos.MaxOperationSize {
		return fmt.Errorf("max_block_bytes: %d is less than one operation (%d)", c.MaxBlockBytes, tezos.MaxOperationSize)
	}
	if c.MaxOperationsTTL < 1 {
		return fmt.Errorf("max_operations_ttl: %d, want at least 1", c.MaxOperationsTTL)
	}
	if !c.GenesisTimestamp.IsZero() && c.GenesisTimestamp.Unix() < 0 {
		return fmt.Errorf("genesis_timestamp: %s is before 1970", c.GenesisTimestamp)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("log_level: %w", err)
	}
	return nil
}

// accountKeys decodes Accounts, keyed by tz1 hash.
func (c *Config) accountKeys() (map[[20]byte]ed25519.PublicKey, error) {
	keys := make(map[[20]byte]ed25519.PublicKey, len(c.Accounts))
	for i, s := range c.Accounts {
		pub, err := tezos.ParsePublicKey(s)
		if err != nil {
			return nil, fmt.Errorf("accounts[%d]: %w", i, err)
		}
		h := tezos.PublicKeyHash(pub)
		if _, dup := keys[h]; dup {
			return nil, fmt.Errorf("accounts[%d]: %s listed twice", i, s)
		}
		keys[h] = pub
	}
	return keys, nil
}

// LoadConfig reads a TOML file over cfg (fields absent from the file keep
// their value) and refuses unknown fields. It does not validate: flags may
// still override.
func LoadConfig(path string, cfg *Config) error {
	return config.DecodeFile("sandbox config", path, cfg)
}
