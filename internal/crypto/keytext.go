package crypto

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// EncodeKey returns the hex text form of key material, as config and key
// files store it.
func EncodeKey(b []byte) string { return hex.EncodeToString(b) }

// DecodeKey parses hex text (surrounding space ignored) of exactly size bytes.
func DecodeKey(s string, size int) ([]byte, error) {
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("decode hex key: %w", err)
	}
	if len(b) != size {
		return nil, fmt.Errorf("decode hex key: %d bytes, want %d", len(b), size)
	}
	return b, nil
}
