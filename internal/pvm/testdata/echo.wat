;; Echo kernel: every input goes to the outbox and the debug log; counts
;; the inputs it has read in /counter (a 4-byte little-endian value).
(module
  (import "smart_rollup_core" "read_input" (func $read_input (param i32 i32 i32) (result i32)))
  (import "smart_rollup_core" "write_output" (func $write_output (param i32 i32) (result i32)))
  (import "smart_rollup_core" "write_debug" (func $write_debug (param i32 i32)))
  (import "smart_rollup_core" "store_read" (func $store_read (param i32 i32 i32 i32 i32) (result i32)))
  (import "smart_rollup_core" "store_write" (func $store_write (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "/counter")
  (func (export "kernel_run") (local $n i32)
    ;; counter at 16 (0 if absent: store_read returns -3 and leaves it)
    (drop (call $store_read (i32.const 0) (i32.const 8) (i32.const 0) (i32.const 16) (i32.const 4)))
    (block $done
      (loop $next
        (local.set $n (call $read_input (i32.const 32) (i32.const 64) (i32.const 4096)))
        (br_if $done (i32.le_s (local.get $n) (i32.const 0)))
        (drop (call $write_output (i32.const 64) (local.get $n)))
        (call $write_debug (i32.const 64) (local.get $n))
        (i32.store (i32.const 16) (i32.add (i32.load (i32.const 16)) (i32.const 1)))
        (br $next)))
    (drop (call $store_write (i32.const 0) (i32.const 8) (i32.const 0) (i32.const 16) (i32.const 4)))))
