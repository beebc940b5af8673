package bullshark

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tezos-dsn/dsn/internal/narwhal"
)

// scenario builds a DAG over 4 authorities (f=1: quorum 3, validity 2) from
// a compact script: one line per round, one "author:parents" item per
// certificate, parents naming authors of the previous round ("*" = all).
// Round 1 always builds on genesis. It feeds the certificates in script
// order and returns the commits as text: "#index L=author/round [a/r ...]".
// Within a round the order is the depth-first walk's (parents by ascending
// digest), so the goldens pin the exact linearization the kernel must match.
func scenario(t *testing.T, gcDepth uint64, script string) string {
	t.Helper()
	c := committee(4)
	b := New(c, gcDepth)
	prev := map[int]*narwhal.Certificate{}
	for i, g := range narwhal.Genesis(c) {
		prev[i] = g
	}
	var out []string
	for r, line := range strings.Split(strings.TrimSpace(script), "\n") {
		round := uint64(r + 1)
		cur := map[int]*narwhal.Certificate{}
		for _, item := range strings.Fields(line) {
			var a int
			var ps string
			if _, err := fmt.Sscanf(strings.Replace(item, ":", " ", 1), "%d %s", &a, &ps); err != nil {
				t.Fatalf("bad item %q: %v", item, err)
			}
			var parents []narwhal.Digest
			for p, pc := range prev {
				if ps == "*" || strings.ContainsRune(ps, rune('0'+p)) {
					parents = append(parents, pc.Digest())
				}
			}
			x := &narwhal.Certificate{Header: narwhal.Header{Author: narwhal.AuthorityID(a), Round: round, CreatedAt: round, Parents: narwhal.SortDigests(parents)}}
			cur[a] = x
			subs, err := b.ProcessCertificate(x)
			if err != nil {
				t.Fatalf("round %d author %d: %v", round, a, err)
			}
			for _, s := range subs {
				var ids []string
				for _, y := range s.Certificates {
					ids = append(ids, fmt.Sprintf("%d/%d", y.Author(), y.Round()))
				}
				out = append(out, fmt.Sprintf("#%d L=%d/%d support=%d [%s]", s.Index, s.Leader.Author(), s.Leader.Round(), len(s.Support), strings.Join(ids, " ")))
			}
		}
		prev = cur
	}
	return strings.Join(out, "\n")
}

func TestScenarios(t *testing.T) {
	// Leaders: round 2 → authority 1, round 4 → 2, round 6 → 3, round 8 → 0.
	cases := []struct {
		name    string
		gcDepth uint64
		script  string
		want    string
	}{{
		name:    "direct commit",
		gcDepth: 50,
		script: `
0:* 1:* 2:* 3:*
0:* 1:* 2:* 3:*
0:* 1:* 2:*`,
		want: "#1 L=1/2 support=2 [0/1 3/1 2/1 1/1 1/2]",
	}, {
		name:    "indirect commit of an earlier leader",
		gcDepth: 50,
		script: `
0:* 1:* 2:* 3:*
0:* 1:* 2:* 3:*
0:1 1:023 2:023 3:023
0:* 1:* 2:* 3:*
0:* 1:* 2:*`,
		want: "#1 L=1/2 support=0 [0/1 3/1 2/1 1/1 1/2]\n#2 L=2/4 support=2 [2/2 0/2 3/2 1/3 2/3 0/3 3/3 2/4]",
	}, {
		name:    "skipped leader: absent",
		gcDepth: 50,
		script: `
0:* 1:* 2:* 3:*
0:* 2:* 3:*
0:* 1:* 2:* 3:*
0:* 1:* 2:* 3:*
0:* 1:* 2:*`,
		want: "#1 L=2/4 support=2 [0/1 3/1 2/1 1/1 2/2 0/2 3/2 1/3 2/3 0/3 3/3 2/4]",
	}, {
		name:    "skipped leader: unsupported and unlinked",
		gcDepth: 50,
		script: `
0:* 1:* 2:* 3:*
0:* 1:* 2:* 3:*
0:023 1:023 2:023 3:1
0:012 1:012 2:012 3:*
0:* 1:* 2:*`,
		want: "#1 L=2/4 support=2 [0/1 3/1 2/1 1/1 2/2 0/2 3/2 1/3 2/3 0/3 2/4]",
	}, {
		name:    "GC horizon cuts the sub-DAG",
		gcDepth: 2,
		script: `
0:* 1:* 2:* 3:*
0:* 2:* 3:*
0:* 1:* 2:* 3:*
0:* 1:* 2:* 3:*
0:* 1:* 2:*`,
		want: "#1 L=2/4 support=2 [1/3 2/3 0/3 3/3 2/4]",
	}, {
		name:    "successive direct commits exclude what is committed",
		gcDepth: 50,
		script: `
0:* 1:* 2:* 3:*
0:* 1:* 2:* 3:*
0:* 1:* 2:* 3:*
0:* 1:* 2:* 3:*
0:* 1:* 2:* 3:*
0:* 1:* 2:* 3:*
0:* 1:* 2:*`,
		want: "#1 L=1/2 support=2 [0/1 3/1 2/1 1/1 1/2]\n" +
			"#2 L=2/4 support=2 [2/2 0/2 3/2 1/3 0/3 2/3 3/3 2/4]\n" +
			"#3 L=3/6 support=2 [1/4 3/4 0/4 2/5 0/5 1/5 3/5 3/6]",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := scenario(t, tc.gcDepth, tc.script)
			if got != tc.want {
				t.Fatalf("commits:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}
