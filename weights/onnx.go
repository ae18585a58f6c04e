package weights

import (
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"

	"github.com/ortrain/ortrain/graphgen/onnxpb"
)

// maxONNX bounds an ONNX file read whole (protobuf's own limit is 2 GB).
const maxONNX = 2 << 30

// readONNX takes an ONNX model's floating-point initializers by name.
// Integer initializers are the graph's constants (shapes, axes), not
// weights, and are left out.
func readONNX(r io.ReaderAt, size int64) (Set, error) {
	if size > maxONNX {
		return nil, fmt.Errorf("%d bytes, more than an ONNX file can hold", size)
	}
	b := make([]byte, size)
	if _, err := r.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	var m onnxpb.ModelProto
	if err := proto.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("corrupt ONNX model: %v", err)
	}
	if m.GetGraph() == nil {
		return nil, errors.New("an ONNX model without a graph")
	}
	s := Set{}
	for _, t := range m.GetGraph().GetInitializer() {
		dtype, ok := onnxFloatTypes[t.GetDataType()]
		if !ok {
			continue
		}
		if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
			return nil, fmt.Errorf("initializer %s is stored outside the model file (external data): not supported", quoted(t.GetName()))
		}
		v, err := onnxFloats(t, dtype)
		if err != nil {
			return nil, fmt.Errorf("initializer %s: %v", quoted(t.GetName()), err)
		}
		s[t.GetName()] = Tensor{Shape: append([]int64{}, t.GetDims()...), Data: v}
	}
	return s, nil
}

var onnxFloatTypes = map[int32]string{
	int32(onnxpb.TensorProto_FLOAT):    "F32",
	int32(onnxpb.TensorProto_FLOAT16):  "F16",
	int32(onnxpb.TensorProto_BFLOAT16): "BF16",
	int32(onnxpb.TensorProto_DOUBLE):   "F64",
}

// onnxFloats decodes an initializer's values: raw little-endian bytes, or
// the typed field (float_data, double_data, or int32_data holding 16-bit
// values).
func onnxFloats(t *onnxpb.TensorProto, dtype string) ([]float32, error) {
	n, err := checkedElements(t.GetDims())
	if err != nil {
		return nil, err
	}
	if raw := t.GetRawData(); len(raw) > 0 {
		esize := int64(stSizes[dtype])
		if int64(len(raw)) != n*esize {
			return nil, fmt.Errorf("%d bytes for %d values", len(raw), n)
		}
		return decodeFloats(raw, dtype, int(n)), nil
	}
	// The typed fields are already in memory: their length is checked
	// before the values are converted.
	have := map[string]int{"F32": len(t.GetFloatData()), "F64": len(t.GetDoubleData())}[dtype]
	if dtype != "F32" && dtype != "F64" {
		have = len(t.GetInt32Data())
	}
	if int64(have) != n {
		return nil, fmt.Errorf("%d values for shape %v", have, t.GetDims())
	}
	v := make([]float32, 0, n)
	switch dtype {
	case "F32":
		v = append(v, t.GetFloatData()...)
	case "F64":
		for _, x := range t.GetDoubleData() {
			v = append(v, float32(x))
		}
	default:
		for _, x := range t.GetInt32Data() {
			b := []byte{byte(x), byte(x >> 8)}
			v = append(v, decodeFloat(b, dtype))
		}
	}
	return v, nil
}
