// Command dsn is the single binary of the distributed sequencer network: every
// service (consensus node, sequencer, rollup node, L1 sandbox) and every tool
// (keys, committee, kernel toolchain, listener, spammer, lab) is a subcommand.
//
// The main package stays thin: each subcommand parses its flags and hands over
// to a package under services/ or internal/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand. Its name may have several words ("kernel link").
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string) error
}

// commands lists every subcommand. Each lives in a file of its own.
func commands() []command {
	return []command{
		// Subcommands are registered here, one line each.
		nodeCommand(),
		keysGenCommand(),
		committeeNewCommand(),
		listenCommand(),
		spamCommand(),
		kernelRunCommand(),
		kernelBuildCommand(),
		kernelLinkCommand(),
		kernelInspectCommand(),
		labRenderCommand(),
		labStatusCommand(),
		healthCommand(),
		sequencerCommand(),
		sandboxCommand(),
		rollupNodeCommand(),
		receiptVerifyCommand(),
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := dispatch(ctx, commands(), os.Args[1:])
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0) // usage asked for (--help) and printed
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "dsn: %v\n", err)
		os.Exit(1)
	}
}

// dispatch runs the command whose name is the longest match of the leading
// arguments.
func dispatch(ctx context.Context, cmds []command, args []string) error {
	var best *command
	bestWords := 0
	for i := range cmds {
		words := strings.Fields(cmds[i].name)
		if len(words) > len(args) || len(words) <= bestWords {
			continue
		}
		match := true
		for j, w := range words {
			if args[j] != w {
				match = false
				break
			}
		}
		if match {
			best, bestWords = &cmds[i], len(words)
		}
	}
	if best == nil {
		usage(cmds, args)
		if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
			return flag.ErrHelp
		}
		if len(args) == 0 {
			return errors.New("no command given")
		}
		return fmt.Errorf("unknown command %q", strings.Join(args, " "))
	}
	return best.run(ctx, args[bestWords:])
}

func usage(cmds []command, args []string) {
	prefix := ""
	if len(args) > 0 {
		prefix = args[0]
	}
	sorted := append([]command(nil), cmds...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	fmt.Fprintln(os.Stderr, "usage: dsn <command> [flags]\n\ncommands:")
	for _, c := range sorted {
		if prefix != "" && strings.HasPrefix(c.name, prefix) || prefix == "" || !hasPrefixCommand(cmds, prefix) {
			fmt.Fprintf(os.Stderr, "  %-22s %s\n", c.name, c.summary)
		}
	}
}

func hasPrefixCommand(cmds []command, prefix string) bool {
	for _, c := range cmds {
		if strings.HasPrefix(c.name, prefix) {
			return true
		}
	}
	return false
}
