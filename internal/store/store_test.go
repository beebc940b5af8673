package store

import (
	"bytes"
	"testing"
)

func TestKeysOrderNumerically(t *testing.T) {
	if bytes.Compare(CertificateKey(1, 9), CertificateKey(2, 0)) >= 0 {
		t.Fatal("certificate keys must order by round first")
	}
	if bytes.Compare(CertificateKey(256, 0), CertificateKey(255, 6)) <= 0 {
		t.Fatal("certificate keys must order numerically")
	}
	if bytes.Compare(SubDAGKey(9), SubDAGKey(10)) >= 0 {
		t.Fatal("sub-DAG keys must order numerically")
	}
}

func TestMemoryScanAndApply(t *testing.T) {
	s := NewMemory()
	s.Apply([]Write{
		Put(CertificateKey(2, 1), []byte("c21")),
		Put(CertificateKey(1, 0), []byte("c10")),
		Put(PendingKey(1), []byte("p1")),
		Put(CertificateKey(3, 0), []byte("c30")),
	})
	var got []string
	s.Scan(CertificateKey(2, 0), PrefixEnd([]byte{PrefixCertificate}), func(k, v []byte) bool {
		got = append(got, string(v))
		return true
	})
	if len(got) != 2 || got[0] != "c21" || got[1] != "c30" {
		t.Fatalf("scan = %q", got)
	}
	s.Apply([]Write{Del(CertificateKey(2, 1))})
	if _, ok := s.Get(CertificateKey(2, 1)); ok {
		t.Fatal("deleted key still present")
	}
	if v, ok := s.Get(PendingKey(1)); !ok || string(v) != "p1" {
		t.Fatal("pending key lost")
	}
}

func TestPrefixEnd(t *testing.T) {
	if got := PrefixEnd([]byte{'c'}); !bytes.Equal(got, []byte{'d'}) {
		t.Fatalf("PrefixEnd(c) = %q", got)
	}
	if got := PrefixEnd([]byte{'c', 0xff}); !bytes.Equal(got, []byte{'d'}) {
		t.Fatalf("PrefixEnd(c ff) = %q", got)
	}
	if PrefixEnd([]byte{0xff}) != nil {
		t.Fatal("PrefixEnd(ff) must be unbounded")
	}
}

func TestBatchOf(t *testing.T) {
	d := [32]byte{1, 2, 3}
	if got, ok := BatchOf(BatchKey(d)); !ok || got != d {
		t.Fatalf("BatchOf(BatchKey(d)) = %x, %v", got, ok)
	}
	for _, k := range [][]byte{nil, {PrefixBatch}, CertDigestKey(d), append(BatchKey(d), 0), PendingKey(7)} {
		if _, ok := BatchOf(k); ok {
			t.Errorf("BatchOf(%x) names a batch", k)
		}
	}
}
