package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/tezos-dsn/dsn/internal/config"
	"github.com/tezos-dsn/dsn/services/node"
)

func nodeCommand() command {
	return command{name: "node", summary: "run a consensus node (--config node.toml)", run: runNode}
}

func runNode(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	path := fs.String("config", "node.toml", "node config file")
	minFree := fs.Uint64("min-free-bytes", node.DefaultMinFreeBytes,
		"refuse transactions (RESOURCE_EXHAUSTED) while the data directory's filesystem has fewer bytes free; 0 disables")
	resync := fs.Bool("resync", false, "move the store aside (to <data_dir>.damaged-<time>, keeping the signing record) and rebuild it from the peers")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.LoadNode(*path)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return fmt.Errorf("log_level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if *resync {
		aside, err := node.MoveStoreAside(cfg.Path(cfg.DataDir), time.Now())
		if err != nil {
			return err
		}
		log.Warn("store moved aside; rebuilding it from the peers", "data_dir", cfg.Path(cfg.DataDir), "moved_to", aside)
	}
	n, err := node.New(cfg, log, node.WithMinFreeBytes(*minFree))
	if err != nil {
		return err
	}
	return n.Run(ctx)
}
