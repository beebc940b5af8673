package rollupnode

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/tezos-dsn/dsn/internal/config"
	"github.com/tezos-dsn/dsn/internal/pvm"
	"github.com/tezos-dsn/dsn/internal/tezos"
)

// Config is a rollup node's configuration (TOML; `dsn rollup-node --config`).
type Config struct {
	// Listen is the RPC address (octez's default port is 8932).
	Listen string `toml:"listen"`
	// DataDir holds the durable storage and the level records.
	DataDir string `toml:"data_dir"`
	// L1 is the L1 node's RPC base URL (our sandbox, `dsn sandbox`).
	L1 string `toml:"l1_endpoint"`
	// Rollup is the rollup's sr1 address.
	Rollup string `toml:"rollup"`
	// OriginationLevel is the L1 level the rollup was originated at; its
	// inbox starts at the next level.
	OriginationLevel uint32 `toml:"origination_level"`
	// BootSectorFile is the kernel (wasm) installed at origination.
	BootSectorFile string `toml:"boot_sector_file"`
	// SetupFile, if set, is an installer setup file (internal/pvm.Setup)
	// applied at origination, after the kernel is installed.
	SetupFile string `toml:"setup_file"`
	// BatchingKeys are the edsk secret keys (or files holding one) of the
	// L1 accounts that sign the batcher's add_messages operations; none
	// disables the batcher. One operation per key per L1 block.
	BatchingKeys []string `toml:"batching_keys"`
	// MaxBatchSize bounds the messages' bytes in one operation.
	MaxBatchSize int `toml:"max_batch_size"`
	// ReinjectAfter is how many L1 levels an injected operation may stay
	// out of a block before its messages are injected again.
	ReinjectAfter uint32 `toml:"reinject_after"`
	// KernelTickLimit bounds one kernel_run in ticks (octez's
	// ticks_per_snapshot; 0: the protocol's): a run that reaches it is
	// stuck, on every machine alike.
	KernelTickLimit uint64 `toml:"kernel_tick_limit"`
	// KernelSlowLevel: a level whose kernel runs take longer than this
	// (wall time) is logged and counted (dsn_rollup_slow_levels_total);
	// it keeps its deterministic outcome.
	KernelSlowLevel config.Duration `toml:"kernel_slow_level"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Listen:          ":8932",
		L1:              "http://127.0.0.1:20000",
		MaxBatchSize:    tezos.MaxOperationSize - 1024,
		ReinjectAfter:   5,
		KernelTickLimit: pvm.DefaultTickLimit,
		KernelSlowLevel: config.Duration{Duration: 10 * time.Second},
	}
}

// LoadConfig reads a TOML file over the defaults.
func LoadConfig(path string) (Config, error) {
	c := DefaultConfig()
	return c, config.DecodeFile("rollup node config", path, &c)
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir is required"))
	}
	if c.L1 == "" {
		errs = append(errs, errors.New("l1_endpoint is required"))
	}
	if _, err := tezos.ParseRollup(c.Rollup); err != nil {
		errs = append(errs, fmt.Errorf("rollup: %w", err))
	}
	if c.BootSectorFile == "" {
		errs = append(errs, errors.New("boot_sector_file is required"))
	}
	// The largest message (MaxMessageSize) with its 4-byte length must fit.
	if lo := MaxMessageSize + 4; c.MaxBatchSize < lo || c.MaxBatchSize > tezos.MaxOperationSize-256 {
		errs = append(errs, fmt.Errorf("max_batch_size %d: want %d..%d", c.MaxBatchSize, lo, tezos.MaxOperationSize-256))
	}
	if c.ReinjectAfter == 0 {
		errs = append(errs, errors.New("reinject_after must be at least 1 level"))
	}
	if c.KernelSlowLevel.Duration <= 0 {
		errs = append(errs, errors.New("kernel_slow_level must be positive"))
	}
	for i, k := range c.BatchingKeys {
		if _, err := readKey(k); err != nil {
			errs = append(errs, fmt.Errorf("batching_keys[%d]: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// readKey parses an edsk key given inline or as a file holding one.
func readKey(s string) (ed25519.PrivateKey, error) {
	if k, err := tezos.ParseSecretKey(s); err == nil {
		return k, nil
	}
	b, ferr := os.ReadFile(s)
	if ferr != nil {
		return nil, fmt.Errorf("neither an edsk key nor a readable file: %v", ferr)
	}
	return tezos.ParseSecretKey(string(b))
}
