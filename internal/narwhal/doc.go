// Package narwhal defines the data of the Narwhal DAG mempool — batches,
// headers, votes, certificates, the committee and the node-to-node messages —
// and their one canonical binary encoding. Everything that is hashed or signed
// is hashed or signed over these bytes (never over protobuf), so the node, the
// deterministic simulator and the rollup kernel agree bit for bit.
//
// It is a protocol core: pure, deterministic, no goroutines, clock, sockets or
// randomness. The step functions in internal/worker, internal/primary and
// internal/bullshark, and the kernel, build on it. Golden vectors for every
// encoding live in testdata/.
//
// Deliberate differences from the Rust proof of concept (see DESIGN.md §4):
// the batch digest commits transaction boundaries; signer sets are sorted lists
// of distinct authorities, each with its own ed25519 signature (no aggregate,
// so no rogue-key attack and no proof of possession; the measurements behind
// ed25519 over BLS are in docs/consensus.md); the leader schedule is
// round-robin; the DKG system messages and worker ids are gone (one worker
// per authority).
package narwhal
