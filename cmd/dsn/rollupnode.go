package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/tezos-dsn/dsn/services/rollupnode"
)

func rollupNodeCommand() command {
	return command{name: "rollup-node", summary: "run the smart-rollup node (octez RPC subset) that follows the L1 and runs the kernel", run: runRollupNode}
}

func runRollupNode(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("rollup-node", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: dsn rollup-node --config FILE [flags]\n\nFlags override the file (see docs/rollup-node.md).")
		fs.PrintDefaults()
	}
	path := fs.String("config", "", "TOML configuration file")
	listen := fs.String("listen", "", "RPC address (overrides listen)")
	dataDir := fs.String("data-dir", "", "data directory (overrides data_dir)")
	l1 := fs.String("l1", "", "L1 RPC URL (overrides l1_endpoint)")
	debug := fs.Bool("debug", false, "log the kernel's debug output")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := rollupnode.DefaultConfig()
	if *path != "" {
		var err error
		if cfg, err = rollupnode.LoadConfig(*path); err != nil {
			return err
		}
	}
	for flagValue, field := range map[*string]*string{listen: &cfg.Listen, dataDir: &cfg.DataDir, l1: &cfg.L1} {
		if *flagValue != "" {
			*field = *flagValue
		}
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("service", "rollup-node")
	n, err := rollupnode.Open(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer n.Close()
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	srv := &http.Server{Handler: n.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("rpc server", "err", err)
		}
	}()
	log.Info("rollup node started", "listen", lis.Addr().String(), "l1", cfg.L1)
	err = n.Run(ctx)
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(c)
	return err
}
