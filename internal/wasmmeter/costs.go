package wasmmeter

// Costs gives the ticks of one instruction (by opcode; Sub is the 0xFC
// sub-opcode when Op == 0xFC).
type Costs interface {
	Ticks(op byte, sub uint32) uint64
}

// frameCoster is implemented by cost tables that also charge the set-up of
// a function's frame, which depends on the callee's parameters and locals.
// Instrument adds it to the cost of every function's entry block.
type frameCoster interface {
	frameTicks(params, locals uint64) uint64
}

// Octez is the cost table modelled on octez's tick model: the WASM PVM of
// tezos/tezos-mirror counts one tick per small step of its interpreter
// (src/lib_scoru_wasm/wasm_vm.ml, compute_step: current_tick + 1), and the
// interpreter's steps are those of src/lib_webassembly/exec/eval.ml
// (frame_step / label_step / invoke_step; per-byte costs of bulk memory and
// reveals in src/lib_webassembly/exec/tick_model.ml). Counting the steps of
// eval.ml gives:
//
//   - any instruction: 6 ticks (3 to fetch it from its block, 3 to run it);
//   - if: 9 (it then runs the chosen arm as a block: 3 more);
//   - else and end (leaving the arm or block): 7 (3 to find the block's
//     end, 4 to pop the label), plus one per value moved (below);
//   - br: 10 (6, then 4 to unwind into the target label);
//   - br_if: 6 (when not taken; see below);
//   - br_table: 13 (6, 3 for the br it turns into, 4 to unwind);
//   - return: 11;
//   - call, call_indirect: 11, plus, at the callee's entry, 3 + 2·(params +
//     locals) to build the frame (charged in the callee's entry block, since
//     only the callee knows its locals). Host functions are charged by the
//     host, not here.
//
// Where our count differs from octez's. Every difference below makes our
// count lower than octez's, never higher (except a block cut short by a
// trap, which is charged whole, but a trap ends the run anyway):
//
//   - leaving a block, an arm, a function (end, else, br, br_if, br_table,
//     return) moves the label's result values and the enclosing label's
//     operand stack one tick per value; we count none (0-2 ticks per exit in
//     compiled code, whose operand stack is usually empty at block ends);
//   - a branch that crosses k > 0 labels costs 3·k more, one to a loop 3
//     more (the loop is re-entered), a taken br_if 7 more (so 10 more for
//     the usual loop back edge `br_if 0`): our count of such a loop is low
//     by 10 ticks per iteration, about 10% of a 15-instruction loop body;
//   - the end of a function costs 1 more than that of a block, and an if
//     without else whose condition is false skips its end (7) in our count;
//   - memory.copy, memory.fill, memory.init and the table bulk operations
//     cost 48, 42 or 42 ticks per byte (per element) in octez; we charge a
//     fixed 6 (our kernels have no bulk memory: the PVM rejects it);
//     memory.grow is one step in octez too, whatever the size.
//
// So on loop-heavy code our count is typically 5–15% below octez's; on
// straight-line and call-heavy code within a few percent. Float
// instructions cost 6 like any other.
var Octez Costs = octez{}

type octez struct{}

func (octez) Ticks(op byte, sub uint32) uint64 {
	switch op {
	case 0x04: // if
		return 9
	case 0x05, 0x0b: // else, end
		return 7
	case 0x0c: // br
		return 10
	case 0x0e: // br_table
		return 13
	case 0x0f: // return
		return 11
	case 0x10, 0x11: // call, call_indirect
		return 11
	}
	return 6
}

func (octez) frameTicks(params, locals uint64) uint64 { return 3 + 2*(params+locals) }

// entryTicks is the extra cost of entering a function with these parameters
// and locals under c.
func entryTicks(c Costs, params, locals uint64) uint64 {
	if f, ok := c.(frameCoster); ok {
		return f.frameTicks(params, locals)
	}
	return 0
}
