package pvm

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// The memoized state hash always equals a hash computed from scratch,
// whatever sequence of writes, partial writes, deletes, copies and moves
// came before (a clone carries no memo).
func TestMemoizedHashMatchesFullHash(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	d := NewDurable()
	paths := func() []string {
		segs := []string{"a", "b", "c", "d"}
		n := 1 + rng.IntN(3)
		var out []string
		for range n {
			out = append(out, segs[rng.IntN(len(segs))])
		}
		return out
	}
	for i := range 5000 {
		segs := paths()
		switch rng.IntN(6) {
		case 0, 1:
			d.setValue(segs, fmt.Appendf(nil, "v%d", i))
		case 2:
			d.writeValue(segs, uint32(rng.IntN(4)), []byte{byte(i)})
		case 3:
			d.deleteValue(segs)
		case 4:
			d.deleteTree(segs)
		case 5:
			if src := d.find(segs); src != nil && !src.empty() {
				to := paths()
				c := src.clone()
				if rng.IntN(2) == 0 {
					d.deleteTree(segs)
				}
				d.graft(to, c)
			}
		}
		if i%7 == 0 || i > 4990 {
			if got, want := d.Hash(), d.Clone().Hash(); got != want {
				t.Fatalf("step %d: memoized hash %x, full hash %x", i, got, want)
			}
		}
	}
}
