package narwhal

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/tezos-dsn/dsn/internal/crypto"
)

// Protocol-wide limits. Decoders reject anything larger; a node may configure
// tighter limits for what it accepts from clients.
const (
	// MaxTransactionSize is the largest transaction the protocol carries.
	MaxTransactionSize = 6 << 20
	// MaxBatchTransactions bounds the transaction count of one batch.
	MaxBatchTransactions = 1 << 20
	// MaxHeaderPayload bounds the batch digests one header may reference.
	MaxHeaderPayload = 1000
	// MaxCommitteeSize bounds the number of authorities.
	MaxCommitteeSize = 256
)

// AuthorityID is the index of an authority in its committee.
type AuthorityID uint16

// Batch is a worker's unit of transactions. Its digest commits to every
// transaction boundary: the encoding is length-prefixed, so the transactions
// cannot be re-split without changing the digest (the PoC hashed the plain
// concatenation, which let anyone re-split them).
type Batch struct {
	Transactions [][]byte
}

// Encode returns the canonical encoding.
func (b *Batch) Encode() []byte {
	e := &encoder{buf: make([]byte, 0, b.encodedSize())}
	b.encode(e)
	return e.buf
}

func (b *Batch) encodedSize() int {
	n := 4
	for _, tx := range b.Transactions {
		n += 4 + len(tx)
	}
	return n
}

func (b *Batch) encode(e *encoder) {
	e.count(len(b.Transactions))
	for _, tx := range b.Transactions {
		e.bytes(tx)
	}
}

func (b *Batch) decode(d *decoder) {
	n := d.count(MaxBatchTransactions, 4, "batch transactions")
	b.Transactions = make([][]byte, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		b.Transactions = append(b.Transactions, d.bytes(MaxTransactionSize, "transaction"))
	}
}

// DecodeBatch decodes a canonical batch.
func DecodeBatch(buf []byte) (*Batch, error) {
	d := newDecoder(buf)
	b := new(Batch)
	b.decode(d)
	if err := d.finish("batch"); err != nil {
		return nil, err
	}
	return b, nil
}

// Digest returns BLAKE2b-256 over the domain tag and the canonical encoding.
func (b *Batch) Digest() Digest { return hashTagged(tagBatchDigest, b.Encode()) }

// Size returns the total transaction bytes.
func (b *Batch) Size() int {
	n := 0
	for _, tx := range b.Transactions {
		n += len(tx)
	}
	return n
}

// Header is a primary's proposal for one round: the batches it makes
// available and the certificates of the previous round it builds on.
type Header struct {
	Author    AuthorityID
	Round     uint64
	Epoch     uint64
	CreatedAt uint64   // unix milliseconds by the author's clock; not below any parent's
	Payload   []Digest // batch digests, in the author's order
	Parents   []Digest // certificate digests of round-1, strictly ascending
}

func (h *Header) encode(e *encoder) {
	e.u16(uint16(h.Author))
	e.u64(h.Round)
	e.u64(h.Epoch)
	e.u64(h.CreatedAt)
	e.count(len(h.Payload))
	for i := range h.Payload {
		e.raw(h.Payload[i][:])
	}
	e.count(len(h.Parents))
	for i := range h.Parents {
		e.raw(h.Parents[i][:])
	}
}

func (h *Header) decode(d *decoder) {
	h.Author = AuthorityID(d.u16())
	h.Round = d.u64()
	h.Epoch = d.u64()
	h.CreatedAt = d.u64()
	h.Payload = decodeDigests(d, MaxHeaderPayload, "header payload")
	h.Parents = decodeDigests(d, MaxCommitteeSize, "header parents")
	for i := 1; i < len(h.Parents) && d.err == nil; i++ {
		if h.Parents[i-1].Compare(h.Parents[i]) >= 0 {
			d.fail(fmt.Errorf("header parents not strictly ascending at %d: %w", i, ErrNotCanonical))
		}
	}
}

func decodeDigests(d *decoder, limit int, what string) []Digest {
	n := d.count(limit, DigestSize, what)
	if n == 0 {
		return nil
	}
	out := make([]Digest, n)
	for i := range out {
		d.fixed(out[i][:])
	}
	return out
}

// Encode returns the canonical encoding.
func (h *Header) Encode() []byte {
	e := &encoder{buf: make([]byte, 0, 38+DigestSize*(len(h.Payload)+len(h.Parents)))}
	h.encode(e)
	return e.buf
}

// DecodeHeader decodes a canonical header.
func DecodeHeader(buf []byte) (*Header, error) {
	d := newDecoder(buf)
	h := new(Header)
	h.decode(d)
	if err := d.finish("header"); err != nil {
		return nil, err
	}
	return h, nil
}

// Digest returns BLAKE2b-256 over the domain tag and the canonical encoding.
// It names the header, its votes and its certificate.
func (h *Header) Digest() Digest { return hashTagged(tagHeaderDigest, h.Encode()) }

// SortDigests sorts digests ascending and removes duplicates, the form
// Header.Parents must have.
func SortDigests(ds []Digest) []Digest {
	slices.SortFunc(ds, Digest.Compare)
	return slices.Compact(ds)
}

// VoteMessage returns the bytes an authority signs to vote for a header: a
// domain tag followed by the header digest (which covers author, round and
// epoch).
func VoteMessage(header Digest) []byte {
	return append([]byte(tagVoteMessage), header[:]...)
}

// Vote is one authority's signature on another authority's header.
type Vote struct {
	Header    Digest // digest of the header voted for
	Round     uint64
	Epoch     uint64
	Origin    AuthorityID // author of the header
	Voter     AuthorityID
	Signature crypto.Signature // ed25519 over VoteMessage(Header)
}

func (v *Vote) encode(e *encoder) {
	e.raw(v.Header[:])
	e.u64(v.Round)
	e.u64(v.Epoch)
	e.u16(uint16(v.Origin))
	e.u16(uint16(v.Voter))
	e.raw(v.Signature[:])
}

func (v *Vote) decode(d *decoder) {
	d.fixed(v.Header[:])
	v.Round = d.u64()
	v.Epoch = d.u64()
	v.Origin = AuthorityID(d.u16())
	v.Voter = AuthorityID(d.u16())
	d.fixed(v.Signature[:])
}

// Certificate is a header with the votes of a quorum of distinct
// authorities: their ids and their ed25519 signatures over
// VoteMessage(header digest), in the same order. Its digest is the header
// digest: the signers and signatures are not covered, so two nodes may hold
// the same certificate with different signer sets.
type Certificate struct {
	Header     Header
	Signers    []AuthorityID      // strictly ascending; empty only for genesis
	Signatures []crypto.Signature // Signatures[i] is Signers[i]'s vote
}

func (c *Certificate) encode(e *encoder) {
	c.Header.encode(e)
	e.count(len(c.Signers))
	for _, s := range c.Signers {
		e.u16(uint16(s))
	}
	for i := range c.Signers {
		var sig crypto.Signature
		if i < len(c.Signatures) {
			sig = c.Signatures[i]
		}
		e.raw(sig[:])
	}
}

func (c *Certificate) decode(d *decoder) {
	c.Header.decode(d)
	n := d.count(MaxCommitteeSize, 2+crypto.SignatureSize, "certificate signers")
	if n > 0 {
		c.Signers = make([]AuthorityID, n)
		c.Signatures = make([]crypto.Signature, n)
	}
	for i := range c.Signers {
		c.Signers[i] = AuthorityID(d.u16())
		if i > 0 && c.Signers[i] <= c.Signers[i-1] && d.err == nil {
			d.fail(fmt.Errorf("certificate signers not strictly ascending at %d: %w", i, ErrNotCanonical))
		}
	}
	for i := range c.Signatures {
		d.fixed(c.Signatures[i][:])
	}
}

// Encode returns the canonical encoding.
func (c *Certificate) Encode() []byte {
	e := &encoder{}
	c.encode(e)
	return e.buf
}

// DecodeCertificate decodes a canonical certificate.
func DecodeCertificate(buf []byte) (*Certificate, error) {
	d := newDecoder(buf)
	c := new(Certificate)
	c.decode(d)
	if err := d.finish("certificate"); err != nil {
		return nil, err
	}
	return c, nil
}

// PeekCertificate reads the author and the round of an encoded certificate
// without decoding it (they lead its header's encoding); ok is false for
// fewer bytes than that. The bytes are otherwise unchecked.
func PeekCertificate(enc []byte) (author AuthorityID, round uint64, ok bool) {
	if len(enc) < 10 {
		return 0, 0, false
	}
	return AuthorityID(binary.LittleEndian.Uint16(enc)), binary.LittleEndian.Uint64(enc[2:]), true
}

// Digest returns the header digest.
func (c *Certificate) Digest() Digest { return c.Header.Digest() }

// Round returns the header round.
func (c *Certificate) Round() uint64 { return c.Header.Round }

// Author returns the header author.
func (c *Certificate) Author() AuthorityID { return c.Header.Author }

// Genesis returns the round-0 certificates of a committee, one per authority:
// no payload, no parents, no signers. Every node computes the same ones.
func Genesis(c *Committee) []*Certificate {
	out := make([]*Certificate, len(c.Authorities))
	for i := range out {
		out[i] = &Certificate{Header: Header{Author: AuthorityID(i), Epoch: c.Epoch}}
	}
	return out
}
