package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/crypto/mtls"
	"github.com/tezos-dsn/dsn/internal/dsnclient"
	"github.com/tezos-dsn/dsn/lab"
)

// TestRestartAllAndBadInput: garbage at every door of a node (bad
// transactions, oversize messages, a TLS client with a key outside the
// committee on the peer port) changes nothing; then all 7 containers are
// stopped and started again from their volumes, and every acknowledged
// transaction is ordered exactly once, identically on every node.
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

	txs := make([][]byte, 300)
	for i := range txs {
		txs[i] = []byte(fmt.Sprintf("restart-tx-%04d", i))
	}
	acked, err := dsnclient.SubmitAll(ctx, []dsnv1.TransactionsClient{l.Transactions(1), l.Transactions(4)}, 2, txs)
	if err != nil || acked != uint64(len(txs)) {
		t.Fatalf("acknowledged %d of %d: %v", acked, len(txs), err)
	}

	// Everything stops at once and starts again from its volume.
	if out, err := l.compose("stop", "-t", "2"); err != nil {
		t.Fatalf("stop: %v\n%s", err, out)
	}
	if out, err := l.compose("start"); err != nil {
		t.Fatalf("start: %v\n%s", err, out)
	}
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
	t.Logf("all 7 restarted from their volumes: %d acknowledged transactions each ordered once, identically on every node", len(txs))
}
