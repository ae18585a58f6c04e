//go:build cgo

package runtime

import (
	"fmt"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/ortrain/ortrain/internal/dims"
)

// DType is a tensor element type of the tensors this package makes.
type DType int

// Element types.
const (
	Float32 DType = iota + 1
	Float16
	Int64
	Bool
	Other
)

func (d DType) String() string {
	switch d {
	case Float32:
		return "float32"
	case Float16:
		return "float16"
	case Int64:
		return "int64"
	case Bool:
		return "bool"
	}
	return "other"
}

func dtypeOf(t ort.TensorElementDataType) DType {
	switch t {
	case ort.TensorElementDataTypeFloat:
		return Float32
	case ort.TensorElementDataTypeFloat16:
		return Float16
	case ort.TensorElementDataTypeInt64:
		return Int64
	case ort.TensorElementDataTypeBool:
		return Bool
	}
	return Other
}

// Tensor is a CPU tensor whose memory Go owns; ONNX Runtime reads inputs
// from it and writes pre-allocated outputs into it.
type Tensor struct {
	value ort.Value
	dtype DType
	shape []int64
	f32   *ort.Tensor[float32]
	i64   *ort.Tensor[int64]
	bl    *ort.Tensor[bool]
	f16   *ort.CustomDataTensor
}

// MaxElements bounds a tensor this package allocates (16 GiB of float32):
// a larger shape is a mistake, reported instead of crashing the process.
const MaxElements = 1 << 32

// NewFloat32 wraps data (not copied) as a tensor of the given shape; nil data
// allocates zeros.
func NewFloat32(shape []int64, data []float32) (*Tensor, error) {
	t, err := newGoTensor(shape, data, "float32")
	if err != nil {
		return nil, err
	}
	return &Tensor{value: t, dtype: Float32, shape: append([]int64{}, shape...), f32: t}, nil
}

// NewInt64 wraps int64 data (not copied); nil data allocates zeros.
func NewInt64(shape []int64, data []int64) (*Tensor, error) {
	t, err := newGoTensor(shape, data, "int64")
	if err != nil {
		return nil, err
	}
	return &Tensor{value: t, dtype: Int64, shape: append([]int64{}, shape...), i64: t}, nil
}

// NewBool allocates a bool tensor (for flags such as "all gradients finite").
func NewBool(shape []int64) (*Tensor, error) {
	t, err := newGoTensor[bool](shape, nil, "bool")
	if err != nil {
		return nil, err
	}
	return &Tensor{value: t, dtype: Bool, shape: append([]int64{}, shape...), bl: t}, nil
}

// newGoTensor makes an ONNX Runtime tensor over Go memory: data when given
// (its length must match the shape), else zeros.
func newGoTensor[T float32 | int64 | bool](shape []int64, data []T, what string) (*ort.Tensor[T], error) {
	if !ort.IsInitialized() {
		return nil, errNotInit
	}
	n, err := dims.Count(shape, MaxElements)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("%s tensor of shape %v is empty", what, shape)
	}
	if data == nil {
		data = make([]T, n)
	}
	if int64(len(data)) != n {
		return nil, fmt.Errorf("%s tensor of shape %v needs %d values, got %d", what, shape, n, len(data))
	}
	t, err := ort.NewTensor(ort.NewShape(shape...), data)
	if err != nil {
		return nil, fmt.Errorf("%s tensor %v: %w", what, shape, err)
	}
	return t, nil
}

// NewFloat16 wraps IEEE half-precision bits (not copied); nil data allocates
// zeros. Use it for fp16 outputs too: pre-allocated, they come back whole.
func NewFloat16(shape []int64, data []uint16) (*Tensor, error) {
	if !ort.IsInitialized() {
		return nil, errNotInit
	}
	n, err := dims.Count(shape, MaxElements)
	if err != nil {
		return nil, err
	}
	if data == nil {
		data = make([]uint16, n)
	}
	if int64(len(data)) != n || n == 0 {
		return nil, fmt.Errorf("float16 tensor of shape %v needs %d values, got %d", shape, n, len(data))
	}
	t, err := ort.NewCustomDataTensor(ort.NewShape(shape...), u16Bytes(data), ort.TensorElementDataTypeFloat16)
	if err != nil {
		return nil, fmt.Errorf("float16 tensor %v: %w", shape, err)
	}
	return &Tensor{value: t, dtype: Float16, shape: append([]int64{}, shape...), f16: t}, nil
}

// DType is the element type.
func (t *Tensor) DType() DType { return t.dtype }

// Shape is the tensor's shape.
func (t *Tensor) Shape() []int64 { return t.shape }

// Float32s is the live data of a float32 tensor (nil for other types).
func (t *Tensor) Float32s() []float32 {
	if t.f32 == nil {
		return nil
	}
	return t.f32.GetData()
}

// Int64s is the live data of an int64 tensor (nil for other types).
func (t *Tensor) Int64s() []int64 {
	if t.i64 == nil {
		return nil
	}
	return t.i64.GetData()
}

// Bools is the live data of a bool tensor (nil for other types).
func (t *Tensor) Bools() []bool {
	if t.bl == nil {
		return nil
	}
	return t.bl.GetData()
}

// Float16s is the live data of a float16 tensor as IEEE half bits
// (graphgen.HalfToFloat32 converts them).
func (t *Tensor) Float16s() []uint16 {
	if t.f16 == nil {
		return nil
	}
	return bytesU16(t.f16.GetData())
}

// Destroy releases the ONNX Runtime value.
func (t *Tensor) Destroy() {
	if t != nil && t.value != nil {
		t.value.Destroy()
		t.value = nil
	}
}
