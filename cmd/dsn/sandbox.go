package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/tezos-dsn/dsn/services/sandbox"
)

func sandboxCommand() command {
	return command{name: "sandbox", summary: "run the lab's Tezos L1 sandbox (bakes levels, carries smart_rollup_add_messages)", run: runSandbox}
}

func runSandbox(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: dsn sandbox [--config sandbox.toml] [flags]\n\n"+
			"Runs a single-process Tezos L1 sandbox: bakes one level every block_time, accepts\n"+
			"signed smart_rollup_add_messages operations on POST /injection/operation and serves\n"+
			"octez-style block RPCs plus GET /dsn/inbox/{level} (docs/sandbox.md).\n"+
			"Flags override the config file.\n\nflags:\n")
		fs.PrintDefaults()
	}
	def := sandbox.DefaultConfig()
	path := fs.String("config", "", "TOML config file (optional)")
	listen := fs.String("listen", def.Listen, "RPC address")
	dataDir := fs.String("data-dir", "", "pebble data directory (required, here or in the config)")
	blockTime := fs.Duration("block-time", def.BlockTime.Duration, "time between levels (100ms..6s)")
	accounts := fs.String("accounts", "", "comma-separated edpk… keys allowed as sources (default: bootstrap1..5, alice, bob)")
	maxBlock := fs.Int("max-block-bytes", def.MaxBlockBytes, "operation bytes per block")
	ttl := fs.Int("max-operations-ttl", def.MaxOperationsTTL, "levels an operation's branch stays valid")
	genesis := fs.String("genesis-timestamp", "", "RFC 3339 timestamp of level 0, first start only (default: now)")
	logLevel := fs.String("log-level", def.LogLevel, "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil // usage printed; --help is not an error
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("sandbox: unexpected argument %q", fs.Arg(0))
	}
	cfg := def
	if *path != "" {
		if err := sandbox.LoadConfig(*path, &cfg); err != nil {
			return err
		}
	}
	var err error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "listen":
			cfg.Listen = *listen
		case "data-dir":
			cfg.DataDir = *dataDir
		case "block-time":
			cfg.BlockTime.Duration = *blockTime
		case "accounts":
			cfg.Accounts = nil
			for _, a := range strings.Split(*accounts, ",") {
				if a = strings.TrimSpace(a); a != "" {
					cfg.Accounts = append(cfg.Accounts, a)
				}
			}
		case "max-block-bytes":
			cfg.MaxBlockBytes = *maxBlock
		case "max-operations-ttl":
			cfg.MaxOperationsTTL = *ttl
		case "genesis-timestamp":
			t, perr := time.Parse(time.RFC3339, *genesis)
			if perr != nil {
				err = fmt.Errorf("--genesis-timestamp: %w", perr)
			}
			cfg.GenesisTimestamp = t
		case "log-level":
			cfg.LogLevel = *logLevel
		}
	})
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("sandbox config: %w", err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return fmt.Errorf("log_level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("service", "sandbox")
	s, err := sandbox.New(cfg, log)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}
