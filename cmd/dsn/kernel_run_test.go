package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// captureStdout runs fn and returns what it printed.
func captureStdout(t *testing.T, fn func() error) (string, error) {
	t.Helper()
	r, w, _ := os.Pipe()
	old := os.Stdout
	os.Stdout = w
	err := fn()
	w.Close()
	os.Stdout = old
	var b bytes.Buffer
	io.Copy(&b, r)
	return b.String(), err
}

func TestKernelRunDebugger(t *testing.T) {
	dir := t.TempDir()
	inputs := filepath.Join(dir, "inputs.json")
	os.WriteFile(inputs, []byte(`[
	  [{"external": "68656c6c6f"}],
	  [{"payload": "0x0102", "sender": "KT1ThEdxfUcWUwqsdergy3QnbCWGHSUHeHJq", "source": "tz1RjtZUVeLhADFHDL8UwDZA6vjWWhojpu5w", "destination": "sr163Lv22CdE8QagCwf48PWDTquk6isQwv57"}]
	]`), 0o644)
	out, err := captureStdout(t, func() error {
		return runKernel(context.Background(), []string{"--kernel", "../../internal/pvm/testdata/echo.wasm", "--inputs", inputs, "--dump", "/counter"})
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"== level 1: 4 inputs, 4 read, 0 dropped", "outbox[2]: 0168656c6c6f", "== level 2", "status: ok", `"/counter": "0x08000000"`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// A trapping kernel is reported, not crashed on.
	out, err = captureStdout(t, func() error {
		return runKernel(context.Background(), []string{"--kernel", "../../internal/pvm/testdata/trap.wasm"})
	})
	if err != nil || !strings.Contains(out, "status: stuck: kernel_run trapped") {
		t.Fatalf("trap: %v\n%s", err, out)
	}
	out, err = captureStdout(t, func() error {
		return runKernel(context.Background(), []string{"--kernel", "../../internal/pvm/testdata/reject_float.wasm"})
	})
	if err != nil || !strings.Contains(out, "kernel rejected") {
		t.Fatalf("rejected kernel: %v\n%s", err, out)
	}
}

func TestKernelLinkAndInspect(t *testing.T) {
	out := filepath.Join(t.TempDir(), "k.wasm")
	// The WAT test kernel has no WASI imports; linking still must yield a valid kernel.
	got, err := captureStdout(t, func() error {
		return runKernelLink(context.Background(), []string{"../../internal/pvm/testdata/echo.wasm", "-o", out})
	})
	if err != nil || !strings.Contains(got, "PVM-valid") {
		t.Fatalf("link: %v\n%s", err, got)
	}
	got, err = captureStdout(t, func() error { return runKernelInspect(context.Background(), []string{out}) })
	if err != nil || !strings.Contains(got, "PVM: valid") || !strings.Contains(got, "smart_rollup_core.read_input") {
		t.Fatalf("inspect: %v\n%s", err, got)
	}
}
