package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tezos-dsn/dsn/internal/config"
	"github.com/tezos-dsn/dsn/internal/crypto"
)

func keysGenCommand() command {
	return command{name: "keys gen", summary: "generate a node's consensus and network keys (ed25519)", run: runKeysGen}
}

func runKeysGen(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("keys gen", flag.ContinueOnError)
	out := fs.String("out", ".", "directory for the key files")
	name := fs.String("name", "node", "file name prefix: NAME.consensus and NAME.ed25519")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	sk, err := crypto.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	consensusPath := filepath.Join(*out, *name+".consensus")
	netPath := filepath.Join(*out, *name+".ed25519")
	for _, p := range []string{consensusPath, netPath} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s exists: refusing to overwrite a key", p)
		}
	}
	if err := config.SaveKeys(consensusPath, sk, netPath, priv); err != nil {
		return err
	}
	pk := sk.PublicKey()
	// The public half, ready to paste into a committee file.
	fmt.Printf("[[authority]]\nname = %q\nstake = 1000\nconsensus_key = %q\nnetwork_key = %q\naddress = \"HOST:PORT\"\n",
		*name, crypto.EncodeKey(pk[:]), crypto.EncodeKey(pub))
	return nil
}
