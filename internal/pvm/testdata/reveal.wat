;; Reveals a preimage by its 33-byte hash (tag 0x00 = BLAKE2b-256 of
;; "hello preimage") with reveal_preimage and with reveal, and stores both
;; results and the Merkle hash of /p.
(module
  (import "smart_rollup_core" "reveal_preimage" (func $reveal_preimage (param i32 i32 i32 i32) (result i32)))
  (import "smart_rollup_core" "reveal" (func $reveal (param i32 i32 i32 i32) (result i32)))
  (import "smart_rollup_core" "store_write" (func $store_write (param i32 i32 i32 i32 i32) (result i32)))
  (import "smart_rollup_core" "__internal_store_get_hash" (func $get_hash (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\00\44\89\73\31\77\24\8d\85\8b\be\53\6e\7e\9e\9a\a0\63\46\c4\9c\9b\4c\b9\e2\d0\3c\f5\9a\18\cb\9a\84")
  (data (i32.const 40) "/p")
  (data (i32.const 44) "/q")
  (data (i32.const 48) "/h")
  (data (i32.const 300) "\00\00\44\89\73\31\77\24\8d\85\8b\be\53\6e\7e\9e\9a\a0\63\46\c4\9c\9b\4c\b9\e2\d0\3c\f5\9a\18\cb\9a\84")
  (func (export "kernel_run") (local $n i32)
    (local.set $n (call $reveal_preimage (i32.const 0) (i32.const 33) (i32.const 64) (i32.const 200)))
    (drop (call $store_write (i32.const 40) (i32.const 2) (i32.const 0) (i32.const 64) (local.get $n)))
    (local.set $n (call $reveal (i32.const 300) (i32.const 34) (i32.const 64) (i32.const 5)))
    (drop (call $store_write (i32.const 44) (i32.const 2) (i32.const 0) (i32.const 64) (local.get $n)))
    (drop (call $get_hash (i32.const 40) (i32.const 2) (i32.const 400) (i32.const 32)))
    (drop (call $store_write (i32.const 48) (i32.const 2) (i32.const 0) (i32.const 400) (i32.const 32)))))
