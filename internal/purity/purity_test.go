// Package purity holds the architecture lint: the protocol cores are pure,
// deterministic step functions, so they must not reach for goroutine
// primitives, clocks, sockets, the file system or global randomness.
package purity

import (
	"go/build"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cores are the protocol core packages (relative to the module root).
var cores = []string{
	"internal/narwhal",
	"internal/primary",
	"internal/worker",
	"internal/bullshark",
	"kernel/state",
}

// forbidden imports for a core; keys come from internal/crypto.
var forbidden = map[string]bool{
	"time":         true,
	"net":          true,
	"os":           true,
	"sync":         true,
	"sync/atomic":  true,
	"math/rand":    true,
	"math/rand/v2": true,
	"crypto/rand":  true,
}

func TestCoresArePure(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, core := range cores {
		dir := filepath.Join(root, core)
		if _, err := os.Stat(dir); os.IsNotExist(err) {
			continue // not written yet
		}
		err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return err
			}
			if d.Name() == "testdata" {
				return filepath.SkipDir
			}
			pkg, err := build.ImportDir(path, 0)
			if _, ok := err.(*build.NoGoError); ok {
				return nil
			}
			if err != nil {
				return err
			}
			checked++
			for _, imp := range pkg.Imports { // non-test imports only
				if forbidden[imp] || strings.HasPrefix(imp, "net/") {
					rel, _ := filepath.Rel(root, path)
					t.Errorf("%s imports %q: protocol cores must stay pure (see STYLE.md)", rel, imp)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if checked == 0 {
		t.Fatal("no core package found: the lint checks nothing")
	}
}
