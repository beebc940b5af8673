package pvm

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// Setup is an installer setup file: the instructions that write a
// kernel's origination values into durable storage before its first run,
// in the format of octez's smart-rollup-installer (`--setup-file`):
//
//	{"instructions": [{"set": {"value": "<hex>", "to": "/path"}}, …]}
//
// It is written as JSON, which YAML parsers (the installer's) read as well.
// Only `set` is supported: `move` and `reveal` have no use in our lab.
type Setup struct {
	Instructions []SetupInstruction `json:"instructions"`
}

// SetupInstruction is one step of a Setup.
type SetupInstruction struct {
	Set *SetValue `json:"set"`
}

// SetValue writes Value (hex in the file) at the durable path To.
type SetValue struct {
	Value HexBytes `json:"value"`
	To    string   `json:"to"`
}

// HexBytes is a byte string written as hex in JSON.
type HexBytes []byte

// MarshalJSON implements json.Marshaler.
func (h HexBytes) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(h)) }

// UnmarshalJSON implements json.Unmarshaler.
func (h *HexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	if err != nil {
		return fmt.Errorf("value is not hex: %w", err)
	}
	*h = v
	return nil
}

var errSetup = errors.New("pvm: bad setup file")

// ParseSetup decodes and checks a setup file: every instruction is a set
// of a valid, writable durable path.
func ParseSetup(b []byte) (*Setup, error) {
	var s Setup
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%w: %v", errSetup, err)
	}
	for i, in := range s.Instructions {
		if in.Set == nil {
			return nil, fmt.Errorf("%w: instruction %d is not a set", errSetup, i)
		}
		segs, code := splitPath(in.Set.To)
		if code != 0 || len(segs) == 0 || readonly(segs) {
			return nil, fmt.Errorf("%w: instruction %d: %q is not a writable durable path", errSetup, i, in.Set.To)
		}
	}
	return &s, nil
}

// SetupFrom returns the instructions that recreate every value under
// prefix in d (e.g. what kernel/state.Setup wrote into a scratch Durable).
func SetupFrom(d *Durable, prefix string) *Setup {
	s := &Setup{}
	d.Walk(prefix, func(path string, v []byte) {
		s.Instructions = append(s.Instructions, SetupInstruction{Set: &SetValue{Value: v, To: path}})
	})
	return s
}

// Apply runs the instructions against d.
func (s *Setup) Apply(d *Durable) error {
	for _, in := range s.Instructions {
		if err := d.Set(in.Set.To, in.Set.Value); err != nil {
			return fmt.Errorf("setup %s: %w", in.Set.To, err)
		}
	}
	return nil
}
