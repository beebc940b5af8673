package bullshark

import (
	"encoding/binary"
	"fmt"

	"github.com/tezos-dsn/dsn/internal/narwhal"
)

// State is what a node persists atomically with each committed sub-DAG, so
// that a restart resumes the identical sequence.
type State struct {
	LastIndex      uint64   // index of the last committed sub-DAG
	LastTimestamp  uint64   // its commit timestamp
	CommittedRound uint64   // round of the last committed leader
	LastCommitted  []uint64 // per authority: highest committed round
}

// State returns a copy of the persistent state.
func (b *Bullshark) State() State {
	return State{
		LastIndex:      b.lastIndex,
		LastTimestamp:  b.lastTimestamp,
		CommittedRound: b.committedRound,
		LastCommitted:  append([]uint64(nil), b.lastCommitted...),
	}
}

// Restore loads a persisted state into a fresh Bullshark.
func (b *Bullshark) Restore(s State) error {
	if len(s.LastCommitted) != b.committee.Size() {
		return fmt.Errorf("%w: %d watermarks for %d authorities", ErrBadState, len(s.LastCommitted), b.committee.Size())
	}
	if len(b.byDigest) > 0 || b.lastIndex > 0 {
		return fmt.Errorf("%w: restore into a used state", ErrBadState)
	}
	b.lastIndex = s.LastIndex
	b.lastTimestamp = s.LastTimestamp
	b.committedRound = s.CommittedRound
	copy(b.lastCommitted, s.LastCommitted)
	return nil
}

// Encode returns the canonical encoding: fixed-width little-endian fields,
// the watermarks as a u32 count and u64 values.
func (s State) Encode() []byte {
	out := make([]byte, 0, 28+8*len(s.LastCommitted))
	out = binary.LittleEndian.AppendUint64(out, s.LastIndex)
	out = binary.LittleEndian.AppendUint64(out, s.LastTimestamp)
	out = binary.LittleEndian.AppendUint64(out, s.CommittedRound)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(s.LastCommitted)))
	for _, w := range s.LastCommitted {
		out = binary.LittleEndian.AppendUint64(out, w)
	}
	return out
}

// DecodeState decodes a canonical State.
func DecodeState(b []byte) (State, error) {
	var s State
	if len(b) < 28 {
		return s, fmt.Errorf("%w: %d bytes", ErrBadState, len(b))
	}
	s.LastIndex = binary.LittleEndian.Uint64(b)
	s.LastTimestamp = binary.LittleEndian.Uint64(b[8:])
	s.CommittedRound = binary.LittleEndian.Uint64(b[16:])
	n := binary.LittleEndian.Uint32(b[24:])
	if n > narwhal.MaxCommitteeSize || len(b) != 28+8*int(n) {
		return State{}, fmt.Errorf("%w: %d watermarks in %d bytes", ErrBadState, n, len(b))
	}
	s.LastCommitted = make([]uint64, n)
	for i := range s.LastCommitted {
		s.LastCommitted[i] = binary.LittleEndian.Uint64(b[28+8*i:])
	}
	return s, nil
}

// Record is the persisted form of a committed sub-DAG; the certificates and
// batches themselves are stored by digest.
type Record struct {
	Index           uint64
	Leader          narwhal.Digest
	CommitTimestamp uint64
	Certificates    []narwhal.Digest // in linearized order, leader last
	Support         []narwhal.Digest
}

// Record returns the persisted form.
// The digests remembered at commit serve while the lists are the ones
// Bullshark returned (same lengths); others are hashed.
func (s *CommittedSubDAG) Record() Record {
	r := Record{Index: s.Index, CommitTimestamp: s.CommitTimestamp}
	if len(s.digests) == len(s.Certificates) && len(s.digests) > 0 && s.Certificates[len(s.Certificates)-1] == s.Leader {
		r.Certificates = append(r.Certificates, s.digests...)
	} else {
		for _, c := range s.Certificates {
			r.Certificates = append(r.Certificates, c.Digest())
		}
	}
	if n := len(r.Certificates); n > 0 && s.Certificates[n-1] == s.Leader {
		r.Leader = r.Certificates[n-1]
	} else {
		r.Leader = s.Leader.Digest()
	}
	if len(s.supportDigests) == len(s.Support) {
		r.Support = append(r.Support, s.supportDigests...)
	} else {
		for _, c := range s.Support {
			r.Support = append(r.Support, c.Digest())
		}
	}
	return r
}

// Encode returns the canonical encoding.
func (r Record) Encode() []byte {
	out := make([]byte, 0, 56+32*(len(r.Certificates)+len(r.Support)))
	out = binary.LittleEndian.AppendUint64(out, r.Index)
	out = append(out, r.Leader[:]...)
	out = binary.LittleEndian.AppendUint64(out, r.CommitTimestamp)
	for _, list := range [][]narwhal.Digest{r.Certificates, r.Support} {
		out = binary.LittleEndian.AppendUint32(out, uint32(len(list)))
		for i := range list {
			out = append(out, list[i][:]...)
		}
	}
	return out
}

// maxRecordDigests bounds each digest list of a record.
const maxRecordDigests = 1 << 20

// DecodeRecord decodes a canonical Record.
func DecodeRecord(b []byte) (Record, error) {
	var r Record
	if len(b) < 48 {
		return r, fmt.Errorf("%w: record of %d bytes", ErrBadState, len(b))
	}
	r.Index = binary.LittleEndian.Uint64(b)
	copy(r.Leader[:], b[8:40])
	r.CommitTimestamp = binary.LittleEndian.Uint64(b[40:])
	rest := b[48:]
	for _, list := range []*[]narwhal.Digest{&r.Certificates, &r.Support} {
		if len(rest) < 4 {
			return Record{}, fmt.Errorf("%w: record truncated", ErrBadState)
		}
		n := binary.LittleEndian.Uint32(rest)
		rest = rest[4:]
		if n > maxRecordDigests || uint64(len(rest)) < 32*uint64(n) {
			return Record{}, fmt.Errorf("%w: record list of %d digests in %d bytes", ErrBadState, n, len(rest))
		}
		if n > 0 {
			*list = make([]narwhal.Digest, n)
			for i := range *list {
				copy((*list)[i][:], rest[32*i:])
			}
		}
		rest = rest[32*n:]
	}
	if len(rest) != 0 {
		return Record{}, fmt.Errorf("%w: %d trailing bytes in record", ErrBadState, len(rest))
	}
	return r, nil
}
