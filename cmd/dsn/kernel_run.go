package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"
	"unicode/utf8"

	"github.com/tezos-dsn/dsn/internal/pvm"
	"github.com/tezos-dsn/dsn/internal/tezos"
	"github.com/tezos-dsn/dsn/internal/wasmmeter"
)

func kernelRunCommand() command {
	return command{name: "kernel run", summary: "run a kernel in the PVM over inputs, like octez-smart-rollup-wasm-debugger", run: runKernel}
}

func runKernel(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("kernel run", flag.ContinueOnError)
	kernelPath := fs.String("kernel", "", "kernel .wasm file")
	inputsPath := fs.String("inputs", "", "inputs JSON (a list of levels of messages, octez debugger format)")
	rollup := fs.String("rollup", pvm.DefaultDebuggerRollup, "rollup address (sr1…)")
	preimages := fs.String("preimages", "", "directory of reveal preimages")
	dump := fs.String("dump", "", "print the durable storage under this path as JSON at the end (e.g. /)")
	tickLimit := fs.Uint64("tick-limit", pvm.DefaultTickLimit, "ticks one kernel_run may take (the protocol's ticks_per_snapshot); a run that reaches it is stuck")
	ticks := fs.Bool("ticks", false, "print the ticks of each kernel_run and of each level (octez's tick model: internal/wasmmeter)")
	profile := fs.Int("profile", 0, "print the N functions with the most ticks of their own in each level (names need a kernel built with --names); implies --ticks")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *kernelPath == "" {
		return fmt.Errorf("--kernel: missing")
	}
	wasm, err := os.ReadFile(*kernelPath)
	if err != nil {
		return err
	}
	levels := [][][]byte{nil}
	if *inputsPath != "" {
		raw, err := os.ReadFile(*inputsPath)
		if err != nil {
			return err
		}
		if levels, err = pvm.ParseInputs(raw); err != nil {
			return err
		}
	}
	cfg := pvm.DefaultConfig()
	if cfg.Rollup, err = tezos.ParseRollup(*rollup); err != nil {
		return fmt.Errorf("--rollup: %w", err)
	}
	if *tickLimit == 0 {
		return fmt.Errorf("--tick-limit must be positive")
	}
	cfg.PreimagesDir, cfg.TickLimit = *preimages, *tickLimit
	cfg.Profile = *profile > 0
	*ticks = *ticks || *profile > 0
	names, _ := wasmmeter.FunctionNames(wasm)
	p, err := pvm.New(ctx, cfg, nil)
	if err != nil {
		return err
	}
	defer p.Close(ctx)
	if err := pvm.Validate(wasm); err != nil {
		fmt.Printf("kernel rejected: %v\n", err)
	}
	if err := p.InstallKernel(wasm); err != nil {
		return err
	}
	for i, msgs := range levels {
		level := uint32(i + 1)
		res, err := p.RunLevel(ctx, level, time.Now().Unix(), [32]byte{}, msgs)
		if err != nil {
			return err
		}
		fmt.Printf("== level %d: %d inputs, %d read, %d dropped, %d kernel_run call(s)\n", level, len(msgs)+3, res.Read, res.Dropped, res.Runs)
		if res.Debug != "" {
			if printable([]byte(res.Debug)) {
				fmt.Printf("debug:\n%s", res.Debug)
				if res.Debug[len(res.Debug)-1] != '\n' {
					fmt.Println()
				}
			} else {
				fmt.Printf("debug (hex): %s\n", hex.EncodeToString([]byte(res.Debug)))
			}
		}
		for k, o := range res.Outbox {
			fmt.Printf("outbox[%d]: %s\n", k, hex.EncodeToString(o))
		}
		status := "ok"
		if res.Stuck != "" {
			status = "stuck: " + res.Stuck
		}
		fmt.Printf("status: %s\nstate hash: %x\n", status, res.StateHash)
		if *ticks {
			fmt.Printf("ticks: %d", res.Ticks)
			if len(res.RunTicks) > 1 {
				fmt.Printf(" (kernel_run:")
				for _, t := range res.RunTicks {
					fmt.Printf(" %d", t)
				}
				fmt.Printf(")")
			}
			fmt.Printf(", %s\n", res.Elapsed.Round(time.Microsecond))
		}
		if *profile > 0 {
			printProfile(res.Profile, res.Ticks, names, *profile)
		}
	}
	if *dump != "" {
		out := map[string]string{}
		p.Durable().Walk(*dump, func(path string, v []byte) {
			if printable(v) && len(v) < 256 {
				out[path] = string(v)
			} else {
				out[path] = "0x" + hex.EncodeToString(v)
			}
		})
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	return nil
}

// printable reports whether b is UTF-8 text without control characters
// other than newlines and tabs.
func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f {
			return false
		}
	}
	return true
}

// printProfile prints the n functions with the most ticks of their own.
func printProfile(prof map[uint32]uint64, total uint64, names map[uint32]string, n int) {
	idx := make([]uint32, 0, len(prof))
	for i := range prof {
		idx = append(idx, i)
	}
	sort.Slice(idx, func(a, b int) bool {
		if prof[idx[a]] != prof[idx[b]] {
			return prof[idx[a]] > prof[idx[b]]
		}
		return idx[a] < idx[b]
	})
	for _, i := range idx[:min(n, len(idx))] {
		name := names[i]
		if name == "" {
			name = fmt.Sprintf("$%d", i)
		}
		fmt.Printf("  %14d ticks %5.1f %%  %s\n", prof[i], 100*float64(prof[i])/float64(max(total, 1)), name)
	}
}
