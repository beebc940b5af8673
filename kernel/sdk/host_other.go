//go:build !wasip1

package sdk

// ReadInput is only available in the PVM.
func ReadInput() (Message, bool, error) { return Message{}, false, ErrNotWasm }

// WriteOutput is only available in the PVM.
func WriteOutput([]byte) error { return ErrNotWasm }

// Debug is only available in the PVM; elsewhere it does nothing.
func Debug(string) {}

// Read is only available in the PVM.
func Read(string) ([]byte, bool, error) { return nil, false, ErrNotWasm }

// Write is only available in the PVM.
func Write(string, []byte) error { return ErrNotWasm }
