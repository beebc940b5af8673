package narwhal

import "fmt"

// Message is one node-to-node message. Transport carries the canonical
// encoding (EncodeMessage); the sender is authenticated by the transport
// (mutual TLS), never taken from the message.
type Message interface {
	tag() uint8
	encode(e *encoder)
	decode(d *decoder)
}

// Worker messages.
type (
	// BatchMsg asks a worker to store a batch made by the sender's worker.
	BatchMsg struct{ Batch Batch }
	// BatchAckMsg says the sender stored (durably) the batch with this digest.
	BatchAckMsg struct{ Digest Digest }
	// BatchRequestMsg asks for the batches with these digests.
	BatchRequestMsg struct{ Digests []Digest }
	// BatchResponseMsg carries requested batches (those the sender has).
	BatchResponseMsg struct{ Batches []Batch }
)

// Primary messages.
type (
	// HeaderMsg asks the receiver to vote for the sender's header.
	HeaderMsg struct{ Header Header }
	// VoteMsg carries a vote for the receiver's header.
	VoteMsg struct{ Vote Vote }
	// CertificateMsg announces a new certificate.
	CertificateMsg struct{ Certificate Certificate }
	// CertificateRequestMsg asks for the certificates with these digests.
	CertificateRequestMsg struct{ Digests []Digest }
	// CertificateResponseMsg carries requested certificates (those the sender has).
	CertificateResponseMsg struct{ Certificates []Certificate }
)

const (
	maxRequestDigests = 10_000
	maxResponseItems  = 10_000
)

func (*BatchMsg) tag() uint8               { return 1 }
func (*BatchAckMsg) tag() uint8            { return 2 }
func (*BatchRequestMsg) tag() uint8        { return 3 }
func (*BatchResponseMsg) tag() uint8       { return 4 }
func (*HeaderMsg) tag() uint8              { return 5 }
func (*VoteMsg) tag() uint8                { return 6 }
func (*CertificateMsg) tag() uint8         { return 7 }
func (*CertificateRequestMsg) tag() uint8  { return 8 }
func (*CertificateResponseMsg) tag() uint8 { return 9 }

func (m *BatchMsg) encode(e *encoder) { m.Batch.encode(e) }
func (m *BatchMsg) decode(d *decoder) { m.Batch.decode(d) }

func (m *BatchAckMsg) encode(e *encoder) { e.raw(m.Digest[:]) }
func (m *BatchAckMsg) decode(d *decoder) { d.fixed(m.Digest[:]) }

func (m *BatchRequestMsg) encode(e *encoder) { encodeDigests(e, m.Digests) }
func (m *BatchRequestMsg) decode(d *decoder) {
	m.Digests = decodeDigests(d, maxRequestDigests, "batch request")
}

func (m *BatchResponseMsg) encode(e *encoder) {
	e.count(len(m.Batches))
	for i := range m.Batches {
		m.Batches[i].encode(e)
	}
}
func (m *BatchResponseMsg) decode(d *decoder) {
	n := d.count(maxResponseItems, 4, "batch response")
	m.Batches = make([]Batch, n)
	for i := 0; i < n && d.err == nil; i++ {
		m.Batches[i].decode(d)
	}
}

func (m *HeaderMsg) encode(e *encoder) { m.Header.encode(e) }
func (m *HeaderMsg) decode(d *decoder) { m.Header.decode(d) }

func (m *VoteMsg) encode(e *encoder) { m.Vote.encode(e) }
func (m *VoteMsg) decode(d *decoder) { m.Vote.decode(d) }

func (m *CertificateMsg) encode(e *encoder) { m.Certificate.encode(e) }
func (m *CertificateMsg) decode(d *decoder) { m.Certificate.decode(d) }

func (m *CertificateRequestMsg) encode(e *encoder) { encodeDigests(e, m.Digests) }
func (m *CertificateRequestMsg) decode(d *decoder) {
	m.Digests = decodeDigests(d, maxRequestDigests, "certificate request")
}

func (m *CertificateResponseMsg) encode(e *encoder) {
	e.count(len(m.Certificates))
	for i := range m.Certificates {
		m.Certificates[i].encode(e)
	}
}
func (m *CertificateResponseMsg) decode(d *decoder) {
	n := d.count(maxResponseItems, 38, "certificate response")
	m.Certificates = make([]Certificate, n)
	for i := 0; i < n && d.err == nil; i++ {
		m.Certificates[i].decode(d)
	}
}

func encodeDigests(e *encoder, ds []Digest) {
	e.count(len(ds))
	for i := range ds {
		e.raw(ds[i][:])
	}
}

// EncodeMessage returns a message's canonical encoding: a tag byte and the body.
func EncodeMessage(m Message) []byte {
	e := &encoder{}
	e.u8(m.tag())
	m.encode(e)
	return e.buf
}

// DecodeMessage decodes a message. Unknown tags, truncated or trailing bytes
// and oversized lengths are errors.
func DecodeMessage(buf []byte) (Message, error) {
	d := newDecoder(buf)
	tag := d.u8()
	var m Message
	switch tag {
	case 1:
		m = new(BatchMsg)
	case 2:
		m = new(BatchAckMsg)
	case 3:
		m = new(BatchRequestMsg)
	case 4:
		m = new(BatchResponseMsg)
	case 5:
		m = new(HeaderMsg)
	case 6:
		m = new(VoteMsg)
	case 7:
		m = new(CertificateMsg)
	case 8:
		m = new(CertificateRequestMsg)
	case 9:
		m = new(CertificateResponseMsg)
	default:
		if d.err != nil {
			return nil, d.finish("message")
		}
		return nil, fmt.Errorf("decode message: tag %d: %w", tag, ErrUnknownTag)
	}
	m.decode(d)
	if err := d.finish(fmt.Sprintf("message %T", m)); err != nil {
		return nil, err
	}
	return m, nil
}

// Envelope is a message addressed to one peer (never to self).
type Envelope struct {
	To  AuthorityID
	Msg Message
	// Vouches lists, for a vote, the header's batches: the vote says this
	// node stores them, so their writes must be durable before it leaves
	// (what else must be, see replica.Early).
	Vouches []Digest
}
