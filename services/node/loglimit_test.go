package node

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// A flood of warnings about one peer becomes one line per interval, and the
// next line counts what was dropped; another peer is not silenced by it.
func TestLogLimiterPerPeer(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	dropped := 0
	l := newLogLimiter(logEvery, func() { dropped++ })
	for range 20_000 {
		l.log(log, slog.LevelWarn, "node-1", "undecodable message", "peer", "node-1")
	}
	l.log(log, slog.LevelWarn, "node-2", "undecodable message", "peer", "node-2")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || dropped != 19_999 {
		t.Fatalf("%d lines, %d dropped; want 2 lines (one per peer) and 19999 dropped:\n%s", len(lines), dropped, buf.String())
	}
	l.keys["node-1"].last = l.keys["node-1"].last.Add(-logEvery) // the interval passes
	l.log(log, slog.LevelWarn, "node-1", "undecodable message", "peer", "node-1")
	if !strings.Contains(buf.String(), "suppressed_since_last=19999") {
		t.Fatalf("the next line does not count the dropped ones:\n%s", buf.String())
	}
}
