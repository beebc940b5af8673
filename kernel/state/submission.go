package state

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tezos-dsn/dsn/internal/narwhal"
)

// SubmissionVersion is the first byte of every submission payload.
const SubmissionVersion byte = 1

// Entry is one certificate of a submission with the batches its header
// names, in payload order — or, Withheld, without them (a certificate the
// node streamed without batches: below its GC horizon, never committed).
type Entry struct {
	Certificate *narwhal.Certificate
	Batches     []*narwhal.Batch
	Withheld    bool
}

// withheldCount is the batch count that marks a withheld entry.
const withheldCount = ^uint32(0)

// ErrSubmission reports a payload that is not a well-formed submission.
var ErrSubmission = errors.New("state: malformed submission")

// maxEntries bounds the certificates of one submission.
const maxEntries = 1 << 16

// EncodeSubmission returns the payload a sequencer splits into chunks
// (internal/da): version ‖ count u32 ‖ for each entry: certificate (u32
// length ‖ canonical bytes) ‖ batch count u32 ‖ batches (u32 length ‖
// canonical bytes); a batch count of 2^32-1 marks a withheld entry, with
// no batches. Entries should come in causal order (by round).
func EncodeSubmission(entries []Entry) []byte {
	out := []byte{SubmissionVersion}
	out = binary.BigEndian.AppendUint32(out, uint32(len(entries)))
	for _, e := range entries {
		c := e.Certificate.Encode()
		out = binary.BigEndian.AppendUint32(out, uint32(len(c)))
		out = append(out, c...)
		if e.Withheld {
			out = binary.BigEndian.AppendUint32(out, withheldCount)
			continue
		}
		out = binary.BigEndian.AppendUint32(out, uint32(len(e.Batches)))
		for _, b := range e.Batches {
			raw := b.Encode()
			out = binary.BigEndian.AppendUint32(out, uint32(len(raw)))
			out = append(out, raw...)
		}
	}
	return out
}

// StripSignatures returns the entries with the signatures (and signers)
// dropped from every certificate that a certificate of the same
// submission names as a parent: the Machine authenticates it by that
// digest link, so only the tips need to carry signatures. On a 7-node
// committee that is more than half of a certificate's bytes. The entries
// given are not modified.
func StripSignatures(entries []Entry) []Entry {
	named := map[narwhal.Digest]bool{}
	for _, e := range entries {
		for _, p := range e.Certificate.Header.Parents {
			named[p] = true
		}
	}
	out := make([]Entry, len(entries))
	for i, e := range entries {
		out[i] = e
		if named[e.Certificate.Digest()] {
			out[i].Certificate = &narwhal.Certificate{Header: e.Certificate.Header}
		}
	}
	return out
}

// DecodeSubmission parses a payload. It checks the encoding only: that
// each certificate names exactly these batches, and whether it is genuine,
// is the Machine's job.
func DecodeSubmission(b []byte) ([]Entry, error) {
	if len(b) < 5 || b[0] != SubmissionVersion {
		return nil, fmt.Errorf("%w: version or length", ErrSubmission)
	}
	n := binary.BigEndian.Uint32(b[1:])
	b = b[5:]
	if n > maxEntries || uint64(n)*8 > uint64(len(b)) {
		return nil, fmt.Errorf("%w: %d entries in %d bytes", ErrSubmission, n, len(b))
	}
	next := func() ([]byte, error) {
		if len(b) < 4 {
			return nil, fmt.Errorf("%w: truncated", ErrSubmission)
		}
		l := binary.BigEndian.Uint32(b)
		if uint64(l) > uint64(len(b)-4) {
			return nil, fmt.Errorf("%w: item of %d bytes in %d", ErrSubmission, l, len(b)-4)
		}
		item := b[4 : 4+l]
		b = b[4+l:]
		return item, nil
	}
	entries := make([]Entry, 0, n)
	for range n {
		raw, err := next()
		if err != nil {
			return nil, err
		}
		c, err := narwhal.DecodeCertificate(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSubmission, err)
		}
		if len(b) < 4 {
			return nil, fmt.Errorf("%w: truncated", ErrSubmission)
		}
		k := binary.BigEndian.Uint32(b)
		b = b[4:]
		if k == withheldCount {
			entries = append(entries, Entry{Certificate: c, Withheld: true})
			continue
		}
		if k > narwhal.MaxHeaderPayload || uint64(k)*4 > uint64(len(b)) {
			return nil, fmt.Errorf("%w: %d batches", ErrSubmission, k)
		}
		e := Entry{Certificate: c}
		for range k {
			raw, err := next()
			if err != nil {
				return nil, err
			}
			batch, err := narwhal.DecodeBatch(raw)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrSubmission, err)
			}
			e.Batches = append(e.Batches, batch)
		}
		entries = append(entries, e)
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrSubmission, len(b))
	}
	return entries, nil
}
