package load

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestStampRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Unix(1_700_000_000, 123456789)
	tx := Make(rng, 512, now, 42)
	if len(tx) != 512 {
		t.Fatalf("size %d", len(tx))
	}
	if got, ok := SentAt(tx); !ok || !got.Equal(now) {
		t.Fatalf("SentAt = %v %v", got, ok)
	}
	if s, ok := Seq(tx); !ok || s != 42 {
		t.Fatalf("Seq = %d %v", s, ok)
	}
	if _, ok := SentAt([]byte("not a stamped transaction")); ok {
		t.Fatal("unstamped bytes accepted")
	}
	if len(Make(rng, 3, now, 0)) != HeaderSize {
		t.Fatal("short sizes must grow to the header")
	}
}

func TestSummarize(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	p := Summarize(ds)
	if p.P50 != 50*time.Millisecond || p.P90 != 90*time.Millisecond || p.P99 != 99*time.Millisecond || p.Max != 100*time.Millisecond || p.Count != 100 {
		t.Fatalf("%+v", p)
	}
	if (Summarize(nil) != Percentiles{}) {
		t.Fatal("empty input")
	}
}
