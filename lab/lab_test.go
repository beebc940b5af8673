package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tezos-dsn/dsn/internal/config"
)

// The committed render (compose/) is what the default manifest renders
// to: run `make lab-render` after changing the manifest or the renderer.
func TestCommittedRenderIsCurrent(t *testing.T) {
	m, err := LoadManifest("manifests/default.toml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := Render(m, dir); err != nil {
		t.Fatal(err)
	}
	n := 0
	err = filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		want, _ := os.ReadFile(path)
		got, err := os.ReadFile(filepath.Join("..", "compose", rel))
		if err != nil || string(got) != string(want) {
			t.Errorf("compose/%s is stale or missing: run `make lab-render`", rel)
		}
		n++
		return nil
	})
	if err != nil || n < 3 {
		t.Fatalf("walked %d files: %v", n, err)
	}
}

func TestManifestValidation(t *testing.T) {
	good := Manifest{Name: "x", Nodes: 7, Image: "dsn:lab", BasePort: 64000}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string]Manifest{
		"no name":       {Nodes: 7, Image: "i"},
		"10 nodes":      {Name: "x", Nodes: 10, Image: "i"},
		"no image":      {Name: "x", Nodes: 7},
		"ports too low": {Name: "x", Nodes: 7, Image: "i", BasePort: 80},
		"gc depth 1":    {Name: "x", Nodes: 7, Image: "i", Consensus: Consensus{GCDepth: 1}},
		"gomaxprocs -1": {Name: "x", Nodes: 7, Image: "i", GOMAXPROCS: -1},
	} {
		if err := m.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A shape reaches its node's config (the transport's [network] section),
// and only that node's; bad shapes are refused.
func TestShapesReachTheirNode(t *testing.T) {
	m := &Manifest{Name: "x", Nodes: 4, Image: "dsn:lab", Seed: 1,
		Shapes: []Shape{{Node: 3, Delay: config.Duration{Duration: 150 * time.Millisecond}, Loss: 0.1}}}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := Render(m, dir); err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 4; n++ {
		cfg, err := config.LoadNode(filepath.Join(dir, "config", fmt.Sprintf("node-%d.toml", n)))
		if err != nil {
			t.Fatal(err)
		}
		shaped := cfg.Network.Delay.Duration == 150*time.Millisecond && cfg.Network.Loss == 0.1
		if shaped != (n == 3) {
			t.Fatalf("node %d: network %+v", n, cfg.Network)
		}
	}
	for _, bad := range []Shape{{Node: 5}, {Node: 1, Loss: 1}, {Node: 1, Delay: config.Duration{Duration: time.Minute}}} {
		m.Shapes = []Shape{bad}
		if m.Validate() == nil {
			t.Errorf("shape %+v accepted", bad)
		}
	}
}

// A load in the manifest adds a spam container aimed at node 1.
func TestLoadContainer(t *testing.T) {
	m := &Manifest{Name: "x", Nodes: 4, Image: "dsn:lab", Seed: 1, Load: Load{Rate: 100}}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	cs := m.Containers()
	last := cs[len(cs)-1]
	if last.Name != "load" || last.Command[0] != "spam" || !strings.Contains(strings.Join(last.Command, " "), "--rate 100 --min-size 512") {
		t.Fatalf("load container: %+v", last)
	}
	if !strings.Contains(compose(m), "  load:\n") {
		t.Fatal("the compose file has no load service")
	}
	m.Load = Load{}
	if cs := m.Containers(); cs[len(cs)-1].Name == "load" {
		t.Fatal("a load container without a rate")
	}
}

// Every container runs with the manifest's gomaxprocs (1 by default), in
// the compose file as in labtest.
func TestGOMAXPROCS(t *testing.T) {
	for _, tc := range []struct{ set, want int }{{0, 1}, {3, 3}} {
		m := &Manifest{Name: "x", Nodes: 4, Image: "dsn:lab", Seed: 1, GOMAXPROCS: tc.set, Load: Load{Rate: 10}}
		cs := m.Containers()
		for _, c := range cs {
			if want := [][2]string{{"GOMAXPROCS", fmt.Sprint(tc.want)}}; fmt.Sprint(c.Env) != fmt.Sprint(want) {
				t.Fatalf("gomaxprocs %d: %s has env %v, want %v", tc.set, c.Name, c.Env, want)
			}
		}
		if got := strings.Count(compose(m), fmt.Sprintf("GOMAXPROCS: \"%d\"", tc.want)); got != len(cs) {
			t.Fatalf("gomaxprocs %d: %d services in the compose file set it, want %d", tc.set, got, len(cs))
		}
	}
}
