package narwhal

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"math"

	"github.com/tezos-dsn/dsn/internal/crypto"
)

// Authority is one member of the committee.
type Authority struct {
	Name         string           // operator-chosen label, unique, for logs and metrics
	Stake        uint64           // voting weight, > 0
	ConsensusKey crypto.PublicKey // ed25519: signs votes; certificates carry these signatures
	NetworkKey   [ed25519.PublicKeySize]byte
	Address      string // host:port of its node-to-node endpoint
}

// Committee is the set of authorities of one epoch. AuthorityID i is
// Authorities[i]: the order is the committee file's order.
type Committee struct {
	Epoch       uint64
	Authorities []Authority
}

// ErrUnknownAuthority reports an authority id outside the committee.
var ErrUnknownAuthority = errors.New("narwhal: unknown authority")

// Size returns the number of authorities.
func (c *Committee) Size() int { return len(c.Authorities) }

// Stake returns the stake of id, or 0 for an unknown id.
func (c *Committee) Stake(id AuthorityID) uint64 {
	if int(id) >= len(c.Authorities) {
		return 0
	}
	return c.Authorities[id].Stake
}

// TotalStake returns the sum of all stakes.
func (c *Committee) TotalStake() uint64 {
	var t uint64
	for i := range c.Authorities {
		t += c.Authorities[i].Stake
	}
	return t
}

// QuorumThreshold is the stake of 2f+1: 2T/3 + 1 (integer division). Any two
// quorums share an honest authority.
func (c *Committee) QuorumThreshold() uint64 { return 2*c.TotalStake()/3 + 1 }

// ValidityThreshold is the stake of f+1: (T+2)/3. Any validity set holds an
// honest authority.
func (c *Committee) ValidityThreshold() uint64 { return (c.TotalStake() + 2) / 3 }

// Leader returns the anchor candidate of a round: round-robin over
// authority ids by round. Every round has one (Bullshark with Shoal's
// pipelining, internal/bullshark); which rounds' candidates are anchors
// depends on the commits before them. This one function serves proposer
// timing, Bullshark, receipts and the kernel.
func (c *Committee) Leader(round uint64) AuthorityID {
	return AuthorityID(round % uint64(len(c.Authorities)))
}

// NextPeer returns the authority after a in id order, wrapping around and
// skipping self (unless self is the only one): how requests rotate through
// peers on retry.
func (c *Committee) NextPeer(a, self AuthorityID) AuthorityID {
	n := AuthorityID(len(c.Authorities))
	for {
		a = (a + 1) % n
		if a != self || n == 1 {
			return a
		}
	}
}

// StakeOf sums the stake of a set of distinct authorities.
func (c *Committee) StakeOf(ids []AuthorityID) uint64 {
	var s uint64
	for _, id := range ids {
		s += c.Stake(id)
	}
	return s
}

// Validate checks the committee's structure and keys. Errors name the
// offending field.
func (c *Committee) Validate() error {
	n := len(c.Authorities)
	if n == 0 {
		return errors.New("authorities: committee is empty")
	}
	if n > MaxCommitteeSize {
		return fmt.Errorf("authorities: %d authorities, at most %d", n, MaxCommitteeSize)
	}
	names := make(map[string]int, n)
	keys := make(map[crypto.PublicKey]int, n)
	nets := make(map[[ed25519.PublicKeySize]byte]int, n)
	var total uint64
	for i := range c.Authorities {
		a := &c.Authorities[i]
		field := fmt.Sprintf("authorities[%d]", i)
		if a.Name == "" {
			return fmt.Errorf("%s.name: empty", field)
		}
		if j, dup := names[a.Name]; dup {
			return fmt.Errorf("%s.name: %q already used by authorities[%d]", field, a.Name, j)
		}
		names[a.Name] = i
		if a.Stake == 0 {
			return fmt.Errorf("%s.stake: must be > 0", field)
		}
		if total > math.MaxUint64/4-a.Stake { // thresholds compute 2T
			return fmt.Errorf("%s.stake: total stake overflows", field)
		}
		total += a.Stake
		if j, dup := keys[a.ConsensusKey]; dup {
			return fmt.Errorf("%s.consensus_key: same key as authorities[%d]", field, j)
		}
		keys[a.ConsensusKey] = i
		if err := crypto.ValidatePublicKey(a.ConsensusKey); err != nil {
			return fmt.Errorf("%s.consensus_key: %w", field, err)
		}
		// NB: one key must not serve both roles: a TLS handshake signature
		// and a vote are different statements.
		if a.ConsensusKey == a.NetworkKey {
			return fmt.Errorf("%s.consensus_key: same key as network_key", field)
		}
		if j, dup := nets[a.NetworkKey]; dup {
			return fmt.Errorf("%s.network_key: same key as authorities[%d]", field, j)
		}
		nets[a.NetworkKey] = i
		if a.Address == "" {
			return fmt.Errorf("%s.address: empty", field)
		}
	}
	return nil
}

// ConsensusKeys returns the authorities' consensus keys in id order.
func (c *Committee) ConsensusKeys() []crypto.PublicKey {
	out := make([]crypto.PublicKey, len(c.Authorities))
	for i := range c.Authorities {
		out[i] = c.Authorities[i].ConsensusKey
	}
	return out
}

// Encode returns the canonical encoding of the committee (what the kernel is
// configured with).
func (c *Committee) Encode() []byte {
	e := &encoder{}
	e.u64(c.Epoch)
	e.count(len(c.Authorities))
	for i := range c.Authorities {
		a := &c.Authorities[i]
		e.bytes([]byte(a.Name))
		e.u64(a.Stake)
		e.raw(a.ConsensusKey[:])
		e.raw(a.NetworkKey[:])
		e.bytes([]byte(a.Address))
	}
	return e.buf
}

// DecodeCommittee decodes a canonical committee. It does not Validate.
func DecodeCommittee(buf []byte) (*Committee, error) {
	d := newDecoder(buf)
	c := &Committee{Epoch: d.u64()}
	n := d.count(MaxCommitteeSize, 8+crypto.PublicKeySize+ed25519.PublicKeySize+8, "committee authorities")
	c.Authorities = make([]Authority, n)
	for i := range c.Authorities {
		a := &c.Authorities[i]
		a.Name = string(d.bytes(256, "authority name"))
		a.Stake = d.u64()
		d.fixed(a.ConsensusKey[:])
		d.fixed(a.NetworkKey[:])
		a.Address = string(d.bytes(1024, "authority address"))
	}
	if err := d.finish("committee"); err != nil {
		return nil, err
	}
	return c, nil
}
