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

func TestJournalCoversSubtreeCopiesAndDeletes(t *testing.T) {
	dir := t.TempDir()
	d, _, err := OpenDurable(dir)
	if err != nil {
		t.Fatal(err)
	}
	d.setValue([]string{"x", "y"}, []byte("1"))
	d.setValue([]string{"x", "y", "z"}, []byte("2"))
	d.graft([]string{"copy"}, d.find([]string{"x"}).clone())
	d.setValue([]string{"gone", "a"}, []byte("3"))
	if err := d.Commit(1); err != nil {
		t.Fatal(err)
	}
	d.deleteTree([]string{"gone"})
	d.writeValue([]string{"copy", "y"}, 1, []byte("!"))
	if err := d.Commit(2); err != nil {
		t.Fatal(err)
	}
	want := d.Hash()
	d.Close()
	d2, level, err := OpenDurable(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if level != 2 || d2.Hash() != want {
		t.Fatalf("level %d, hash equal %v", level, d2.Hash() == want)
	}
	for path, v := range map[string]string{"/copy/y": "1!", "/copy/y/z": "2", "/x/y": "1"} {
		if got, ok := d2.Get(path); !ok || string(got) != v {
			t.Errorf("%s = %q, want %q", path, got, v)
		}
	}
	if _, ok := d2.Get("/gone/a"); ok {
		t.Error("a deleted subtree came back")
	}
}
