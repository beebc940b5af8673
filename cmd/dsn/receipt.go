package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tezos-dsn/dsn/internal/config"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/receipt"
)

func receiptVerifyCommand() command {
	return command{name: "receipt verify", summary: "check a transaction's receipt offline against the committee file", run: runReceiptVerify}
}

// runReceiptVerify checks a receipt (docs/sequencer.md, "Receipts"): it
// prints what the receipt proves and returns nil, or returns the first
// failed check (dsn exits 1).
func runReceiptVerify(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("receipt verify", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: dsn receipt verify --committee committee.toml [--tx FILE | --id HEX] RECEIPT.json|-")
		fs.PrintDefaults()
	}
	committeePath := fs.String("committee", "", "committee file (committee.toml) the receipt must be certified by")
	txPath := fs.String("tx", "", "file holding the transaction's exact bytes: the receipt must be for them")
	idHex := fs.String("id", "", "transaction id (BLAKE2b-256, hex): the receipt must be for it")
	// Flags may come after the receipt's path too.
	var paths []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		paths = append(paths, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	switch {
	case *committeePath == "":
		return fmt.Errorf("--committee: missing")
	case len(paths) != 1:
		return fmt.Errorf("want one receipt (a file, or - for stdin), got %d", len(paths))
	case *txPath != "" && *idHex != "":
		return fmt.Errorf("--tx and --id: give one")
	}
	committee, err := config.LoadCommittee(*committeePath)
	if err != nil {
		return err
	}
	var raw []byte
	if paths[0] == "-" {
		raw, err = io.ReadAll(io.LimitReader(os.Stdin, receipt.MaxBytes+1))
	} else {
		raw, err = os.ReadFile(paths[0])
	}
	if err != nil {
		return fmt.Errorf("read receipt: %w", err)
	}
	r, err := receipt.Decode(raw)
	if err != nil {
		return fmt.Errorf("receipt invalid: %w", err)
	}
	res, err := receipt.Verify(r, committee)
	if err != nil {
		return fmt.Errorf("receipt invalid: %w", err)
	}
	switch {
	case *txPath != "":
		tx, err := os.ReadFile(*txPath)
		if err != nil {
			return fmt.Errorf("--tx: %w", err)
		}
		if !bytes.Equal(tx, res.Transaction) {
			return fmt.Errorf("receipt invalid: it is for transaction %s, --tx holds %s (%d bytes)", res.ID, narwhal.Hash(tx), len(tx))
		}
	case *idHex != "":
		want, err := hex.DecodeString(strings.TrimPrefix(*idHex, "0x"))
		if err != nil || len(want) != narwhal.DigestSize {
			return fmt.Errorf("--id: want 64 hex digits")
		}
		if narwhal.Digest(want) != res.ID {
			return fmt.Errorf("receipt invalid: it is for transaction %s, not %s", res.ID, *idHex)
		}
	}
	printProof(os.Stdout, r, res, committee)
	return nil
}

// printProof says what a valid receipt proves, and what it does not.
func printProof(w io.Writer, r *receipt.Receipt, res *receipt.Result, c *narwhal.Committee) {
	name := func(a narwhal.AuthorityID) string { return fmt.Sprintf("%s (%d)", c.Authorities[a].Name, a) }
	signed := func(x *narwhal.Certificate) string {
		return fmt.Sprintf("signed by %d of %d authorities, stake %d ≥ quorum %d", len(x.Signers), c.Size(), c.StakeOf(x.Signers), c.QuorumThreshold())
	}
	cert, leader := res.Certificate, res.Leader
	fmt.Fprintf(w, "receipt valid: transaction %s (%d bytes), committee epoch %d of %d authorities\n", res.ID, len(res.Transaction), c.Epoch, c.Size())
	fmt.Fprintf(w, "  available: batch %s (transaction %d of it) is in the payload of certificate %s, round %d, author %s, %s\n",
		res.BatchDigest, r.InBatch, cert.Digest(), cert.Round(), name(cert.Author()), signed(cert))
	fmt.Fprintf(w, "  history:   leader certificate %s, round %d, author %s (the committee's leader of that round), %s, names it through %d link(s) of parents, every certificate on the way certified\n",
		leader.Digest(), leader.Round(), name(leader.Author()), signed(leader), res.Rounds)
	if res.Committed() {
		var who []string
		for _, s := range res.Support {
			who = append(who, name(s.Author()))
		}
		fmt.Fprintf(w, "  committed: %d certified certificate(s) of round %d by %s, stake %d ≥ f+1 = %d, name the leader: f+1 stake holds an honest authority, so every honest node and the kernel commit this leader (directly or through a later one) and order its causal history at or before its sub-DAG — this certificate with it, unless Bullshark skipped it (docs/sequencer.md, Receipts)\n",
			len(res.Support), leader.Round()+1, strings.Join(who, ", "), res.SupportStake, c.ValidityThreshold())
	} else {
		fmt.Fprintln(w, "  committed: NOT PROVEN: the receipt carries no support certificates; the leader is certified, but that a quorum commits it rests on the sequencer's word")
	}
	fmt.Fprintf(w, "  not proven: the sequencer's claim of pre-block %d, position %d (it needs the whole sub-DAG and what earlier pre-blocks ordered; the kernel's verified status checks it)\n", r.Index, r.Position)
}
