package narwhal

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/tezos-dsn/dsn/internal/crypto"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

func digestOf(s string) Digest { return Hash([]byte(s)) }

// sampleHeader is a fixed header used by the golden vectors.
func sampleHeader() Header {
	parents := SortDigests([]Digest{digestOf("p2"), digestOf("p0"), digestOf("p1")})
	return Header{
		Author:    3,
		Round:     7,
		Epoch:     1,
		CreatedAt: 1_700_000_000_123,
		Payload:   []Digest{digestOf("b0"), digestOf("b1")},
		Parents:   parents,
	}
}

func sampleCertificate() Certificate {
	c := Certificate{Header: sampleHeader(), Signers: []AuthorityID{0, 1, 3, 4, 6}}
	for k := range c.Signers {
		var sig crypto.Signature
		for i := range sig {
			sig[i] = byte(i + k)
		}
		c.Signatures = append(c.Signatures, sig)
	}
	return c
}

func sampleMessages() map[string]Message {
	c := sampleCertificate()
	return map[string]Message{
		"msg_batch":        &BatchMsg{Batch: Batch{Transactions: [][]byte{[]byte("hello"), {}, []byte("x")}}},
		"msg_batch_ack":    &BatchAckMsg{Digest: digestOf("ack")},
		"msg_batch_req":    &BatchRequestMsg{Digests: []Digest{digestOf("a"), digestOf("b")}},
		"msg_batch_resp":   &BatchResponseMsg{Batches: []Batch{{Transactions: [][]byte{{1, 2}}}, {}}},
		"msg_header":       &HeaderMsg{Header: sampleHeader()},
		"msg_vote":         &VoteMsg{Vote: Vote{Header: digestOf("h"), Round: 7, Epoch: 1, Origin: 3, Voter: 5, Signature: c.Signatures[0]}},
		"msg_certificate":  &CertificateMsg{Certificate: c},
		"msg_cert_request": &CertificateRequestMsg{Digests: []Digest{digestOf("c")}},
		"msg_cert_resp":    &CertificateResponseMsg{Certificates: []Certificate{c, c}},
	}
}

// goldenVectors computes every vector the golden file pins.
func goldenVectors() map[string]string {
	v := map[string]string{}
	empty := Batch{}
	v["batch_empty_digest"] = empty.Digest().String()
	ab := Batch{Transactions: [][]byte{{0xab}}}
	aThenB := Batch{Transactions: [][]byte{{0xa}, {0xb}}}
	v["batch_ab_digest"] = ab.Digest().String()
	v["batch_a_b_digest"] = aThenB.Digest().String()
	v["batch_a_b_encoding"] = hex.EncodeToString(aThenB.Encode())
	h := sampleHeader()
	v["header_encoding"] = hex.EncodeToString(h.Encode())
	v["header_digest"] = h.Digest().String()
	v["vote_message"] = hex.EncodeToString(VoteMessage(h.Digest()))
	c := sampleCertificate()
	v["certificate_encoding"] = hex.EncodeToString(c.Encode())
	com := &Committee{Epoch: 0, Authorities: make([]Authority, 7)}
	for i, g := range Genesis(com) {
		v[fmt.Sprintf("genesis_e0_%d", i)] = g.Digest().String()
	}
	for name, m := range sampleMessages() {
		v[name] = hex.EncodeToString(EncodeMessage(m))
	}
	return v
}

func TestGoldenVectors(t *testing.T) {
	got := goldenVectors()
	const path = "testdata/golden.txt"
	if *update {
		keys := make([]string, 0, len(got))
		for k := range got {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b bytes.Buffer
		b.WriteString("# Canonical encodings and digests. Regenerate with: go test ./internal/narwhal -update\n")
		for _, k := range keys {
			fmt.Fprintf(&b, "%s %s\n", k, got[k])
		}
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, val, _ := strings.Cut(line, " ")
		want[k] = val
	}
	if len(want) != len(got) {
		t.Errorf("golden file has %d vectors, code computes %d", len(want), len(got))
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s:\n got %s\nwant %s", k, got[k], w)
		}
	}
}

func TestBatchDigestCommitsBoundaries(t *testing.T) {
	ab := Batch{Transactions: [][]byte{{0xa, 0xb}}}
	aThenB := Batch{Transactions: [][]byte{{0xa}, {0xb}}}
	if ab.Digest() == aThenB.Digest() {
		t.Fatal("re-splitting transactions kept the batch digest")
	}
	withEmpty := Batch{Transactions: [][]byte{{0xa, 0xb}, {}}}
	if ab.Digest() == withEmpty.Digest() {
		t.Fatal("appending an empty transaction kept the batch digest")
	}
}

func TestMessagesRoundTrip(t *testing.T) {
	for name, m := range sampleMessages() {
		enc := EncodeMessage(m)
		got, err := DecodeMessage(enc)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if re := EncodeMessage(got); !bytes.Equal(re, enc) {
			t.Fatalf("%s: re-encoding differs", name)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	hdr := sampleHeader()
	good := EncodeMessage(&HeaderMsg{Header: hdr})
	unsorted := hdr
	unsorted.Parents = []Digest{hdr.Parents[1], hdr.Parents[0]}
	dupSigners := sampleCertificate()
	dupSigners.Signers = []AuthorityID{1, 1, 2}
	hugeCount := []byte{3, 0xff, 0xff, 0xff, 0x00} // batch request claiming 16M digests

	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"unknown tag", []byte{0x42}, ErrUnknownTag},
		{"trailing", append(append([]byte(nil), good...), 0), ErrTrailingBytes},
		{"truncated", good[:len(good)-1], ErrTruncated},
		{"unsorted parents", EncodeMessage(&HeaderMsg{Header: unsorted}), ErrNotCanonical},
		{"duplicate signers", EncodeMessage(&CertificateMsg{Certificate: dupSigners}), ErrNotCanonical},
		{"oversized count", hugeCount, ErrTooLarge},
		{"count beyond input", []byte{3, 10, 0, 0, 0}, ErrTruncated},
	}
	for _, tc := range cases {
		_, err := DecodeMessage(tc.in)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := DecodeBatch([]byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized transaction: got %v", err)
	}
}

func TestLeaderRoundRobin(t *testing.T) {
	c := &Committee{Authorities: make([]Authority, 7)}
	for r := uint64(0); r < 40; r++ {
		if got, want := c.Leader(r), AuthorityID(r%7); got != want {
			t.Fatalf("leader(%d) = %d, want %d", r, got, want)
		}
	}
}

func TestThresholds(t *testing.T) {
	for _, tc := range []struct{ n, quorum, validity uint64 }{
		{1, 1, 1}, {4, 3, 2}, {7, 5, 3}, {10, 7, 4},
	} {
		c := &Committee{Authorities: make([]Authority, tc.n)}
		for i := range c.Authorities {
			c.Authorities[i].Stake = 1000
		}
		if q := c.QuorumThreshold(); q != 2*tc.n*1000/3+1 || (q+999)/1000 != tc.quorum {
			t.Errorf("n=%d quorum stake %d", tc.n, q)
		}
		if v := c.ValidityThreshold(); (v+999)/1000 != tc.validity {
			t.Errorf("n=%d validity stake %d", tc.n, v)
		}
	}
}

func FuzzDecodeMessage(f *testing.F) {
	for _, m := range sampleMessages() {
		f.Add(EncodeMessage(m))
	}
	f.Add([]byte{})
	f.Add([]byte{9, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := DecodeMessage(in)
		if err != nil {
			return
		}
		if re := EncodeMessage(m); !bytes.Equal(re, in) {
			t.Fatalf("accepted a non-canonical encoding: %x re-encodes to %x", in, re)
		}
	})
}

func FuzzDecodeCommittee(f *testing.F) {
	f.Add((&Committee{Epoch: 1, Authorities: []Authority{{Name: "a", Stake: 1, Address: "x:1"}}}).Encode())
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := DecodeCommittee(in)
		if err != nil {
			return
		}
		if re := c.Encode(); !bytes.Equal(re, in) {
			t.Fatalf("non-canonical committee accepted")
		}
	})
}
