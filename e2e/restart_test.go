package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/crypto/mtls"
	"github.com/tezos-dsn/dsn/internal/da"
	"github.com/tezos-dsn/dsn/internal/dsnclient"
	"github.com/tezos-dsn/dsn/internal/tezos"
	"github.com/tezos-dsn/dsn/lab"
)

// TestRestartAllAndBadInput: garbage at every door (bad transactions,
// oversize messages, a TLS client with a key outside the committee on the
// peer port, malformed calls to the sequencer and the rollup node, garbage
// inbox messages for the kernel) changes nothing; then all 10 containers
// are stopped and started again from their volumes, every acknowledged
// transaction is ordered exactly once, identically on every node, and the
// kernel's blocks equal the nodes' pre-blocks.
func TestRestartAllAndBadInput(t *testing.T) {
	l := startLab(t, 7)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l.WaitCommitting(ctx)

	// Bad input: clear errors, nothing ordered, the node goes on.
	tx := l.Transactions(1)
	for _, c := range []struct {
		tx   []byte
		code codes.Code
	}{{nil, codes.InvalidArgument}, {make([]byte, 256<<10+10), codes.InvalidArgument}, {make([]byte, 2<<20), codes.ResourceExhausted}} {
		_, err := tx.SubmitTransaction(ctx, &dsnv1.Transaction{Transaction: c.tx})
		if status.Code(err) != c.code {
			t.Errorf("a %d-byte transaction: %v, want %s", len(c.tx), err, c.code)
		}
	}
	// A stranger on the peer port: a TLS client whose key is not in the
	// committee is refused and counted, and nothing else happens.
	before, err := l.Metrics(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	_, stranger, _ := ed25519.GenerateKey(nil)
	cert, err := mtls.NewCertificate(stranger)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", l.addr(2, lab.P2PPort),
		&tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	if err == nil {
		// TLS 1.3: the server's verdict on the client certificate arrives
		// with the first read.
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatal("a key outside the committee completed a handshake on the peer port")
	}
	waitFor(t, 10*time.Second, "the rejected handshake to be counted", func() bool {
		after, err := l.Metrics(ctx, 2)
		return err == nil && after["dsn_handshakes_rejected_total"] > before["dsn_handshakes_rejected_total"]
	})

	// Malformed calls to the sequencer and the rollup node: 4xx with a
	// message.
	seq := "http://" + l.addr(0, lab.SequencerPort)
	rollup := "http://" + l.Addr("rollup-node", lab.RollupPort)
	for _, c := range []struct{ url, body string }{
		{seq + "/v1/transactions", `{"data":"zz"}`},
		{seq + "/broadcast", `not json`},
		{rollup + "/local/batcher/injection?drop_duplicate=false", `{`},
		{rollup + "/local/batcher/injection?drop_duplicate=false", `["` + strings.Repeat("00", 4096) + `"]`},
	} {
		resp, err := http.Post(c.url, "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.StatusCode >= 500 || len(b) == 0 {
			t.Errorf("POST %s %.20q: %s %s, want a 4xx with a message", c.url, c.body, resp.Status, b)
		}
	}
	// Garbage inbox messages through the rollup node's batcher: targeted
	// at the rollup (random bytes, a truncated chunk header), for another
	// rollup, and untargeted. The kernel skips them (its blocks are
	// checked against the nodes' pre-blocks at the end).
	addr, err := tezos.ParseRollup(l.m.RollupAddress())
	if err != nil {
		t.Fatal(err)
	}
	var garbage []string
	for _, m := range [][]byte{
		da.Target(addr, bytes.Repeat([]byte{0xd1, 0xff}, 200)), da.Target(addr, []byte{0xd1, 0x00}),
		da.Target([20]byte{1}, []byte("another rollup")), []byte("untargeted"),
	} {
		garbage = append(garbage, hex.EncodeToString(m))
	}
	raw, _ := json.Marshal(garbage)
	if resp, err := http.Post(rollup+"/local/batcher/injection?drop_duplicate=false", "application/json", bytes.NewReader(raw)); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("injecting garbage inbox messages: %v %v", err, resp.Status)
	}

	txs := make([][]byte, 300)
	for i := range txs {
		txs[i] = []byte(fmt.Sprintf("restart-tx-%04d", i))
	}
	acked, err := dsnclient.SubmitAll(ctx, []dsnv1.TransactionsClient{l.Transactions(1), l.Transactions(4)}, 2, txs)
	if err != nil || acked != uint64(len(txs)) {
		t.Fatalf("acknowledged %d of %d: %v", acked, len(txs), err)
	}

	// Everything stops at once and starts again from its volume.
	l.StopAll()
	l.StartAll()
	var ref []*dsnv1.PreBlock
	for n := 1; n <= 7; n++ {
		want := map[string]bool{}
		for _, tx := range txs {
			want[string(tx)] = true
		}
		pbs, err := dsnclient.ReadExport(ctx, l.Export(n), 0, func(pb *dsnv1.PreBlock) bool {
			got, _ := dsnclient.Transactions([]*dsnv1.PreBlock{pb})
			for tx := range got {
				delete(want, tx)
			}
			return len(want) == 0
		})
		if err != nil {
			t.Fatalf("node %d after the restart: %v", n, err)
		}
		got, err := dsnclient.Transactions(pbs)
		if err != nil {
			t.Fatal(err)
		}
		for _, tx := range txs {
			if got[string(tx)] != 1 {
				t.Fatalf("node %d ordered %q %d times", n, tx, got[string(tx)])
			}
		}
		if ref == nil {
			ref = pbs
		}
		if err := dsnclient.SamePrefix(ref, pbs); err != nil {
			t.Fatalf("node %d vs node 1 after the restart: %v", n, err)
		}
	}
	blocks := l.KernelAgrees(ref)
	t.Logf("all 10 containers restarted from their volumes: %d acknowledged transactions each ordered once, identically on every node; the kernel's %d blocks equal the pre-blocks", len(txs), blocks)
}
