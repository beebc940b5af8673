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
	return command{name: "keys gen", summary: "generate a node's BLS and ed25519 keys", run: runKeysGen}
}

func runKeysGen(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("keys gen", flag.ContinueOnError)
	out := fs.String("out", ".", "directory for the key files")
	name := fs.String("name", "node", "file name prefix: NAME.bls and NAME.ed25519")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	sk, err := crypto.GenerateBLSKey(rand.Reader)
	if err != nil {
		return err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	blsPath := filepath.Join(*out, *name+".bls")
	netPath := filepath.Join(*out, *name+".ed25519")
	for _, p := range []string{blsPath, netPath} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s exists: refusing to overwrite a key", p)
		}
	}
	if err := config.SaveKeys(blsPath, sk, netPath, priv); err != nil {
		return err
	}
	pk, pop := sk.PublicKey(), sk.ProvePossession()
	// The public half, ready to paste into a committee file.
	fmt.Printf("[[authority]]\nname = %q\nstake = 1000\nbls_key = %q\npossession = %q\nnetwork_key = %q\naddress = \"HOST:PORT\"\n",
		*name, crypto.EncodeKey(pk[:]), crypto.EncodeKey(pop[:]), crypto.EncodeKey(pub))
	return nil
}
