;; memory.copy and memory.fill with overlaps in both directions and odd
;; lengths: the linker lowers them to helpers; the test compares memory
;; after kernel_run with the original run under the bulk-memory feature.
(module
  (memory (export "memory") 1)
  (func $init (export "_initialize")
    (local $i i32)
    (loop $l
      (i32.store8 (local.get $i) (i32.mul (local.get $i) (i32.const 7)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 4096)))))
  (func (export "kernel_run")
    (memory.copy (i32.const 100) (i32.const 103) (i32.const 61))   ;; forward overlap
    (memory.copy (i32.const 503) (i32.const 500) (i32.const 77))   ;; backward overlap
    (memory.copy (i32.const 1000) (i32.const 2000) (i32.const 5))  ;; short, disjoint
    (memory.copy (i32.const 3000) (i32.const 3001) (i32.const 800)) ;; long forward
    (memory.copy (i32.const 1601) (i32.const 1600) (i32.const 333)) ;; long backward
    (memory.fill (i32.const 2500) (i32.const 0x1ab) (i32.const 37))
    (memory.fill (i32.const 2600) (i32.const 9) (i32.const 3))
    (memory.copy (i32.const 10) (i32.const 10) (i32.const 16))))
