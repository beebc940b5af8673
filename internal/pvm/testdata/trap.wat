;; Traps on every run.
(module
  (memory (export "memory") 1)
  (func (export "kernel_run") unreachable))
