package sim

import (
	"errors"
	"fmt"

	"github.com/tezos-dsn/dsn/internal/narwhal"
	"github.com/tezos-dsn/dsn/internal/replica"
	"github.com/tezos-dsn/dsn/internal/store"
)

func storeCertKey(r uint64, a int) []byte { return store.CertificateKey(r, uint16(a)) }

// batch finds a batch in any node's store.
func (s *Sim) batch(d narwhal.Digest) *narwhal.Batch {
	for _, n := range s.nodes {
		if raw, ok := n.st.Get(store.BatchKey(d)); ok {
			b, err := narwhal.DecodeBatch(raw)
			if err != nil {
				panic(err)
			}
			return b
		}
	}
	return nil
}

// exportGraceMs is how long after a commit a node may still be fetching
// its batches when the run ends (several fetch retries).
const exportGraceMs = 1000

// check runs every checker and returns the first failure.
func (s *Sim) check() error {
	if s.lostVouched != "" {
		return fmt.Errorf("vouched batches are durable: %s", s.lostVouched)
	}
	if s.doubleVote != "" {
		return fmt.Errorf("never sign twice: %s", s.doubleVote)
	}
	var honest []int
	for i := range s.nodes {
		if s.honest(i) {
			honest = append(honest, i)
		}
	}
	var longest []*replica.CommittedSubDAG
	for _, i := range honest {
		n := s.nodes[i]
		for k, sd := range n.subdags {
			if sd.Index != uint64(k+1) {
				return fmt.Errorf("gapless: node %d has sub-DAG %d at position %d", i, sd.Index, k+1)
			}
		}
		if len(n.subdags) > len(longest) {
			longest = n.subdags
		}
	}
	// Agreement: every honest sequence is a prefix of the longest.
	for _, i := range honest {
		for k, sd := range s.nodes[i].subdags {
			ref := longest[k]
			if sd.Leader.Digest() != ref.Leader.Digest() || len(sd.Certificates) != len(ref.Certificates) {
				return fmt.Errorf("agreement: node %d differs at sub-DAG %d", i, k+1)
			}
			for j := range sd.Certificates {
				if sd.Certificates[j].Digest() != ref.Certificates[j].Digest() {
					return fmt.Errorf("agreement: node %d differs inside sub-DAG %d", i, k+1)
				}
			}
		}
	}
	s.stats.Committed = uint64(len(longest))
	if s.opts.Rollback {
		// A store that lost its last writes makes its node forget batches
		// it sealed, acknowledged or proposed: they can be ordered twice or
		// never (issue 15: acknowledgement semantics). What must hold even
		// then is safety: no node signs twice (checked above) and no fork.
		return nil
	}
	// No certificate twice, causal completeness, no transaction twice.
	committedIn := map[narwhal.Digest]uint64{}
	watermark := make([]uint64, len(s.nodes))
	ordered := map[string]int{}
	for _, sd := range longest {
		for _, c := range sd.Certificates {
			d := c.Digest()
			if prev, dup := committedIn[d]; dup {
				return fmt.Errorf("no duplicates: certificate %s in sub-DAGs %d and %d", d.Short(), prev, sd.Index)
			}
			committedIn[d] = sd.Index
		}
		var horizon uint64
		if sd.Leader.Round() > s.cfg.GCDepth {
			horizon = sd.Leader.Round() - s.cfg.GCDepth
		}
		for _, c := range sd.Certificates {
			if c.Round() <= horizon+1 {
				continue // parents at or below the horizon may be gone
			}
			for _, p := range c.Header.Parents {
				if _, ok := committedIn[p]; ok {
					continue
				}
				pc := s.findCertificate(p)
				if pc == nil {
					return fmt.Errorf("causality: parent %s of a committed certificate is unknown", p.Short())
				}
				if watermark[pc.Author()] >= pc.Round() {
					continue // skipped by the watermark rule
				}
				return fmt.Errorf("causality: sub-DAG %d commits %d/%d without its parent %d/%d", sd.Index, c.Author(), c.Round(), pc.Author(), pc.Round())
			}
		}
		for _, c := range sd.Certificates {
			watermark[c.Author()] = max(watermark[c.Author()], c.Round())
			for _, bd := range c.Header.Payload {
				b := s.batch(bd)
				if b == nil {
					return fmt.Errorf("availability: committed batch %s is stored nowhere", bd.Short())
				}
				for _, tx := range b.Transactions {
					ordered[string(tx)]++
				}
			}
		}
	}
	for tx, n := range ordered {
		if n > 1 {
			return fmt.Errorf("no duplicates: transaction %q ordered %d times", tx, n)
		}
	}
	s.stats.Ordered = len(ordered)
	s.stats.Acked = len(s.acked)
	// No loss: every acknowledged transaction is ordered.
	for tx := range s.acked {
		if ordered[tx] == 0 {
			return fmt.Errorf("no loss: acknowledged transaction %q not ordered", tx)
		}
	}
	// Every honest node caught up with the ordered transactions.
	for _, i := range honest {
		if len(s.nodes[i].subdags) < len(longest)*3/4 {
			return fmt.Errorf("liveness: node %d committed %d sub-DAGs, the most advanced %d", i, len(s.nodes[i].subdags), len(longest))
		}
	}
	// Export completeness: an honest node stores every batch of every
	// sub-DAG it committed (its Export serves them), allowing in-flight
	// fetches a grace period at the end of the run.
	for _, i := range honest {
		n := s.nodes[i]
		for _, sd := range n.subdags {
			if n.commitAt[sd.Index]+exportGraceMs > s.now {
				continue
			}
			for _, c := range sd.Certificates {
				for _, bd := range c.Header.Payload {
					if _, ok := n.st.Get(store.BatchKey(bd)); !ok {
						return fmt.Errorf("export: node %d lacks batch %s of sub-DAG %d (certificate %d/%d), committed at %d ms",
							i, bd.Short(), sd.Index, c.Author(), c.Round(), n.commitAt[sd.Index])
					}
				}
			}
		}
	}
	// One certificate per author and round, across every store.
	seen := map[[2]uint64]narwhal.Digest{}
	for i, n := range s.nodes {
		var err error
		n.st.Scan([]byte{store.PrefixCertificate}, store.PrefixEnd([]byte{store.PrefixCertificate}), func(_, v []byte) bool {
			c, derr := narwhal.DecodeCertificate(v)
			if derr != nil {
				err = derr
				return false
			}
			k := [2]uint64{uint64(c.Author()), c.Round()}
			if d, ok := seen[k]; ok && d != c.Digest() {
				err = fmt.Errorf("equivocation: two certificates of %d in round %d (node %d)", c.Author(), c.Round(), i)
				return false
			}
			seen[k] = c.Digest()
			return true
		})
		if err != nil {
			return err
		}
	}
	// Liveness: commits resumed after the last fault healed.
	if s.stats.CommitsAfterHeal == 0 && len(honest) > 0 {
		return errors.New("liveness: no commit after the faults healed")
	}
	return nil
}

func (s *Sim) findCertificate(d narwhal.Digest) *narwhal.Certificate {
	for _, n := range s.nodes {
		if raw, ok := store.CertificateByDigest(n.st, d); ok {
			if c, err := narwhal.DecodeCertificate(raw); err == nil {
				return c
			}
		}
	}
	return nil
}
