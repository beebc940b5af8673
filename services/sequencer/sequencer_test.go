package sequencer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
	"github.com/tezos-dsn/dsn/internal/dsnclient"
	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/services/node/nodetest"
	"github.com/tezos-dsn/dsn/services/sequencer"
)

func start(t *testing.T, cl *nodetest.Cluster) (*httptest.Server, context.CancelFunc) {
	t.Helper()
	var eps []sequencer.Endpoint
	for i := range cl.Size() {
		eps = append(eps, sequencer.Endpoint{Transactions: cl.Node(i).Addr("transactions"), Export: cl.Node(i).Addr("export")})
	}
	s, err := sequencer.New(sequencer.DefaultConfig(eps), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go s.Follow(ctx)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv, cancel
}

type reply struct {
	code int
	st   sequencer.Status
	err  string
}

func do(t *testing.T, method, url, contentType string, body []byte) reply {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{code: resp.StatusCode}
	var e struct {
		Error string `json:"error"`
	}
	json.Unmarshal(raw, &r.st)
	json.Unmarshal(raw, &e)
	r.err = e.Error
	return r
}

// Transactions in through the three request forms all reach "ordered",
// at the index and position the nodes' Export stream has them; with the
// first node stopped the sequencer fails over for submission and for
// following; a repeated submission is not ordered twice.
func TestOrderedThroughTheAPI(t *testing.T) {
	cl := nodetest.Start(t, 4)
	srv, _ := start(t, cl)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var ids []string
	var txs [][]byte
	for i := range 30 {
		tx := []byte(fmt.Sprintf("seq-tx-%03d", i))
		txs = append(txs, tx)
		var r reply
		switch i % 3 {
		case 0:
			r = do(t, "POST", srv.URL+"/v1/transactions", "application/octet-stream", tx)
		case 1:
			r = do(t, "POST", srv.URL+"/v1/transactions", "application/json", []byte(fmt.Sprintf(`{"data":"%x"}`, tx)))
		case 2:
			r = do(t, "POST", srv.URL+"/broadcast", "", []byte(fmt.Sprintf(`{"data":"0x%x"}`, tx)))
		}
		if r.code != http.StatusAccepted || r.st.Status == "" {
			t.Fatalf("tx %d: %d %+v %s", i, r.code, r.st, r.err)
		}
		ids = append(ids, r.st.ID)
	}
	// A repeated submission returns the same id and is not submitted again.
	if r := do(t, "POST", srv.URL+"/v1/transactions", "", txs[0]); r.code != http.StatusAccepted || r.st.ID != ids[0] {
		t.Fatalf("resubmission: %d %+v", r.code, r.st)
	}
	ordered := func(id string) sequencer.Status {
		var st sequencer.Status
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			if r := do(t, "GET", srv.URL+"/v1/transactions/"+id, "", nil); r.code == http.StatusOK && r.st.Status == "ordered" {
				return r.st
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("%s not ordered within a minute (%+v)", id, st)
		return st
	}
	statuses := map[string]sequencer.Status{}
	for _, id := range ids {
		statuses[id] = ordered(id)
	}
	// The index and position are where node 2's Export has the transaction.
	want := len(txs)
	pbs, err := cl.ReadExport(ctx, 2, 0, func(pb *dsnv1.PreBlock) bool {
		got, _ := dsnclient.Transactions([]*dsnv1.PreBlock{pb})
		for _, tx := range txs {
			if got[string(tx)] > 0 {
				want--
			}
		}
		return want <= 0
	})
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, pb := range pbs {
		pos := 0
		for _, cb := range pb.Batches {
			for _, raw := range cb.Batches {
				b, err := narwhal.DecodeBatch(raw)
				if err != nil {
					t.Fatal(err)
				}
				for _, tx := range b.Transactions {
					for i, want := range txs {
						if bytes.Equal(tx, want) {
							st := statuses[ids[i]]
							if st.Index == nil || st.Position == nil || *st.Index != pb.Index || *st.Position != pos {
								t.Fatalf("tx %d: API says %+v, Export has %d/%d", i, st, pb.Index, pos)
							}
							found++
						}
					}
					pos++
				}
			}
		}
	}
	if found != len(txs) {
		t.Fatalf("found %d of %d transactions in the Export stream, each once", found, len(txs))
	}

	// Node 0 stops: submissions and following fail over.
	cl.StopNode(0)
	more := []byte("after-failover")
	r := do(t, "POST", srv.URL+"/v1/transactions", "", more)
	if r.code != http.StatusAccepted {
		t.Fatalf("with node 0 down: %d %s", r.code, r.err)
	}
	ordered(r.st.ID)
}

func TestBadRequests(t *testing.T) {
	cl := nodetest.Start(t, 4)
	srv, _ := start(t, cl)
	unknown := strings.Repeat("ab", 32)
	for _, c := range []struct {
		method, path, ct string
		body             []byte
		code             int
		msg              string
	}{
		{"GET", "/v1/transactions", "", nil, http.StatusMethodNotAllowed, ""},
		{"POST", "/v1/transactions", "", nil, http.StatusBadRequest, "empty transaction"},
		{"POST", "/v1/transactions", "application/json", []byte(`{"data":`), http.StatusBadRequest, `body must be {"data": "<hex>"}`},
		{"POST", "/v1/transactions", "application/json", []byte(`{"data":"zz"}`), http.StatusBadRequest, "data: not hex"},
		{"POST", "/broadcast", "", []byte(`{}`), http.StatusBadRequest, `body must be {"data": "<hex>"}`},
		{"POST", "/v1/transactions", "", make([]byte, 256<<10+1), http.StatusRequestEntityTooLarge, "exceeds the limit"},
		{"POST", "/v1/transactions", "", make([]byte, 2<<20), http.StatusRequestEntityTooLarge, "body over"},
		{"GET", "/v1/transactions/xyz", "", nil, http.StatusBadRequest, "id: want the 64 hex digits"},
		{"GET", "/v1/transactions/" + unknown, "", nil, http.StatusNotFound, "unknown transaction"},
	} {
		r := do(t, c.method, srv.URL+c.path, c.ct, c.body)
		if r.code != c.code || !strings.Contains(r.err, c.msg) {
			t.Errorf("%s %s (%d bytes): %d %q, want %d %q", c.method, c.path, len(c.body), r.code, r.err, c.code, c.msg)
		}
	}
	// Every rejection is counted by status.
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(raw), `dsn_sequencer_requests_rejected_total{code="400"} 5`) {
		t.Errorf("metrics do not count the five 400s:\n%s", raw)
	}
	// No node reachable: 503, and the health check says so.
	for i := range cl.Size() {
		cl.StopNode(i)
	}
	if r := do(t, "POST", srv.URL+"/v1/transactions", "", []byte("nobody home")); r.code != http.StatusServiceUnavailable {
		t.Fatalf("all nodes down: %d %s", r.code, r.err)
	}
	if r := do(t, "GET", srv.URL+"/health", "", nil); r.code != http.StatusServiceUnavailable {
		t.Fatalf("health with all nodes down: %d", r.code)
	}
}
