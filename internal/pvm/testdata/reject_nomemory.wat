(module
  (memory 1)
  (func (export "kernel_run")))
