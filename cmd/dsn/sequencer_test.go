package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"
)

// `dsn sequencer --mock-consensus 4 --mock-rollup consensus` is a whole DSN
// in one process: transactions reach "verified" with no node, rollup node
// or L1 to run; started again on the same directory, the committee resumes
// from its stores and goes on ordering.
func TestSequencerMockConsensus(t *testing.T) {
	dir := t.TempDir()
	for run := range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- runSequencer(ctx, []string{"--listen", addr, "--mock-consensus", "4", "--mock-rollup", "consensus", "--mock-consensus-dir", dir})
		}()
		var ids []string
		deadline := time.Now().Add(30 * time.Second)
		for len(ids) < 20 {
			resp, err := http.Post("http://"+addr+"/v1/transactions", "application/octet-stream", bytes.NewReader(fmt.Appendf(nil, "run %d tx %d", run, len(ids))))
			if err != nil {
				select {
				case err := <-done:
					t.Fatalf("run %d: the sequencer stopped: %v", run, err)
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("run %d: the sequencer does not answer: %v", run, err)
				}
				time.Sleep(50 * time.Millisecond)
				continue
			}
			var st struct{ ID string }
			json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("run %d: POST: %s", run, resp.Status)
			}
			ids = append(ids, st.ID)
		}
		for _, id := range ids {
			for {
				resp, err := http.Get("http://" + addr + "/v1/transactions/" + id)
				if err != nil {
					t.Fatal(err)
				}
				var st struct{ Status string }
				json.NewDecoder(resp.Body).Decode(&st)
				resp.Body.Close()
				if st.Status == "verified" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("run %d: %s still %s", run, id, st.Status)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("run %d: the sequencer stopped with %v", run, err)
		}
	}
}

func TestSequencerMockFlagsRefuseBadValues(t *testing.T) {
	for _, args := range [][]string{
		{"--mock-consensus", "10"},
		{"--mock-rollup", "consensus"},
	} {
		if err := runSequencer(context.Background(), append(args, "--listen", "127.0.0.1:0")); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}
