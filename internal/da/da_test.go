package da

import (
	"bytes"
	"errors"
	"math/rand"
	"testing"
)

type mapStore map[string][]byte

func (m mapStore) Get(k string) ([]byte, bool) { v, ok := m[k]; return v, ok }
func (m mapStore) Put(k string, v []byte)      { m[k] = append([]byte(nil), v...) }
func (m mapStore) Delete(k string)             { delete(m, k) }

func payload(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	rng.Read(b)
	return b
}

func testConfig() Config {
	return Config{ExpiryLevels: 10, MaxPendingBytes: 1 << 20, MaxSubmissions: 16, MaxSubmissionBytes: 1 << 20}
}

// Chunks of two submissions, shuffled, duplicated and spread over levels,
// as two posters would send them: each payload comes out exactly once.
func TestReassembleShuffledDuplicatedInterleaved(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	a, b, small := payload(rng, 3*MaxChunkData+17), payload(rng, 2*MaxChunkData), payload(rng, 5)
	var msgs [][]byte
	for _, p := range [][]byte{a, b, small} {
		cs, err := Split(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			enc := c.Encode()
			if len(enc) > MaxContents {
				t.Fatalf("chunk of %d bytes", len(enc))
			}
			msgs = append(msgs, enc, enc) // a second poster sends the same
		}
	}
	rng.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })
	st := mapStore{}
	got := map[string]int{}
	for k, m := range msgs {
		level := uint32(1 + k/3) // three messages per level
		r := NewReassembler(st, testConfig())
		r.Expire(level)
		c, err := DecodeChunk(m)
		if err != nil {
			t.Fatal(err)
		}
		out, err := r.Add(level, c)
		if err != nil {
			t.Fatal(err)
		}
		if out != nil {
			got[string(out)]++
		}
	}
	for _, p := range [][]byte{a, b, small} {
		if got[string(p)] != 1 {
			t.Fatalf("a payload of %d bytes came out %d times", len(p), got[string(p)])
		}
	}
	if n, bytes := NewReassembler(st, testConfig()).Pending(); n != 0 || bytes != 0 {
		t.Fatalf("pending after completion: %d submissions, %d bytes", n, bytes)
	}
}

// A forged chunk seen first makes the honest copy of its index conflict;
// completion then fails the digest and drops everything, and the honest
// poster's next copy completes.
func TestForgedChunkDelaysButNeverAlters(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	p := payload(rng, 2*MaxChunkData+1)
	cs, _ := Split(p)
	forged := cs[1]
	forged.Data = append([]byte(nil), cs[1].Data...)
	forged.Data[0] ^= 1
	st := mapStore{}
	r := NewReassembler(st, testConfig())
	if out, err := r.Add(1, forged); out != nil || err != nil {
		t.Fatal(out, err)
	}
	if _, err := r.Add(1, cs[1]); !errors.Is(err, ErrConflict) {
		t.Fatalf("the honest copy of a forged index: %v", err)
	}
	r.Add(1, cs[0])
	if out, err := r.Add(1, cs[2]); out != nil || !errors.Is(err, ErrDigest) {
		t.Fatalf("completion with a forged chunk: %v %v", out, err)
	}
	if n, b := r.Pending(); n != 0 || b != 0 {
		t.Fatalf("a failed submission must be dropped: %d, %d bytes", n, b)
	}
	var out []byte
	for _, c := range cs {
		if o, err := r.Add(2, c); err != nil {
			t.Fatal(err)
		} else if o != nil {
			out = o
		}
	}
	if !bytes.Equal(out, p) {
		t.Fatal("the honest re-post did not complete")
	}
}

func TestExpiryBoundsAndReplay(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	st := mapStore{}
	cfg := testConfig()
	r := NewReassembler(st, cfg)
	p := payload(rng, 3*MaxChunkData)
	cs, _ := Split(p)
	r.Add(5, cs[0])
	r.Add(6, cs[1])
	if n, b := r.Pending(); n != 1 || b != 2*MaxChunkData {
		t.Fatalf("pending %d, %d bytes", n, b)
	}
	r.Expire(14) // 5 + 10 > 14: kept
	if n, _ := r.Pending(); n != 1 {
		t.Fatal("expired too early")
	}
	r.Expire(15)
	if n, b := r.Pending(); n != 0 || b != 0 || len(st) > 2 {
		t.Fatalf("after expiry: %d submissions, %d bytes, keys %d", n, b, len(st))
	}
	// The last chunk alone now starts over: nothing completes.
	if out, err := r.Add(15, cs[2]); out != nil || err != nil {
		t.Fatal(out, err)
	}

	// A completed submission replayed inside the window is ignored; after
	// the window it is new again (the kernel ignores what it already has).
	one := payload(rng, 100)
	c1, _ := Split(one)
	if out, _ := r.Add(20, c1[0]); !bytes.Equal(out, one) {
		t.Fatal("single-chunk submission")
	}
	if out, err := r.Add(21, c1[0]); out != nil || err != nil {
		t.Fatal("a replay inside the window must be ignored")
	}
	r.Expire(30)
	if out, _ := r.Add(31, c1[0]); !bytes.Equal(out, one) {
		t.Fatal("after the window the replay is new")
	}

	// Bounds: pending bytes, then submissions.
	small := Config{ExpiryLevels: 10, MaxPendingBytes: MaxChunkData, MaxSubmissions: 3, MaxSubmissionBytes: 1 << 20}
	r = NewReassembler(mapStore{}, small)
	big, _ := Split(payload(rng, 3*MaxChunkData))
	if _, err := r.Add(1, big[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Add(1, big[1]); !errors.Is(err, ErrFull) {
		t.Fatalf("over the pending bytes: %v", err)
	}
	for k := 0; k < 2; k++ {
		c, _ := Split(payload(rng, 10))
		if _, err := r.Add(1, c[0]); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := Split(payload(rng, 10))
	if _, err := r.Add(1, c[0]); !errors.Is(err, ErrFull) {
		t.Fatalf("over the submissions: %v", err)
	}
	if _, err := NewReassembler(mapStore{}, Config{MaxSubmissionBytes: 10, MaxSubmissions: 1, MaxPendingBytes: 1 << 20}).Add(1, big[0]); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the submission size: %v", err)
	}
}

func TestDecodeChunkRejects(t *testing.T) {
	cs, _ := Split(make([]byte, MaxChunkData+5))
	good := cs[0].Encode()
	for name, b := range map[string][]byte{
		"empty":       nil,
		"other tag":   append([]byte{0x00}, good[1:]...),
		"short":       good[:HeaderSize-1],
		"truncated":   good[:len(good)-1],
		"too long":    append(append([]byte{}, good...), 0),
		"index≥count": func() []byte { c := cs[1]; c.Index = 2; return c.Encode() }(),
		"wrong count": func() []byte { c := cs[1]; c.Count = 3; return c.Encode() }(),
	} {
		if _, err := DecodeChunk(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	var rollup, other [20]byte
	rollup[0], other[0] = 1, 2
	msg := Target(rollup, good)
	if c, ok := Untarget(rollup, msg); !ok || !bytes.Equal(c, good) {
		t.Fatal("own rollup")
	}
	if _, ok := Untarget(other, msg); ok {
		t.Fatal("another rollup's message")
	}
}

// FuzzDecodeChunk: any bytes decode or fail cleanly, and what decodes
// re-encodes to the same bytes.
func FuzzDecodeChunk(f *testing.F) {
	cs, _ := Split(make([]byte, MaxChunkData+3))
	f.Add(cs[0].Encode())
	f.Add(cs[1].Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeChunk(b)
		if err == nil && !bytes.Equal(c.Encode(), b) {
			t.Fatal("decoded chunk does not re-encode to its bytes")
		}
	})
}

// FuzzReassembler drives the reassembler with a script over the chunks of
// three submissions: each op picks a chunk, may forge a byte of it, and may
// advance the level. No panic; pending bytes always equal the stored
// chunks; whatever comes out is one of the three payloads.
func FuzzReassembler(f *testing.F) {
	rng := rand.New(rand.NewSource(4))
	var chunks []Chunk
	payloads := map[string]bool{}
	for _, n := range []int{3*MaxChunkData + 1, MaxChunkData, 40} {
		p := payload(rng, n)
		payloads[string(p)] = true
		cs, _ := Split(p)
		chunks = append(chunks, cs...)
	}
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6})
	f.Add([]byte{0x80, 1, 0x41, 2, 3, 0x22, 5, 6, 0})
	f.Fuzz(func(t *testing.T, script []byte) {
		st := mapStore{}
		r := NewReassembler(st, Config{ExpiryLevels: 3, MaxPendingBytes: 3 * MaxChunkData, MaxSubmissions: 3, MaxSubmissionBytes: 1 << 20})
		level := uint32(1)
		for _, op := range script {
			c := chunks[int(op&0x0f)%len(chunks)]
			if op&0x80 != 0 { // forge one byte
				c.Data = append([]byte(nil), c.Data...)
				if len(c.Data) > 0 {
					c.Data[int(op)%len(c.Data)] ^= 0x5a
				}
			}
			level += uint32(op>>4) & 3
			r.Expire(level)
			out, err := r.Add(level, c)
			if err == nil && out != nil && !payloads[string(out)] {
				t.Fatal("a payload nobody posted came out")
			}
			var sum uint64
			for k, v := range st {
				if len(k) > 67 { // p/<64 hex>/<index>
					sum += uint64(len(v))
				}
			}
			if _, b := r.Pending(); b != sum {
				t.Fatalf("pending bytes %d, stored chunks %d", b, sum)
			}
		}
	})
}
