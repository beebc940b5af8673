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
	// Anchor candidates: round r → authority r mod 4 (1, 2, 3, 0, 1, 2, …).
	// The first instance's anchors are of rounds 1, 3, 5, …; each ordered
	// anchor of round R starts an instance with anchors R+1, R+3, ….
	cases := []struct {
		name    string
		gcDepth uint64
		script  string
		want    string
	}{{
		name:    "direct commit, then the next instance's anchor at once",
		gcDepth: 50,
		script: `
0:* 1:* 2:* 3:*
0:* 1:* 2:* 3:*
0:* 1:* 2:*`,
		want: "#1 L=1/1 support=2 [1/1]\n" +
			"#2 L=2/2 support=2 [0/1 3/1 2/1 2/2]",
	}, {
		name:    "indirect commit of an earlier anchor, then the instances above it",
		gcDepth: 50,
		script: `
0:* 1:* 2:* 3:*
0:023 1:* 2:023 3:023
0:* 1:* 2:* 3:*
0:* 1:* 2:*`,
		want: "#1 L=1/1 support=0 [1/1]\n" +
			"#2 L=2/2 support=4 [0/1 3/1 2/1 2/2]\n" +
			"#3 L=3/3 support=2 [3/2 1/2 0/2 3/3]",
	}, {
		name:    "skipped anchor: absent; round 2's candidate is no anchor of that instance",
		gcDepth: 50,
		script: `
0:* 2:* 3:*
0:* 1:* 2:* 3:*
0:* 1:* 2:* 3:*
0:* 1:* 2:*`,
		want: "#1 L=3/3 support=2 [0/1 3/1 2/1 3/2 0/2 2/2 1/2 3/3]",
	}, {
		name:    "skipped anchor: unsupported and unlinked",
		gcDepth: 50,
		script: `
0:* 1:* 2:* 3:*
0:023 1:023 2:023 3:1
0:012 1:012 2:012 3:012
0:* 1:* 2:*`,
		want: "#1 L=3/3 support=2 [0/1 3/1 2/1 0/2 2/2 1/2 3/3]",
	}, {
		name:    "GC horizon cuts the sub-DAG",
		gcDepth: 2,
		script: `
0:* 2:* 3:*
0:* 1:* 2:* 3:*
0:* 1:* 2:* 3:*
0:* 1:* 2:*`,
		want: "#1 L=3/3 support=2 [3/2 0/2 2/2 1/2 3/3]",
	}, {
		name:    "successive direct commits exclude what is committed",
		gcDepth: 50,
		script: `
0:* 1:* 2:* 3:*
0:* 1:* 2:* 3:*
0:* 1:* 2:* 3:*
0:* 1:* 2:* 3:*
0:* 1:* 2:* 3:*
0:* 1:* 2:*`,
		want: "#1 L=1/1 support=2 [1/1]\n" +
			"#2 L=2/2 support=2 [0/1 3/1 2/1 2/2]\n" +
			"#3 L=3/3 support=2 [1/2 0/2 3/2 3/3]\n" +
			"#4 L=0/4 support=2 [1/3 0/3 2/3 0/4]\n" +
			"#5 L=1/5 support=2 [1/4 2/4 3/4 1/5]",
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
