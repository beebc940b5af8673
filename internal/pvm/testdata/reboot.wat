;; Reads one input per kernel_run and asks for a reboot while inputs remain;
;; counts runs in /runs.
(module
  (import "smart_rollup_core" "read_input" (func $read_input (param i32 i32 i32) (result i32)))
  (import "smart_rollup_core" "store_read" (func $store_read (param i32 i32 i32 i32 i32) (result i32)))
  (import "smart_rollup_core" "store_write" (func $store_write (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "/runs")
  (data (i32.const 8) "/kernel/env/reboot")
  (func (export "kernel_run")
    (drop (call $store_read (i32.const 0) (i32.const 5) (i32.const 0) (i32.const 32) (i32.const 4)))
    (i32.store (i32.const 32) (i32.add (i32.load (i32.const 32)) (i32.const 1)))
    (drop (call $store_write (i32.const 0) (i32.const 5) (i32.const 0) (i32.const 32) (i32.const 4)))
    (if (i32.gt_s (call $read_input (i32.const 40) (i32.const 64) (i32.const 4096)) (i32.const 0))
      (then (drop (call $store_write (i32.const 8) (i32.const 18) (i32.const 0) (i32.const 0) (i32.const 0)))))))
