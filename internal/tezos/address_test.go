package tezos

import (
	"errors"
	"testing"
)

func TestRollupAddressDerivation(t *testing.T) {
	// reference §3: the zero operation hash with index 0.
	a := RollupAddress([32]byte{}, 0)
	if got := Base58CheckEncode(PrefixRollup, a[:]); got != "sr18hRM2ke5FCVvjhqkDAhGPMzbPCrzJ8wrU" {
		t.Fatalf("got %s", got)
	}
}

func TestRoundTrips(t *testing.T) {
	for _, s := range []string{"sr163Lv22CdE8QagCwf48PWDTquk6isQwv57", "sr18hRM2ke5FCVvjhqkDAhGPMzbPCrzJ8wrU"} {
		a, err := ParseRollup(s)
		if err != nil {
			t.Fatal(err)
		}
		if Base58CheckEncode(PrefixRollup, a[:]) != s {
			t.Fatalf("%s does not round-trip", s)
		}
	}
	if _, err := ParseRollup("sr163Lv22CdE8QagCwf48PWDTquk6isQwv58"); !errors.Is(err, ErrBadAddress) {
		t.Fatalf("bad checksum: %v", err)
	}
	kt := Base58CheckEncode(PrefixContract, make([]byte, 20))
	if _, err := ParseRollup(kt); !errors.Is(err, ErrBadAddress) {
		t.Fatalf("a KT1 accepted as a rollup: %v", err)
	}
	tz := Base58CheckEncode(PrefixTz2, []byte("01234567890123456789"))
	if a, err := ParseImplicit(tz); err != nil || a[0] != 1 || string(a[1:]) != "01234567890123456789" {
		t.Fatalf("tz2: %v %x", err, a)
	}
}

func FuzzBase58CheckDecode(f *testing.F) {
	f.Add("sr163Lv22CdE8QagCwf48PWDTquk6isQwv57")
	f.Add("1111")
	f.Fuzz(func(t *testing.T, s string) {
		if b, err := Base58CheckDecode(s, PrefixRollup, 20); err == nil && len(b) != 20 {
			t.Fatal("wrong size accepted")
		}
	})
}
