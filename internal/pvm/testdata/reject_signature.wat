(module
  (import "smart_rollup_core" "write_debug" (func (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "kernel_run")))
