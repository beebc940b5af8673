package preblock

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"

	dsnv1 "github.com/tezos-dsn/dsn/api/dsn/v1"
)

// queue is a Receiver over recorded messages.
type queue struct{ msgs []*dsnv1.ExportResponse }

func (q *queue) Recv() (*dsnv1.ExportResponse, error) {
	if len(q.msgs) == 0 {
		return nil, io.EOF
	}
	m := q.msgs[0]
	q.msgs = q.msgs[1:]
	return m, nil
}

func (q *queue) send(m *dsnv1.ExportResponse) error {
	q.msgs = append(q.msgs, m)
	return nil
}

// split records pre-block index with certificates of the given batch sizes.
func split(t testing.TB, q *queue, index uint64, sizes [][]int, support int) *dsnv1.PreBlock {
	t.Helper()
	want := &dsnv1.PreBlock{Index: index, Leader: bytes.Repeat([]byte{byte(index)}, 32), CommitTimestamp: 7}
	var batches, total int
	for i, ss := range sizes {
		want.Certificates = append(want.Certificates, []byte{'c', byte(i)})
		cb := &dsnv1.CertificateBatches{}
		for j, n := range ss {
			b := bytes.Repeat([]byte{byte(i*16 + j)}, n)
			cb.Batches = append(cb.Batches, b)
			batches++
			total += n
		}
		want.Batches = append(want.Batches, cb)
	}
	for k := range support {
		want.Support = append(want.Support, []byte{'s', byte(k)})
	}
	src := Source{
		Start: &dsnv1.PreBlockStart{Index: index, Leader: want.Leader, CommitTimestamp: 7, Certificates: uint32(len(sizes)),
			Support: uint32(support), Batches: uint32(batches), BatchBytes: uint64(total)},
		Certificate: func(i int) ([]byte, int, error) { return want.Certificates[i], len(sizes[i]), nil },
		Batch:       func(i, j int) ([]byte, error) { return want.Batches[i].Batches[j], nil },
		Support:     func(k int) ([]byte, error) { return want.Support[k], nil },
	}
	if err := Split(src, q.send); err != nil {
		t.Fatal(err)
	}
	return want
}

func TestSplitAndReassemble(t *testing.T) {
	q := &queue{}
	a := split(t, q, 1, [][]int{{10, 2*PartBytes + 3}, {}, {PartBytes}}, 2)
	q.send(&dsnv1.ExportResponse{Item: &dsnv1.ExportResponse_Heartbeat{Heartbeat: &dsnv1.Heartbeat{Head: 2}}})
	b := split(t, q, 2, [][]int{{1}}, 0)
	for _, m := range q.msgs {
		if p := m.GetBatch(); p != nil && len(p.Data) > PartBytes {
			t.Fatalf("a part of %d bytes", len(p.Data))
		}
	}
	rd := NewReader(q)
	for _, want := range []*dsnv1.PreBlock{a, nil, b} {
		pb, hb, err := rd.PreBlock()
		if err != nil {
			t.Fatal(err)
		}
		if want == nil {
			if hb == nil || hb.Head != 2 {
				t.Fatalf("want the heartbeat, got %v %v", pb, hb)
			}
			continue
		}
		if !proto.Equal(pb, want) {
			t.Fatalf("pre-block %d reassembled differently", want.Index)
		}
	}
	if last, ok := rd.LastComplete(); !ok || last != 2 {
		t.Fatalf("last complete %d %v", last, ok)
	}
}

func TestMalformedStreams(t *testing.T) {
	good := func() []*dsnv1.ExportResponse {
		q := &queue{}
		split(t, q, 5, [][]int{{PartBytes + 1}, {3}}, 1)
		return q.msgs
	}
	hb := &dsnv1.ExportResponse{Item: &dsnv1.ExportResponse_Heartbeat{Heartbeat: &dsnv1.Heartbeat{}}}
	for name, edit := range map[string]func([]*dsnv1.ExportResponse) []*dsnv1.ExportResponse{
		"heartbeat inside": func(m []*dsnv1.ExportResponse) []*dsnv1.ExportResponse {
			return append(append(append([]*dsnv1.ExportResponse{}, m[:2]...), hb), m[2:]...)
		},
		"batch part dropped": func(m []*dsnv1.ExportResponse) []*dsnv1.ExportResponse {
			return append(append([]*dsnv1.ExportResponse{}, m[:2]...), m[3:]...)
		},
		"certificate twice": func(m []*dsnv1.ExportResponse) []*dsnv1.ExportResponse {
			return append(append([]*dsnv1.ExportResponse{}, m[:2]...), m[1:]...)
		},
		"end missing, next start": func(m []*dsnv1.ExportResponse) []*dsnv1.ExportResponse {
			return append(append([]*dsnv1.ExportResponse{}, m[:len(m)-1]...), m[0])
		},
		"support before batches": func(m []*dsnv1.ExportResponse) []*dsnv1.ExportResponse {
			return []*dsnv1.ExportResponse{m[0], m[1], m[len(m)-2]}
		},
	} {
		_, _, err := NewReader(&queue{msgs: edit(good())}).PreBlock()
		if !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v, want ErrProtocol", name, err)
		}
	}
	// Limits are the client's: a pre-block over its bound is refused at its start.
	_, _, err := NewReader(&queue{msgs: good()}, WithMaxPreBlockBytes(PartBytes)).PreBlock()
	if err == nil || errors.Is(err, ErrProtocol) {
		t.Errorf("over the pre-block limit: %v", err)
	}
	_, _, err = NewReader(&queue{msgs: good()}, WithMaxBatchBytes(PartBytes)).PreBlock()
	if err == nil || errors.Is(err, ErrProtocol) {
		t.Errorf("over the batch limit: %v", err)
	}
}

// FuzzReader feeds arbitrary message sequences (0xff-separated protobuf
// encodings): the reader never panics, and every pre-block it returns is
// consistent.
func FuzzReader(f *testing.F) {
	q := &queue{}
	split(f, q, 1, [][]int{{5, 7}, {1}}, 1)
	var seed []byte
	for _, m := range q.msgs {
		raw, _ := proto.Marshal(m)
		seed = append(append(seed, raw...), 0xff)
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		q := &queue{}
		for _, chunk := range bytes.Split(data, []byte{0xff}) {
			m := &dsnv1.ExportResponse{}
			if proto.Unmarshal(chunk, m) == nil {
				q.msgs = append(q.msgs, m)
			}
		}
		rd := NewReader(q, WithMaxBatchBytes(1<<16), WithMaxPreBlockBytes(1<<20))
		for {
			pb, hb, err := rd.PreBlock()
			if err != nil {
				return
			}
			if hb == nil && len(pb.Batches) != len(pb.Certificates) {
				t.Fatalf("pre-block %d: %d batch lists for %d certificates", pb.Index, len(pb.Batches), len(pb.Certificates))
			}
		}
	})
}
