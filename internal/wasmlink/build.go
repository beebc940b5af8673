package wasmlink

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Build compiles a Go kernel package for the PVM (GOOS=wasip1, c-shared,
// software floating point) and links it. dir is the module directory the
// package path is relative to.
func Build(ctx context.Context, dir, pkg string) ([]byte, error) {
	return BuildWith(ctx, dir, pkg, Options{})
}

// BuildWith is Build with link options.
func BuildWith(ctx context.Context, dir, pkg string, opts Options) ([]byte, error) {
	tmp, err := os.MkdirTemp("", "dsn-kernel-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "kernel.wasm")
	cmd := exec.CommandContext(ctx, "go", "build", "-buildmode=c-shared", "-gcflags=all=-d=softfloat", "-trimpath", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	return LinkWith(raw, opts)
}
