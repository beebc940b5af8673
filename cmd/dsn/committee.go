package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tezos-dsn/dsn/internal/config"
)

func committeeNewCommand() command {
	return command{name: "committee new", summary: "generate keys, committee.toml and node-N.toml for a local committee", run: runCommitteeNew}
}

func runCommitteeNew(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("committee new", flag.ContinueOnError)
	nodes := fs.Int("nodes", 7, "number of authorities (1..9)")
	out := fs.String("out", "committee", "output directory")
	host := fs.String("host", "127.0.0.1", "host the nodes reach each other on")
	basePort := fs.Int("base-port", config.DefaultBasePort, "node N uses base+10N (p2p), +1 (export), +2 (transactions), +3 (metrics)")
	hostPattern := fs.String("host-pattern", "", "per-node host, with %d for the node number (e.g. node%d for containers); overrides --host")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(*out, "committee.toml")); err == nil {
		return fmt.Errorf("%s already holds a committee: refusing to overwrite keys", *out)
	}
	c, gens, err := config.GenerateCommittee(rand.Reader, *nodes, *host, *basePort)
	if err != nil {
		return err
	}
	if *hostPattern != "" {
		for i := range c.Authorities {
			p2p, _, _, _ := config.Ports(*basePort, i+1)
			c.Authorities[i].Address = fmt.Sprintf("%s:%d", fmt.Sprintf(*hostPattern, i+1), p2p)
		}
	}
	if err := config.WriteCommittee(*out, c, gens); err != nil {
		return err
	}
	for i, a := range c.Authorities {
		_, export, tx, metrics := config.Ports(*basePort, i+1)
		fmt.Printf("%s  p2p %s  export :%d  transactions :%d  metrics :%d  config %s\n", a.Name, a.Address, export, tx, metrics,
			filepath.Join(*out, a.Name+".toml"))
	}
	return nil
}
