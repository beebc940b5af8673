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

// Has is only available in the PVM.
func Has(string) (bool, bool, error) { return false, false, ErrNotWasm }

// Delete is only available in the PVM.
func Delete(string) error { return ErrNotWasm }

// Copy is only available in the PVM.
func Copy(string, string) error { return ErrNotWasm }

// Move is only available in the PVM.
func Move(string, string) error { return ErrNotWasm }

// Children is only available in the PVM.
func Children(string) (int64, error) { return 0, ErrNotWasm }

// RevealPreimage is only available in the PVM.
func RevealPreimage([33]byte, int) ([]byte, error) { return nil, ErrNotWasm }

// Metadata is only available in the PVM.
func Metadata() ([20]byte, uint32, error) { return [20]byte{}, 0, ErrNotWasm }
