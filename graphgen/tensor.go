package graphgen

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Tensor is constant data held by the graph: an initializer or an attribute
// value. Exactly one of the data slices is set, matching DType: Float32 for
// Float, Int64 for Int64, Raw (little-endian bytes) for every other type.
type Tensor struct {
	DType   DType
	Dims    []int64
	Float32 []float32
	Int64   []int64
	Raw     []byte
}

// FloatTensor wraps float32 data of the given shape (not copied).
func FloatTensor(dims []int64, data []float32) *Tensor {
	return &Tensor{DType: Float, Dims: append([]int64{}, dims...), Float32: data}
}

// Int64Tensor wraps int64 data of the given shape (not copied).
func Int64Tensor(dims []int64, data []int64) *Tensor {
	return &Tensor{DType: Int64, Dims: append([]int64{}, dims...), Int64: data}
}

// ScalarTensor is a rank-0 tensor of type dt holding v (rounded to dt).
func ScalarTensor(dt DType, v float64) *Tensor {
	return FilledTensor(dt, nil, v)
}

// FilledTensor is a tensor of type dt and shape dims with every element v.
func FilledTensor(dt DType, dims []int64, v float64) *Tensor {
	n := int64(1)
	for _, d := range dims {
		if d < 0 || (d > 0 && n > (1<<40)/d) {
			// An impossible shape: an empty tensor that check() rejects.
			return &Tensor{DType: dt, Dims: append([]int64{}, dims...)}
		}
		n *= d
	}
	t := &Tensor{DType: dt, Dims: append([]int64{}, dims...)}
	switch dt {
	case Float:
		t.Float32 = make([]float32, n)
		for i := range t.Float32 {
			t.Float32[i] = float32(v)
		}
	case Int64:
		t.Int64 = make([]int64, n)
		for i := range t.Int64 {
			t.Int64[i] = int64(v)
		}
	default:
		t.Raw = make([]byte, int(n)*dt.Size())
		for i := int64(0); i < n; i++ {
			putScalar(t.Raw[int(i)*dt.Size():], dt, v)
		}
	}
	return t
}

// set stores v (rounded to the tensor's type) at flat index i.
func (t *Tensor) set(i int64, v float64) {
	switch t.DType {
	case Float:
		t.Float32[i] = float32(v)
	case Int64:
		t.Int64[i] = int64(v)
	default:
		putScalar(t.Raw[int(i)*t.DType.Size():], t.DType, v)
	}
}

func putScalar(b []byte, dt DType, v float64) {
	switch dt {
	case Float16:
		binary.LittleEndian.PutUint16(b, Float32ToHalf(float32(v)))
	case Double:
		binary.LittleEndian.PutUint64(b, math.Float64bits(v))
	case Int32:
		binary.LittleEndian.PutUint32(b, uint32(int32(v)))
	case Bool, Uint8:
		if dt == Bool && v != 0 {
			v = 1
		}
		b[0] = byte(v)
	case Int8:
		b[0] = byte(int8(v))
	}
}

// NumElements is the element count implied by Dims.
func (t *Tensor) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// Shape is the static shape of the tensor.
func (t *Tensor) Shape() Shape { return S(t.Dims...) }

// check verifies that the data matches the type and the shape.
func (t *Tensor) check() error {
	n := t.NumElements()
	switch t.DType {
	case Float:
		if int64(len(t.Float32)) != n {
			return fmt.Errorf("float tensor of shape %v holds %d values", t.Dims, len(t.Float32))
		}
	case Int64:
		if int64(len(t.Int64)) != n {
			return fmt.Errorf("int64 tensor of shape %v holds %d values", t.Dims, len(t.Int64))
		}
	default:
		if t.DType.Size() == 0 {
			return fmt.Errorf("unsupported tensor type %v", t.DType)
		}
		if int64(len(t.Raw)) != n*int64(t.DType.Size()) {
			return fmt.Errorf("%v tensor of shape %v holds %d bytes", t.DType, t.Dims, len(t.Raw))
		}
	}
	return nil
}

// rawBytes encodes the data little-endian, as TensorProto.raw_data wants.
func (t *Tensor) rawBytes() []byte {
	switch t.DType {
	case Float:
		b := make([]byte, 4*len(t.Float32))
		for i, v := range t.Float32 {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
		return b
	case Int64:
		b := make([]byte, 8*len(t.Int64))
		for i, v := range t.Int64 {
			binary.LittleEndian.PutUint64(b[8*i:], uint64(v))
		}
		return b
	}
	return t.Raw
}

// Float32ToHalf converts to IEEE 754 binary16 with round-to-nearest-even,
// keeping infinities and NaN.
func Float32ToHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff { // Inf or NaN
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign
		}
		mant |= 0x800000
		shift := uint32(14 - e)
		half := mant >> shift
		rem := mant & (1<<shift - 1)
		mid := uint32(1) << (shift - 1)
		if rem > mid || (rem == mid && half&1 == 1) {
			half++
		}
		return sign | uint16(half)
	}
	half := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && half&1 == 1) {
		half++ // may carry into the exponent, which is the right result
	}
	return sign | uint16(half)
}

// HalfToFloat32 converts IEEE 754 binary16 bits to float32 exactly.
func HalfToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0:
		if mant == 0 {
			return math.Float32frombits(sign)
		}
		// subnormal: normalize
		e := uint32(127 - 15 + 1)
		for mant&0x400 == 0 {
			mant <<= 1
			e--
		}
		mant &= 0x3ff
		return math.Float32frombits(sign | e<<23 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}
