package main

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tezos-dsn/dsn/internal/config"
	"github.com/tezos-dsn/dsn/internal/receipt/receipttest"
)

// `dsn receipt verify` on files: a valid receipt prints what it proves; a
// wrong transaction, a wrong id, a tampered receipt fail with the check
// that failed; --help is not an error.
func TestReceiptVerifyCommand(t *testing.T) {
	f := receipttest.New(t, 4)
	dir := t.TempDir()
	committee := filepath.Join(dir, "committee.toml")
	if err := config.SaveCommittee(committee, f.Committee); err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("receipt.json", f.Receipt.Encode())
	txFile := write("tx", f.TX)
	otherTx := write("other-tx", []byte("another transaction"))
	bad := receipttest.Clone(t, f.Receipt)
	bad.Path = bad.Path[1:]
	broken := write("broken.json", bad.Encode())
	run := func(args ...string) (string, error) {
		return captureStdout(t, func() error { return runReceiptVerify(context.Background(), args) })
	}

	out, err := run("--committee", committee, "--tx", txFile, good)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"receipt valid", "available: batch", "(the committee's leader of that round)", "committed: 2 certified certificate(s) of round 5", "not proven: the sequencer's claim of pre-block 1, position 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Flags after the receipt, and --id.
	if _, err := run(good, "--committee", committee, "--id", f.Receipt.ID.String()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--committee", committee, "--tx", otherTx, good}, "--tx holds"},
		{[]string{"--committee", committee, "--id", strings.Repeat("00", 32), good}, "not 0000"},
		{[]string{"--committee", committee, broken}, "path does not link the leader to the certificate"},
		{[]string{"--committee", committee, write("junk.json", []byte("{"))}, "receipt: malformed"},
		{[]string{good}, "--committee: missing"},
	} {
		if _, err := run(c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
	// The receipt from stdin.
	stdin, err := os.Open(good)
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	old := os.Stdin
	os.Stdin = stdin
	_, err = run("--committee", committee, "-")
	os.Stdin = old
	if err != nil {
		t.Fatalf("from stdin: %v", err)
	}
	if err := dispatch(context.Background(), commands(), []string{"receipt", "verify", "--help"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
}
