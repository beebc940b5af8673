package main

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tezos-dsn/dsn/lab"
)

func labRenderCommand() command {
	return command{name: "lab render", summary: "render a lab manifest into docker-compose.yml and node configs", run: runLabRender}
}

func labStatusCommand() command {
	return command{name: "lab status", summary: "print the lab's endpoints and each service's state (exit 1 if any is down)", run: runLabStatus}
}

func healthCommand() command {
	return command{name: "health", summary: "exit 0 if a node answers on its metrics endpoint (container health check)", run: runHealth}
}

func runLabRender(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("lab render", flag.ContinueOnError)
	manifest := fs.String("manifest", "lab/manifests/default.toml", "topology manifest")
	out := fs.String("out", "compose", "directory for docker-compose.yml and config/")
	if err := fs.Parse(args); err != nil {
		return err
	}
	m, err := lab.LoadManifest(*manifest)
	if err != nil {
		return err
	}
	if err := lab.Render(m, *out); err != nil {
		return err
	}
	fmt.Printf("rendered %s: %d nodes into %s\n", m.Name, m.Nodes, *out)
	return nil
}

func runLabStatus(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("lab status", flag.ContinueOnError)
	manifest := fs.String("manifest", "lab/manifests/default.toml", "topology manifest")
	if err := fs.Parse(args); err != nil {
		return err
	}
	m, err := lab.LoadManifest(*manifest)
	if err != nil {
		return err
	}
	if m.BasePort == 0 {
		return fmt.Errorf("%s publishes ports Docker chooses: use `docker-compose port`", *manifest)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NODE\tP2P\tEXPORT\tTRANSACTIONS\tMETRICS\tSTATE\tROUND\tLAST PRE-BLOCK\tMISSING BATCHES")
	down := 0
	for n := 1; n <= m.Nodes; n++ {
		ex, tx, mt := m.HostPorts(n)
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		g, err := lab.Scrape(c, fmt.Sprintf("127.0.0.1:%d", mt))
		cancel()
		state, round, last, missing := "up", "", "", ""
		if err != nil {
			state = "down"
			down++
		} else {
			round = fmt.Sprint(g["dsn_round"])
			last = fmt.Sprint(g["dsn_committed_subdags"])
			missing = fmt.Sprint(g["dsn_committed_batches_missing"])
		}
		fmt.Fprintf(w, "%s\t127.0.0.1:%d\t127.0.0.1:%d\t127.0.0.1:%d\t127.0.0.1:%d\t%s\t%s\t%s\t%s\n", lab.Service(n), ex-1, ex, tx, mt, state, round, last, missing)
	}
	w.Flush()
	seq := fmt.Sprintf("127.0.0.1:%d", lab.SequencerPort)
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	state, seqUp := "down", false
	if req, err := http.NewRequestWithContext(c, http.MethodGet, "http://"+seq+"/health", nil); err == nil {
		if resp, err := http.DefaultClient.Do(req); err == nil {
			var h struct {
				NodesUp int    `json:"nodes_up"`
				Head    uint64 `json:"head"`
			}
			json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			nodes := "nodes"
			if h.NodesUp == 1 {
				nodes = "node"
			}
			state = fmt.Sprintf("%s: %d %s answered its last call, following pre-block %d", strings.ToLower(http.StatusText(resp.StatusCode)), h.NodesUp, nodes, h.Head)
			seqUp = resp.StatusCode == http.StatusOK
		}
	}
	fmt.Printf("\nsequencer    http://%s  %s\n", seq, state)
	var services []string // the services that are down
	if !seqUp {
		services = append(services, "sequencer")
	}
	getJSON := func(url string, out any) error {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(c, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s", resp.Status)
		}
		return json.NewDecoder(resp.Body).Decode(out)
	}
	rollup := fmt.Sprintf("http://127.0.0.1:%d", lab.RollupPort)
	var level *uint32
	var head *string
	if err := getJSON(rollup+"/global/tezos_level", &level); err != nil {
		fmt.Printf("rollup node  %s  down (%v)\n", rollup, err)
		services = append(services, "rollup node")
	} else {
		blocks := "none yet"
		if getJSON(rollup+"/global/block/head/durable/wasm_2_0_0/value?key=/dsn/head", &head) == nil && head != nil {
			if raw, err := hex.DecodeString(*head); err == nil && len(raw) == 8 {
				blocks = fmt.Sprint(binary.BigEndian.Uint64(raw))
			}
		}
		l := "none"
		if level != nil {
			l = fmt.Sprint(*level)
		}
		fmt.Printf("rollup node  %s  up: processed L1 level %s, the kernel's last block %s\n", rollup, l, blocks)
	}
	sandbox := fmt.Sprintf("http://127.0.0.1:%d", lab.SandboxPort)
	var h struct {
		Level int64  `json:"level"`
		Hash  string `json:"hash"`
	}
	if err := getJSON(sandbox+"/chains/main/blocks/head/header", &h); err != nil {
		fmt.Printf("L1 sandbox   %s  down (%v)\n", sandbox, err)
		services = append(services, "L1 sandbox")
	} else {
		fmt.Printf("L1 sandbox   %s  up: level %d (%s)\n", sandbox, h.Level, h.Hash)
	}
	switch {
	case down > 0 && len(services) > 0:
		return fmt.Errorf("%d of %d nodes are down, and the %s", down, m.Nodes, strings.Join(services, ", "))
	case down > 0:
		return fmt.Errorf("%d of %d nodes are down", down, m.Nodes)
	case len(services) > 0:
		return fmt.Errorf("down: the %s", strings.Join(services, ", "))
	}
	return nil
}

func runHealth(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	metrics := fs.String("metrics", "127.0.0.1:64013", "the node's metrics address")
	url := fs.String("url", "", "instead of a node: a service's health URL, healthy when it answers 200")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if *url != "" {
		req, err := http.NewRequestWithContext(c, http.MethodGet, *url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", *url, resp.Status)
		}
		return nil
	}
	g, err := lab.Scrape(c, *metrics)
	if err != nil {
		return err
	}
	if _, ok := g["dsn_committed_subdags"]; !ok {
		return fmt.Errorf("%s serves no dsn_committed_subdags", *metrics)
	}
	return nil
}
