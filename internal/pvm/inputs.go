package pvm

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/tezos-dsn/dsn/internal/tezos"
)

// DefaultDebuggerRollup is octez-smart-rollup-wasm-debugger's default address.
const DefaultDebuggerRollup = "sr163Lv22CdE8QagCwf48PWDTquk6isQwv57"

// debuggerInput is one message in the octez debugger's inputs JSON.
type debuggerInput struct {
	External    *string `json:"external"`
	Payload     *string `json:"payload"`
	Sender      string  `json:"sender"`
	Source      string  `json:"source"`
	Destination string  `json:"destination"`
}

// ParseInputs reads inputs in the format of octez-smart-rollup-wasm-debugger:
// a list of levels, each a list of {"external": "<hex>"} or internal
// transfers {"payload", "sender", "source", "destination"}. A transfer's
// payload is a Michelson literal: 0x-prefixed bytes, a "string" or an
// integer. It returns each level's encoded inbox messages (without the
// StartOfLevel, InfoPerLevel and EndOfLevel the PVM adds).
func ParseInputs(raw []byte) ([][][]byte, error) {
	var levels [][]debuggerInput
	if err := json.Unmarshal(raw, &levels); err != nil {
		return nil, fmt.Errorf("inputs: %w", err)
	}
	out := make([][][]byte, len(levels))
	for l, msgs := range levels {
		for k, m := range msgs {
			at := fmt.Sprintf("inputs[%d][%d]", l, k)
			switch {
			case m.External != nil:
				b, err := hex.DecodeString(*m.External)
				if err != nil {
					return nil, fmt.Errorf("%s.external: %w", at, err)
				}
				out[l] = append(out[l], External(b))
			case m.Payload != nil:
				payload, err := michelineLiteral(*m.Payload)
				if err != nil {
					return nil, fmt.Errorf("%s.payload: %w", at, err)
				}
				sender, err := tezos.ParseContract(m.Sender)
				if err != nil {
					return nil, fmt.Errorf("%s.sender: %w", at, err)
				}
				source, err := tezos.ParseImplicit(m.Source)
				if err != nil {
					return nil, fmt.Errorf("%s.source: %w", at, err)
				}
				dest, err := tezos.ParseRollup(m.Destination)
				if err != nil {
					return nil, fmt.Errorf("%s.destination: %w", at, err)
				}
				out[l] = append(out[l], Transfer(payload, sender, source, dest))
			default:
				return nil, fmt.Errorf("%s: neither external nor payload", at)
			}
		}
	}
	return out, nil
}

func michelineLiteral(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(s, "0x"):
		b, err := hex.DecodeString(s[2:])
		if err != nil {
			return nil, err
		}
		return MichelineBytes(b), nil
	case strings.HasPrefix(s, `"`):
		v, err := strconv.Unquote(s)
		if err != nil {
			return nil, err
		}
		return MichelineString(v), nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("supported literals: 0x bytes, a quoted string, an integer; got %q", s)
	}
	return MichelineInt(v), nil
}
