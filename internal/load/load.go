// Package load generates timestamped test transactions and measures their
// latency: a transaction starts with a magic tag and the unix-nanosecond time
// it was sent, so whoever sees it ordered can tell how long it took. Used by
// `dsn spam`, `dsn listen` and the benchmarks.
package load

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"time"
)

// header is the tag that marks a stamped transaction.
var header = [4]byte{'d', 's', 'n', 'T'}

// HeaderSize is the bytes a stamp takes; a transaction is at least this long.
const HeaderSize = 4 + 8 + 8

// Make returns a transaction of size bytes (at least HeaderSize) stamped
// with sent and a sequence number, padded with pseudo-random bytes.
func Make(rng *rand.Rand, size int, sent time.Time, seq uint64) []byte {
	size = max(size, HeaderSize)
	tx := make([]byte, size)
	copy(tx, header[:])
	binary.BigEndian.PutUint64(tx[4:], uint64(sent.UnixNano()))
	binary.BigEndian.PutUint64(tx[12:], seq)
	for i := HeaderSize; i < size; i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], rng.Uint64())
		copy(tx[i:], w[:])
	}
	return tx
}

// SentAt returns the send time of a stamped transaction.
func SentAt(tx []byte) (time.Time, bool) {
	if len(tx) < HeaderSize || [4]byte(tx[:4]) != header {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(tx[4:]))), true
}

// Seq returns the sequence number of a stamped transaction.
func Seq(tx []byte) (uint64, bool) {
	if len(tx) < HeaderSize || [4]byte(tx[:4]) != header {
		return 0, false
	}
	return binary.BigEndian.Uint64(tx[12:]), true
}

// Percentiles summarizes latencies.
type Percentiles struct {
	Count         int
	P50, P90, P99 time.Duration
	Max           time.Duration
}

// Summarize computes percentiles (nearest rank) of ds; ds is sorted in place.
func Summarize(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	slices.Sort(ds)
	at := func(p float64) time.Duration {
		i := int(p*float64(len(ds))+0.5) - 1
		return ds[min(max(i, 0), len(ds)-1)]
	}
	return Percentiles{Count: len(ds), P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: ds[len(ds)-1]}
}
