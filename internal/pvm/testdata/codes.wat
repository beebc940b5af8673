;; Calls host functions with good and bad arguments and stores each return
;; code (i32, little-endian) in order at /codes.
(module
  (import "smart_rollup_core" "store_write" (func $store_write (param i32 i32 i32 i32 i32) (result i32)))
  (import "smart_rollup_core" "store_read" (func $store_read (param i32 i32 i32 i32 i32) (result i32)))
  (import "smart_rollup_core" "store_has" (func $store_has (param i32 i32) (result i32)))
  (import "smart_rollup_core" "store_exists" (func $store_exists (param i32 i32) (result i32)))
  (import "smart_rollup_core" "store_create" (func $store_create (param i32 i32 i32) (result i32)))
  (import "smart_rollup_core" "store_delete" (func $store_delete (param i32 i32) (result i32)))
  (import "smart_rollup_core" "store_delete_value" (func $store_delete_value (param i32 i32) (result i32)))
  (import "smart_rollup_core" "store_copy" (func $store_copy (param i32 i32 i32 i32) (result i32)))
  (import "smart_rollup_core" "store_move" (func $store_move (param i32 i32 i32 i32) (result i32)))
  (import "smart_rollup_core" "store_value_size" (func $store_value_size (param i32 i32) (result i32)))
  (import "smart_rollup_core" "store_list_size" (func $store_list_size (param i32 i32) (result i64)))
  (import "smart_rollup_core" "store_get_nth_key" (func $store_get_nth_key (param i32 i32 i64 i32 i32) (result i32)))
  (import "smart_rollup_core" "write_output" (func $write_output (param i32 i32) (result i32)))
  (import "smart_rollup_core" "reveal_metadata" (func $reveal_metadata (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; paths
  (data (i32.const 0) "/a/b")          ;; 0, len 4
  (data (i32.const 8) "/a")            ;; 8, len 2
  (data (i32.const 16) "/readonly/x")  ;; 16, len 11
  (data (i32.const 32) "bad")          ;; 32, len 3 (no leading slash)
  (data (i32.const 40) "/c")           ;; 40, len 2
  (data (i32.const 48) "/codes")       ;; 48, len 6
  (data (i32.const 56) "/a//b")        ;; 56, len 5 (empty segment)
  (data (i32.const 64) "hello")        ;; 64, len 5
  (global $i (mut i32) (i32.const 1024))
  (func $rec (param $v i32)
    (i32.store (global.get $i) (local.get $v))
    (global.set $i (i32.add (global.get $i) (i32.const 4))))
  (func (export "kernel_run")
    (call $rec (call $store_write (i32.const 0) (i32.const 4) (i32.const 0) (i32.const 64) (i32.const 5)))   ;; 0
    (call $rec (call $store_has (i32.const 0) (i32.const 4)))                                               ;; 1 (value)
    (call $rec (call $store_has (i32.const 8) (i32.const 2)))                                               ;; 2 (subtree)
    (call $rec (call $store_read (i32.const 0) (i32.const 4) (i32.const 1) (i32.const 512) (i32.const 100))) ;; 4 bytes
    (call $rec (call $store_read (i32.const 0) (i32.const 4) (i32.const 9) (i32.const 512) (i32.const 1)))   ;; -4 offset
    (call $rec (call $store_read (i32.const 0) (i32.const 4) (i32.const 0) (i32.const 512) (i32.const 4096))) ;; -7 > 2048
    (call $rec (call $store_read (i32.const 40) (i32.const 2) (i32.const 0) (i32.const 512) (i32.const 1)))  ;; -3 no value
    (call $rec (call $store_write (i32.const 16) (i32.const 11) (i32.const 0) (i32.const 64) (i32.const 5))) ;; -9 readonly
    (call $rec (call $store_write (i32.const 32) (i32.const 3) (i32.const 0) (i32.const 64) (i32.const 5)))  ;; -2 invalid key
    (call $rec (call $store_write (i32.const 56) (i32.const 5) (i32.const 0) (i32.const 64) (i32.const 5)))  ;; -2 empty segment
    (call $rec (call $store_write (i32.const 0) (i32.const 4) (i32.const 99) (i32.const 64) (i32.const 5))) ;; -4 offset > size
    (call $rec (call $store_write (i32.const 0) (i32.const 4) (i32.const 0) (i32.const 65535) (i32.const 10))) ;; -6 memory
    (call $rec (call $store_create (i32.const 0) (i32.const 4) (i32.const 3)))                              ;; -13 exists
    (call $rec (call $store_create (i32.const 40) (i32.const 2) (i32.const 3)))                             ;; 0
    (call $rec (call $store_value_size (i32.const 40) (i32.const 2)))                                       ;; 3
    (call $rec (call $store_copy (i32.const 8) (i32.const 2) (i32.const 40) (i32.const 2)))                 ;; 0: /c := /a
    (call $rec (call $store_value_size (i32.const 40) (i32.const 2)))                                       ;; -3 (no value at /c now)
    (call $rec (i32.wrap_i64 (call $store_list_size (i32.const 40) (i32.const 2))))                         ;; 1 (child b)
    (call $rec (call $store_get_nth_key (i32.const 40) (i32.const 2) (i64.const 0) (i32.const 600) (i32.const 10))) ;; 1 ("b")
    (call $rec (call $store_get_nth_key (i32.const 40) (i32.const 2) (i64.const 5) (i32.const 600) (i32.const 10))) ;; -12
    (call $rec (call $store_move (i32.const 40) (i32.const 2) (i32.const 16) (i32.const 11)))               ;; -9 to readonly
    (call $rec (call $store_delete_value (i32.const 0) (i32.const 4)))                                      ;; 0
    (call $rec (call $store_exists (i32.const 0) (i32.const 4)))                                            ;; 0
    (call $rec (call $store_delete (i32.const 40) (i32.const 2)))                                           ;; 0
    (call $rec (call $store_exists (i32.const 40) (i32.const 2)))                                           ;; 0
    (call $rec (call $write_output (i32.const 64) (i32.const 5000)))                                        ;; -7 too large
    (call $rec (call $reveal_metadata (i32.const 700) (i32.const 24)))                                      ;; 24
    (drop (call $store_write (i32.const 48) (i32.const 6) (i32.const 0) (i32.const 1024)
      (i32.sub (global.get $i) (i32.const 1024))))))
