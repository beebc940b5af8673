// Package receipt is the proof a user keeps that a transaction was ordered,
// and its offline check. The sequencer (services/sequencer) builds a receipt
// when a followed pre-block holds a tracked transaction; `dsn receipt verify`
// checks one against the committee file, trusting nothing the sequencer
// says. docs/sequencer.md ("Receipts") states what a valid receipt proves.
//
// A receipt carries canonical bytes only (internal/narwhal's encoding: what
// is hashed and signed), so that every claim is re-derived from them:
//
//	transaction ∈ batch            (the batch's bytes hold it; id = BLAKE2b-256 of it)
//	batch digest ∈ certificate     (the header's payload names it)
//	certificate ← path ← leader    (each names the next one as a parent, one round down)
//	leader ← support               (f+1 stake of round leader+1 name it, when present)
//
// and every certificate carries the ed25519 signatures of a quorum of stake
// (narwhal.Verifier, the very check the nodes and the kernel run).
//
// It is pure: no clock, no I/O, no randomness; Decode reads untrusted input
// and never panics on it (FuzzDecode).
package receipt

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/tezos-dsn/dsn/internal/narwhal"
)

// Version is the receipt format this package writes and reads.
const Version = 1

// Decoding limits: a receipt is user input.
const (
	// MaxBytes bounds a receipt's JSON: one batch (the nodes carry at most
	// 64 MiB) twice over for hex, plus the certificates.
	MaxBytes = 160 << 20
	// MaxPath bounds the certificates between the leader and the
	// certificate: one a round, and Bullshark orders nothing further than
	// its GC depth (50 rounds by default) below a leader.
	MaxPath = 1024
)

// Errors, one per check; Verify wraps them with the details.
var (
	ErrMalformed    = errors.New("receipt: malformed")
	ErrVersion      = errors.New("receipt: unsupported version")
	ErrInconsistent = errors.New("receipt: a field disagrees with the canonical bytes")
	ErrTransaction  = errors.New("receipt: transaction not in the batch")
	ErrNotInPayload = errors.New("receipt: batch not in the certificate's payload")
	ErrNotLeader    = errors.New("receipt: not the committee's leader of its round")
	ErrBrokenPath   = errors.New("receipt: path does not link the leader to the certificate")
	ErrSupport      = errors.New("receipt: support does not commit the leader")
	ErrSignature    = errors.New("receipt: certificate not certified by this committee")
)

// Hex is a byte string written as lowercase hex in JSON. The sequencer's
// receipts share these slices with the pre-block they came from: treat
// them as read-only.
type Hex []byte

// MarshalText writes hex.
func (h Hex) MarshalText() ([]byte, error) {
	out := make([]byte, hex.EncodedLen(len(h)))
	hex.Encode(out, h)
	return out, nil
}

// UnmarshalText reads hex.
func (h *Hex) UnmarshalText(b []byte) error {
	out := make([]byte, hex.DecodedLen(len(b)))
	if _, err := hex.Decode(out, b); err != nil {
		return err
	}
	*h = out
	return nil
}

// Cert is one certificate: its canonical bytes (Raw) and, for a reader,
// what they say. Verify rejects a receipt whose descriptive fields differ
// from Raw, so that what a person reads is what was checked.
type Cert struct {
	Digest  Hex      `json:"digest"`  // the header digest, which names the certificate
	Round   uint64   `json:"round"`   // header round
	Author  uint16   `json:"author"`  // authority id: the index in the committee file
	Signers []uint16 `json:"signers"` // authority ids whose signatures Raw carries
	Raw     Hex      `json:"raw"`     // narwhal canonical encoding, with the signatures
}

// NewCert describes a certificate; raw is its canonical encoding (nil:
// encode it).
func NewCert(c *narwhal.Certificate, raw []byte) Cert {
	if raw == nil {
		raw = c.Encode()
	}
	d := c.Digest()
	out := Cert{Digest: Hex(d[:]), Round: c.Round(), Author: uint16(c.Author()), Signers: make([]uint16, len(c.Signers)), Raw: raw}
	for i, s := range c.Signers {
		out.Signers[i] = uint16(s)
	}
	return out
}

// Receipt is what `GET /v1/transactions/{id}/receipt` answers and
// `dsn receipt verify` reads.
//
// NB: Index and Position are the sequencer's claims, copied from its
// status; the receipt cannot prove them (the position depends on the whole
// sub-DAG and on what earlier pre-blocks ordered). Verify checks everything
// else.
type Receipt struct {
	Version  int    `json:"version"`
	ID       Hex    `json:"id"`       // BLAKE2b-256 of the transaction
	Index    uint64 `json:"index"`    // pre-block (claimed)
	Position int    `json:"position"` // place among the pre-block's transactions (claimed)

	// The batch that holds the transaction, canonical bytes; InBatch is the
	// transaction's place in it (from 0).
	InBatch     int `json:"in_batch"`
	BatchDigest Hex `json:"batch_digest"`
	Batch       Hex `json:"batch"`

	// Certificate's header names BatchDigest in its payload.
	Certificate Cert `json:"certificate"`
	// Leader is a committed leader certificate whose causal history holds
	// Certificate: the leader of pre-block Index, or of a later pre-block
	// of the same commit (the one that carried the support).
	Leader Cert `json:"leader"`
	// Path lists the certificates strictly between Leader and Certificate,
	// from the leader down: Leader names Path[0] as a parent, Path[i] names
	// Path[i+1], the last names Certificate. Empty when Leader names
	// Certificate directly, or when Certificate is the leader.
	Path []Cert `json:"path"`
	// Support holds certificates of round Leader.Round+1, by distinct
	// authors in ascending order, that name the leader as a parent with at
	// least f+1 stake: what made Bullshark commit it directly. Empty when
	// the sequencer did not have them.
	Support []Cert `json:"support,omitempty"`
}

// Encode returns the receipt's JSON on one line (`jq .` shows it to
// people).
func (r *Receipt) Encode() []byte {
	b, err := json.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("receipt: encode: %v", err)) // only Hex and integers: cannot fail
	}
	return append(b, '\n')
}

// Decode reads a receipt's JSON: one object, no unknown fields, this
// version, within the limits. It checks the form only; Verify checks the
// content.
func Decode(data []byte) (*Receipt, error) {
	if len(data) > MaxBytes {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(data), MaxBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	r := new(Receipt)
	if err := dec.Decode(r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the receipt", ErrMalformed)
	}
	if r.Version != Version {
		return nil, fmt.Errorf("%w: version %d (this build reads %d)", ErrVersion, r.Version, Version)
	}
	switch {
	case len(r.ID) != narwhal.DigestSize:
		return nil, fmt.Errorf("%w: id of %d bytes", ErrMalformed, len(r.ID))
	case len(r.BatchDigest) != narwhal.DigestSize:
		return nil, fmt.Errorf("%w: batch_digest of %d bytes", ErrMalformed, len(r.BatchDigest))
	case len(r.Path) > MaxPath:
		return nil, fmt.Errorf("%w: path of %d certificates, at most %d", ErrMalformed, len(r.Path), MaxPath)
	case len(r.Support) > narwhal.MaxCommitteeSize:
		return nil, fmt.Errorf("%w: %d support certificates, at most %d", ErrMalformed, len(r.Support), narwhal.MaxCommitteeSize)
	case r.InBatch < 0 || r.Position < 0:
		return nil, fmt.Errorf("%w: negative in_batch or position", ErrMalformed)
	}
	return r, nil
}

// String returns the hex form.
func (h Hex) String() string { return hex.EncodeToString(h) }
