package pvm

import (
	"context"
	"testing"
)

// A PVM over pebble, stopped and reopened between levels, ends in the same
// state as one that never stopped.
func TestDurableStoragePersistsPerLevel(t *testing.T) {
	ctx := context.Background()
	run := func(p *PVM, lvl uint32, k string) {
		t.Helper()
		if k != "" {
			p.InstallKernel(kernel(t, k))
		}
		res, err := p.RunLevel(ctx, lvl, 0, [32]byte{}, [][]byte{External([]byte("m"))})
		if err != nil || res.Stuck != "" {
			t.Fatalf("level %d: %v %s", lvl, err, res.Stuck)
		}
	}
	// Reference: in memory, no restart.
	ref := newPVM(t, "")
	run(ref, 1, "codes")
	run(ref, 2, "echo")
	run(ref, 3, "")

	dir := t.TempDir()
	open := func() (*PVM, uint32) {
		d, level, err := OpenDurable(dir)
		if err != nil {
			t.Fatal(err)
		}
		p, err := New(ctx, DefaultConfig(), d)
		if err != nil {
			t.Fatal(err)
		}
		return p, level
	}
	p, level := open()
	if level != 0 {
		t.Fatalf("fresh storage at level %d", level)
	}
	run(p, 1, "codes")
	p.Close(ctx)
	p.Durable().Close()
	p, level = open()
	if level != 1 {
		t.Fatalf("reopened at level %d, want 1", level)
	}
	run(p, 2, "echo")
	p.Close(ctx)
	p.Durable().Close()
	p, _ = open()
	run(p, 3, "")
	defer p.Durable().Close()
	defer p.Close(ctx)
	if p.Durable().Hash() != ref.Durable().Hash() {
		var got, want []string
		p.Durable().Walk("", func(path string, _ []byte) { got = append(got, path) })
		ref.Durable().Walk("", func(path string, _ []byte) { want = append(want, path) })
		t.Fatalf("state after restarts differs:\n got %v\nwant %v", got, want)
	}
}
