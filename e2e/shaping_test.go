package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/config"
	"github.com/tezos-dsn/dsn/internal/dsnclient"
	"github.com/tezos-dsn/dsn/internal/load"
	"github.com/tezos-dsn/dsn/lab"
)

// TestSlowLossyLinks: two of the 7 nodes send every message late (100 ms
// ± 20 ms) and lose 5 % of them. The committee goes on ordering,
// transactions through the sequencer reach "verified", every node exports
// the same pre-blocks, and the kernel's blocks equal them.
func TestSlowLossyLinks(t *testing.T) {
	shape := func(n int) lab.Shape {
		return lab.Shape{Node: n, Delay: config.Duration{Duration: 100 * time.Millisecond},
			Jitter: config.Duration{Duration: 20 * time.Millisecond}, Loss: 0.05}
	}
	l := startLab(t, 7, shape(6), shape(7))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l.WaitCommitting(ctx)

	seq := "http://" + l.addr(0, lab.SequencerPort)
	type sent struct {
		id string
		at time.Time
	}
	var txs []sent
	all := map[string]bool{}
	for i := range 40 {
		tx := fmt.Appendf(nil, "over slow links %02d", i)
		at := time.Now()
		resp, err := http.Post(seq+"/v1/transactions", "application/octet-stream", bytes.NewReader(tx))
		if err != nil {
			t.Fatal(err)
		}
		var st struct{ ID string }
		json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("sequencer: %s", resp.Status)
		}
		txs = append(txs, sent{st.ID, at})
		all[string(tx)] = true
		time.Sleep(25 * time.Millisecond)
	}
	var ordered, verified []time.Duration
	waitFor(t, 2*time.Minute, "every transaction verified", func() bool {
		ordered, verified = ordered[:0], verified[:0]
		for _, s := range txs {
			resp, err := http.Get(seq + "/v1/transactions/" + s.id)
			if err != nil {
				return false
			}
			var st struct {
				Status     string `json:"status"`
				OrderedAt  string `json:"ordered_at"`
				VerifiedAt string `json:"verified_at"`
			}
			json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if st.Status != "verified" {
				return false
			}
			o, _ := time.Parse(time.RFC3339Nano, st.OrderedAt)
			v, _ := time.Parse(time.RFC3339Nano, st.VerifiedAt)
			ordered, verified = append(ordered, o.Sub(s.at)), append(verified, v.Sub(s.at))
		}
		return true
	})
	o, v := load.Summarize(slices.Clone(ordered)), load.Summarize(slices.Clone(verified))
	// Every node exports the same pre-blocks, each transaction once.
	var ref []*dsnv1.PreBlock
	for n := 1; n <= 7; n++ {
		want := len(all)
		pbs, err := dsnclient.ReadExport(ctx, l.Export(n), 0, func(pb *dsnv1.PreBlock) bool {
			got, _ := dsnclient.Transactions([]*dsnv1.PreBlock{pb})
			for tx := range got {
				if all[tx] {
					want--
				}
			}
			return want <= 0
		})
		if err != nil {
			t.Fatalf("node %d: %v", n, err)
		}
		got, _ := dsnclient.Transactions(pbs)
		for tx := range all {
			if got[tx] != 1 {
				t.Fatalf("node %d ordered %q %d times", n, tx, got[tx])
			}
		}
		if ref == nil {
			ref = pbs
		} else if err := dsnclient.SamePrefix(ref, pbs); err != nil {
			t.Fatalf("node %d vs node 1: %v", n, err)
		}
	}
	blocks := l.KernelAgrees(ref)
	t.Logf("nodes 6 and 7 at 100±20 ms and 5 %% loss: submit→ordered p50 %s p99 %s, submit→verified p50 %s p99 %s; %d pre-blocks identical on all 7 and in the kernel",
		o.P50.Round(time.Millisecond), o.P99.Round(time.Millisecond), v.P50.Round(time.Millisecond), v.P99.Round(time.Millisecond), blocks)
}
