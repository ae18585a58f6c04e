package graphgen

import (
	"fmt"

	"github.com/ortrain/ortrain/graphgen/onnxpb"
)

// DType is an ONNX tensor element type; the values are those of
// TensorProto.DataType.
type DType int32

// The element types the project emits.
const (
	Undefined DType = 0
	Float     DType = 1
	Uint8     DType = 2
	Int8      DType = 3
	Int32     DType = 6
	Int64     DType = 7
	Bool      DType = 9
	Float16   DType = 10
	Double    DType = 11
)

func (d DType) String() string {
	switch d {
	case Float:
		return "float32"
	case Uint8:
		return "uint8"
	case Int8:
		return "int8"
	case Int32:
		return "int32"
	case Int64:
		return "int64"
	case Bool:
		return "bool"
	case Float16:
		return "float16"
	case Double:
		return "float64"
	}
	return fmt.Sprintf("dtype(%d)", int32(d))
}

// Size is the element size in bytes (0 for an unknown type).
func (d DType) Size() int {
	switch d {
	case Uint8, Int8, Bool:
		return 1
	case Float16:
		return 2
	case Float, Int32:
		return 4
	case Int64, Double:
		return 8
	}
	return 0
}

// IsFloat reports whether d is a floating-point type (gradients flow only
// through these).
func (d DType) IsFloat() bool { return d == Float || d == Float16 || d == Double }

func (d DType) proto() int32 { return int32(d) }

var _ = onnxpb.TensorProto_FLOAT // the constants above mirror these
