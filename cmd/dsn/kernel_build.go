package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/tezos-dsn/dsn/internal/pvm"
	"github.com/tezos-dsn/dsn/internal/wasmlink"
)

func kernelBuildCommand() command {
	return command{name: "kernel build", summary: "build a Go kernel package into a PVM-valid .wasm", run: runKernelBuild}
}

func kernelLinkCommand() command {
	return command{name: "kernel link", summary: "turn a Go wasip1 .wasm into a PVM-valid kernel", run: runKernelLink}
}

func kernelInspectCommand() command {
	return command{name: "kernel inspect", summary: "print a .wasm's imports, exports, features and sections", run: runKernelInspect}
}

func runKernelBuild(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("kernel build", flag.ContinueOnError)
	pkg := fs.String("pkg", "", "Go package of the kernel (e.g. ./kernel/examples/echo)")
	out := fs.String("out", "kernel.wasm", "output file")
	names := fs.Bool("names", false, "keep function names (for dsn kernel run --profile; about 2 % larger)")
	goBodies := fs.Bool("go-bodies", false, goBodiesUsage)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *pkg == "" {
		return fmt.Errorf("--pkg: missing")
	}
	k, err := wasmlink.BuildWith(ctx, ".", *pkg, wasmlink.Options{KeepNames: *names, GoBodies: *goBodies})
	if err != nil {
		return err
	}
	return writeKernel(*out, k)
}

func runKernelLink(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("kernel link", flag.ContinueOnError)
	out := fs.String("out", "kernel.wasm", "output file (as kernel build's --out)")
	fs.StringVar(out, "o", "kernel.wasm", "output file (same as --out)")
	names := fs.Bool("names", false, "keep function names (for dsn kernel run --profile)")
	goBodies := fs.Bool("go-bodies", false, goBodiesUsage)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		return fmt.Errorf("usage: dsn kernel link IN.wasm --out OUT.wasm")
	}
	in := fs.Arg(0)
	if err := fs.Parse(fs.Args()[1:]); err != nil { // flags may follow the input
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("usage: dsn kernel link IN.wasm --out OUT.wasm")
	}
	raw, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	k, err := wasmlink.LinkWith(raw, wasmlink.Options{KeepNames: *names, GoBodies: *goBodies})
	if err != nil {
		return err
	}
	return writeKernel(*out, k)
}

const goBodiesUsage = "keep every function as Go compiled it: no hand-written field arithmetic for gnark's BLS12-381 (slower; for comparison)"

func writeKernel(path string, k []byte) error {
	if err := pvm.Validate(k); err != nil {
		return fmt.Errorf("linked kernel is not PVM-valid: %w", err)
	}
	if err := os.WriteFile(path, k, 0o644); err != nil {
		return err
	}
	fmt.Printf("%s: %d bytes, PVM-valid\n", path, len(k))
	return nil
}

func runKernelInspect(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("kernel inspect", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: dsn kernel inspect K.wasm\n\nprints the module's imports, exports, features and sections, and whether the PVM accepts it")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: dsn kernel inspect K.wasm")
	}
	raw, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	rep, err := wasmlink.Inspect(raw)
	if err != nil {
		return err
	}
	fmt.Print(rep)
	if err := pvm.Validate(raw); err != nil {
		fmt.Printf("PVM: rejected: %v\n", err)
	} else {
		fmt.Println("PVM: valid")
	}
	return nil
}
