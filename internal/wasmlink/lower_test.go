package wasmlink

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// runAndDump runs _initialize then kernel_run and returns the first page.
func runAndDump(t *testing.T, wasm []byte, features api.CoreFeatures, callInit bool) []byte {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCoreFeatures(features))
	defer rt.Close(ctx)
	if _, err := rt.NewHostModuleBuilder("smart_rollup_core").NewFunctionBuilder().
		WithFunc(func(uint32, uint32) {}).Export("write_debug").Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := rt.InstantiateWithConfig(ctx, wasm, wazero.NewModuleConfig().WithStartFunctions())
	if err != nil {
		t.Fatal(err)
	}
	if callInit {
		if _, err := m.ExportedFunction("_initialize").Call(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.ExportedFunction("kernel_run").Call(ctx); err != nil {
		t.Fatal(err)
	}
	b, _ := m.Memory().Read(0, 65536)
	return append([]byte(nil), b...)
}

func TestLoweredBulkMemoryMatchesTheOriginal(t *testing.T) {
	src, err := os.ReadFile("testdata/bulk.wasm")
	if err != nil {
		t.Fatal(err)
	}
	linked, err := Link(src)
	if err != nil {
		t.Fatal(err)
	}
	want := runAndDump(t, src, api.CoreFeaturesV2, true)
	// The linked module's kernel_run calls _initialize itself, under MVP only.
	got := runAndDump(t, linked, api.CoreFeaturesV1|api.CoreFeatureSignExtensionOps, false)
	if !bytes.Equal(got, want) {
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("memory differs first at byte %d: %d, want %d", i, got[i], want[i])
			}
		}
	}
}
