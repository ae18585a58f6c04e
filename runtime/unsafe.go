//go:build cgo

package runtime

import "unsafe"

// u16Bytes views half-precision bits as bytes without copying, so the Go
// slice the caller holds is the tensor's memory.
func u16Bytes(d []uint16) []byte {
	if len(d) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&d[0])), 2*len(d))
}

func bytesU16(b []byte) []uint16 {
	if len(b) < 2 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), len(b)/2)
}
