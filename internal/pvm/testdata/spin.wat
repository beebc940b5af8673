;; Never returns.
(module
  (memory (export "memory") 1)
  (func (export "kernel_run") (loop $l (br $l))))
