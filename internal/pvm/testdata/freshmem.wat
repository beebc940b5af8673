;; Every kernel_run must start from fresh memory (zeroes past the data
;; segments), however the host backs it: this kernel records at /seen the
;; sum of a byte it dirties in its initial page and one in a page it grows,
;; so /seen is 0 after every level.
(module
  (import "smart_rollup_core" "store_write"
    (func $store_write (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "/seen")
  (func (export "kernel_run")
    (drop (memory.grow (i32.const 1)))
    (i32.store8 (i32.const 16)
      (i32.add (i32.load8_u (i32.const 100)) (i32.load8_u (i32.const 65636))))
    (drop (call $store_write (i32.const 0) (i32.const 5) (i32.const 0) (i32.const 16) (i32.const 1)))
    (i32.store8 (i32.const 100) (i32.const 7))
    (i32.store8 (i32.const 65636) (i32.const 9))))
