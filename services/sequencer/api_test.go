package sequencer

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestLimiterRefillsAtItsRate(t *testing.T) {
	l := newLimiter(2, 3)
	now := time.Unix(1000, 0)
	for i := range 3 {
		if !l.allow("a", now) {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	if l.allow("a", now) {
		t.Fatal("a fourth request in the same instant allowed")
	}
	if !l.allow("b", now) {
		t.Fatal("another client shares the first one's bucket")
	}
	if !l.allow("a", now.Add(500*time.Millisecond)) || l.allow("a", now.Add(500*time.Millisecond)) {
		t.Fatal("half a second at 2/s should give exactly one more request")
	}
}

// Past its burst a client gets 429 with Retry-After; /health is never
// limited.
func TestTooManyRequests(t *testing.T) {
	cfg := DefaultConfig([]Endpoint{{Transactions: "127.0.0.1:1", Export: "127.0.0.1:1"}})
	cfg.RateLimit, cfg.RateBurst = 1, 3
	s, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	codes := []int{}
	for range 5 {
		resp, err := http.Get(srv.URL + "/v1/transactions/00")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
	}
	want := []int{400, 400, 400, 429, 429}
	for i := range want {
		if codes[i] != want[i] {
			t.Fatalf("codes %v, want %v", codes, want)
		}
	}
	if resp, err := http.Get(srv.URL + "/health"); err != nil || resp.StatusCode == http.StatusTooManyRequests {
		t.Fatalf("/health limited: %v %v", resp.StatusCode, err)
	}
	// Without a rollup, the rollup-backed calls say so.
	if resp, _ := http.Get(srv.URL + "/v1/head"); resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("/v1/head without a rollup: %d", resp.StatusCode)
	}
}
