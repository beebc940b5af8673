package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tezos-dsn/dsn/internal/tezos"
)

func TestConfigValidate(t *testing.T) {
	ok := TestConfig("/tmp/x")
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	if d := DefaultConfig(); d.Listen != ":20000" || d.BlockTime.Duration != time.Second || len(d.Accounts) != tezos.SandboxAccountCount ||
		d.MaxBlockBytes != 512<<10 || d.MaxOperationsTTL != 120 {
		t.Fatalf("defaults %+v", d)
	}
	for field, mutate := range map[string]func(*Config){
		"listen":             func(c *Config) { c.Listen = "nocolon" },
		"data_dir":           func(c *Config) { c.DataDir = "" },
		"block_time":         func(c *Config) { c.BlockTime.Duration = 50 * time.Millisecond },
		"block_time ":        func(c *Config) { c.BlockTime.Duration = 7 * time.Second },
		"accounts":           func(c *Config) { c.Accounts = nil },
		"accounts[1]":        func(c *Config) { c.Accounts = []string{c.Accounts[0], "edpkbad"} },
		"accounts[2]":        func(c *Config) { c.Accounts = []string{c.Accounts[0], c.Accounts[1], c.Accounts[0]} },
		"max_block_bytes":    func(c *Config) { c.MaxBlockBytes = 1000 },
		"max_operations_ttl": func(c *Config) { c.MaxOperationsTTL = 0 },
		"log_level":          func(c *Config) { c.LogLevel = "loud" },
	} {
		c := TestConfig("/tmp/x")
		mutate(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), strings.TrimSpace(field)) {
			t.Errorf("%s: %v", field, err)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sandbox.toml")
	bob := DefaultConfig().Accounts[6]
	os.WriteFile(path, []byte(`
listen = "127.0.0.1:20001"
data_dir = "/var/lib/sandbox"
block_time = "250ms"
accounts = ["`+bob+`"]
genesis_timestamp = 2026-11-30T12:00:00Z
`), 0o644)
	c := DefaultConfig()
	if err := LoadConfig(path, &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:20001" || c.BlockTime.Duration != 250*time.Millisecond || len(c.Accounts) != 1 || c.Accounts[0] != bob ||
		!c.GenesisTimestamp.Equal(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)) || c.MaxOperationsTTL != 120 {
		t.Fatalf("loaded %+v", c)
	}
	os.WriteFile(path, []byte("blocktime = \"1s\"\n"), 0o644)
	if err := LoadConfig(path, &c); err == nil || !strings.Contains(err.Error(), "blocktime") {
		t.Fatalf("unknown field: %v", err)
	}
}
