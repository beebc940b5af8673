package wasmlink

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	mrand "math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dsncrypto "github.com/tezos-dsn/dsn/internal/crypto"
	crypto "github.com/tezos-dsn/dsn/internal/crypto/bls"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/pvm"
	"github.com/tezos-dsn/dsn/internal/wasmbin"
)

var (
	echoOnce sync.Once
	echoWasm []byte
	echoErr  error
)

// echoKernel builds and links kernel/examples/echo once per test binary.
func echoKernel(t testing.TB) []byte {
	t.Helper()
	echoOnce.Do(func() { echoWasm, echoErr = Build(context.Background(), "../..", "./kernel/examples/echo") })
	if echoErr != nil {
		t.Fatal(echoErr)
	}
	return echoWasm
}

func TestLinkedEchoKernelIsPVMValid(t *testing.T) {
	k := echoKernel(t)
	if err := pvm.Validate(k); err != nil {
		t.Fatalf("pvm.Validate: %v", err)
	}
	if _, err := exec.LookPath("wasm-validate"); err != nil {
		t.Skip("wasm-validate not installed (apt-get install wabt)")
	}
	f := filepath.Join(t.TempDir(), "k.wasm")
	os.WriteFile(f, k, 0o644)
	out, err := exec.Command("wasm-validate", "--disable-bulk-memory", "--disable-saturating-float-to-int",
		"--disable-multi-value", "--disable-reference-types", "--disable-simd", f).CombinedOutput()
	if err != nil {
		t.Fatalf("wasm-validate: %v\n%s", err, out)
	}
	dis, _ := exec.Command("wasm-objdump", "-d", f).Output()
	for _, l := range strings.Split(string(dis), "\n") {
		if i := strings.Index(l, "| "); i >= 0 {
			if ins := strings.Fields(l[i+2:]); len(ins) > 0 && (strings.HasPrefix(ins[0], "f32.") || strings.HasPrefix(ins[0], "f64.")) {
				t.Fatalf("float instruction after softfloat: %s", l)
			}
		}
	}
}

func TestGoEchoKernelRunsInThePVM(t *testing.T) {
	k := echoKernel(t)
	ctx := context.Background()
	p, err := pvm.New(ctx, pvm.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	p.InstallKernel(k)
	for lvl := uint32(1); lvl <= 3; lvl++ {
		res, err := p.RunLevel(ctx, lvl, 1_700_000_000, [32]byte{}, [][]byte{pvm.External([]byte("ping"))})
		if err != nil {
			t.Fatal(err)
		}
		if res.Stuck != "" {
			t.Fatalf("level %d: %s\ndebug: %s", lvl, res.Stuck, res.Debug)
		}
		if len(res.Outbox) != 4 || !bytes.Equal(res.Outbox[2], pvm.External([]byte("ping"))) {
			t.Fatalf("level %d outbox: %q", lvl, res.Outbox)
		}
		if !strings.Contains(res.Debug, "echo: level") {
			t.Fatalf("debug: %q", res.Debug)
		}
	}
	v, _ := p.Durable().Get("/counter")
	if binary.LittleEndian.Uint32(v) != 12 {
		t.Fatalf("counter %x", v)
	}
}

func TestGoPanicIsReadable(t *testing.T) {
	k := echoKernel(t)
	ctx := context.Background()
	p, _ := pvm.New(ctx, pvm.DefaultConfig(), nil)
	defer p.Close(ctx)
	p.InstallKernel(k)
	res, err := p.RunLevel(ctx, 1, 0, [32]byte{}, [][]byte{pvm.External([]byte("panic"))})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Stuck, "trapped") || !strings.Contains(res.Debug, "panic: echo: asked to panic") {
		t.Fatalf("stuck %q debug %q", res.Stuck, res.Debug)
	}
}

// TestBLSVerificationInsideThePVM runs the BLS example kernel as linked
// (with the field intrinsics) and with Go's own bodies: the same verdicts,
// and the intrinsics are in the first.
func TestBLSVerificationInsideThePVM(t *testing.T) {
	k, err := Build(context.Background(), "../..", "./kernel/examples/blsverify")
	if err != nil {
		t.Fatal(err)
	}
	goBodies, err := BuildWith(context.Background(), "../..", "./kernel/examples/blsverify", Options{GoBodies: true})
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range intrinsics {
		if body := in.body(); !bytes.Contains(k, body) || bytes.Contains(goBodies, body) {
			t.Fatalf("intrinsic %s: in the linked kernel %v, in the Go-bodies one %v", name, bytes.Contains(k, body), bytes.Contains(goBodies, body))
		}
	}
	sk, err := crypto.GenerateBLSKey(mrand.New(mrand.NewSource(1)))
	if err != nil {
		t.Fatal(err)
	}
	pk, msg := sk.PublicKey(), []byte("dsn/vote/v1 header digest")
	sig := sk.Sign(msg)
	good := append(append(append([]byte{}, pk[:]...), sig[:]...), msg...)
	bad := append(append(append([]byte{}, pk[:]...), sig[:]...), []byte("another message")...)
	// The batch form: three keys, three messages, one multi-pairing; then
	// the same batch with one message changed, and one cut short.
	batch := []byte{0x00, 3}
	for i := range 3 {
		sk, err := crypto.GenerateBLSKey(mrand.New(mrand.NewSource(int64(20 + i))))
		if err != nil {
			t.Fatal(err)
		}
		m := bytes.Repeat([]byte{byte(i)}, 32)
		pk, sig := sk.PublicKey(), sk.Sign(m)
		batch = append(append(append(batch, pk[:]...), sig[:]...), m...)
	}
	tampered := bytes.Clone(batch)
	tampered[len(tampered)-1] ^= 1
	ctx := context.Background()
	var states []string
	for _, k := range [][]byte{k, goBodies} {
		if err := pvm.Validate(k); err != nil {
			t.Fatal(err)
		}
		p, _ := pvm.New(ctx, pvm.DefaultConfig(), nil)
		defer p.Close(ctx)
		p.InstallKernel(k)
		start := time.Now()
		res, err := p.RunLevel(ctx, 1, 0, [32]byte{}, [][]byte{pvm.External(good), pvm.External(bad),
			pvm.External(batch), pvm.External(tampered), pvm.External(batch[:len(batch)-1])})
		if err != nil || res.Stuck != "" {
			t.Fatalf("%v %s %s", err, res.Stuck, res.Debug)
		}
		t.Logf("kernel_run with 2 BLS verifications and 2 batches of 3: %s, %d ticks (wasm %d bytes)", time.Since(start), res.Ticks, len(k))
		for id, want := range map[int]string{2: "ok", 3: "invalid signature", 4: "ok", 5: "invalid signature", 6: "malformed batch"} {
			v, _ := p.Durable().Get(fmt.Sprintf("/verdict/1-%d", id))
			if want == "ok" && string(v) != "ok" || !strings.Contains(string(v), want) {
				t.Fatalf("message %d: verdict %q, want %q", id, v, want)
			}
		}
		var state strings.Builder
		p.Durable().Walk("/verdict", func(path string, v []byte) { fmt.Fprintf(&state, "%s=%q\n", path, v) })
		states = append(states, state.String())
	}
	if states[0] != states[1] || !strings.Contains(states[0], "/verdict/") {
		t.Fatalf("durable state with intrinsics:\n%s\nwithout:\n%s", states[0], states[1])
	}
}

// signedCertificate returns a 7-authority committee's encoding and a
// round-1 certificate signed by five of them.
func signedCertificate(t testing.TB) (committee []byte, cert *narwhal.Certificate) {
	t.Helper()
	rng := mrand.New(mrand.NewSource(2))
	c := &narwhal.Committee{}
	var keys []*dsncrypto.SecretKey
	for i := range 7 {
		sk, err := dsncrypto.GenerateKey(rng)
		if err != nil {
			t.Fatal(err)
		}
		nk, err := dsncrypto.GenerateKey(rng)
		if err != nil {
			t.Fatal(err)
		}
		a := narwhal.Authority{Name: fmt.Sprint("n", i), Stake: 1, ConsensusKey: sk.PublicKey(), Address: "h:1"}
		a.NetworkKey = nk.PublicKey()
		c.Authorities = append(c.Authorities, a)
		keys = append(keys, sk)
	}
	var parents []narwhal.Digest
	for _, g := range narwhal.Genesis(c) {
		parents = append(parents, g.Digest())
	}
	h := narwhal.Header{Author: 2, Round: 1, CreatedAt: 1, Parents: narwhal.SortDigests(parents)}
	cert = &narwhal.Certificate{Header: h}
	for _, s := range []narwhal.AuthorityID{0, 1, 2, 4, 6} {
		cert.Signers = append(cert.Signers, s)
		cert.Signatures = append(cert.Signatures, keys[s].Sign(narwhal.VoteMessage(h.Digest())))
	}
	return c.Encode(), cert
}

func TestCertificateVerificationInsideThePVM(t *testing.T) {
	k, err := Build(context.Background(), "../..", "./kernel/examples/certverify")
	if err != nil {
		t.Fatal(err)
	}
	if err := pvm.Validate(k); err != nil {
		t.Fatal(err)
	}
	committee, cert := signedCertificate(t)
	forged := *cert
	forged.Signatures = append([]dsncrypto.Signature(nil), cert.Signatures...)
	forged.Signatures[3][0] ^= 1
	ctx := context.Background()
	p, _ := pvm.New(ctx, pvm.DefaultConfig(), nil)
	defer p.Close(ctx)
	p.InstallKernel(k)
	start := time.Now()
	res, err := p.RunLevel(ctx, 1, 0, [32]byte{}, [][]byte{pvm.External(committee), pvm.External(cert.Encode()), pvm.External(forged.Encode())})
	if err != nil || res.Stuck != "" {
		t.Fatalf("%v %s %s", err, res.Stuck, res.Debug)
	}
	t.Logf("kernel_run verifying 2 certificates of 5 ed25519 signatures: %s (wasm %d bytes)", time.Since(start), len(k))
	for id, want := range map[int]string{2: "ok", 3: "ok", 4: "invalid signature"} {
		if v, _ := p.Durable().Get(fmt.Sprintf("/verdict/1-%d", id)); !strings.Contains(string(v), want) {
			t.Fatalf("message %d: %q, want %q", id, v, want)
		}
	}
}

// With KeepNames the linked kernel carries its functions' names,
// renumbered: the PVM still accepts it, and the names of the kernel's own
// code, of the runtime and of the linker's helpers sit at indices of the
// linked module's functions.
func TestLinkKeepsFunctionNames(t *testing.T) {
	k, err := BuildWith(context.Background(), "../..", "./kernel/examples/echo", Options{KeepNames: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := pvm.Validate(k); err != nil {
		t.Fatalf("pvm.Validate: %v", err)
	}
	secs, err := parseSections(k)
	if err != nil {
		t.Fatal(err)
	}
	var names map[uint32]string
	var nFuncs, nImports uint64
	entry := int64(-1)
	for _, s := range secs {
		r := wasmbin.NewReader(s.body, ErrUnsupported)
		switch s.id {
		case 7:
			for n := r.ULEB(32); n > 0 && r.Err == nil; n-- {
				name, kind, idx := r.Name(), r.Byte(), r.ULEB(32)
				if name == "kernel_run" && kind == 0 {
					entry = int64(idx)
				}
			}
		case 0:
			if r.Name() == "name" {
				names = functionNames(r.B[r.Off:])
			}
		case 2:
			nImports = r.ULEB(32)
		case 3:
			nFuncs = r.ULEB(32)
		}
	}
	byName := map[string]uint32{}
	for i, n := range names {
		if uint64(i) >= nImports+nFuncs {
			t.Fatalf("name %q at index %d, past the %d functions", n, i, nImports+nFuncs)
		}
		byName[n] = i
	}
	for _, want := range []string{"main.kernelRun", "runtime.mallocgc", "dsn.memmove", "dsn.kernel_run"} {
		if _, ok := byName[want]; !ok {
			t.Errorf("no function named %q among %d names", want, len(names))
		}
	}
	if int64(byName["dsn.kernel_run"]) != entry {
		t.Fatalf("kernel_run is function %d, the name says %d", entry, byName["dsn.kernel_run"])
	}
	if plain := echoKernel(t); len(k) <= len(plain) {
		t.Fatalf("with names %d bytes, without %d", len(k), len(plain))
	}
	t.Logf("%d function names, %d bytes (%d without)", len(names), len(k), len(echoKernel(t)))
}
