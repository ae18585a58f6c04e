package graphgen

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/ortrain/ortrain/graphgen/onnxpb"
	"github.com/ortrain/ortrain/internal/atomicfile"
)

// ModelInfo is what a ModelProto carries besides the graph.
type ModelInfo struct {
	Doc             string
	ProducerVersion string
	Domain          string
	ModelVersion    int64
	// Metadata are key/value pairs (metadata_props), kept in order.
	Metadata [][2]string
}

// Producer is the producer_name written into every model.
const Producer = "ortrain"

// irVersion is the lowest IR version that carries the opset, so that older
// runtimes load the model (ONNX's own table: opset 17 and 18 go with IR 8).
func irVersion(opset int64) int64 {
	switch {
	case opset <= 18:
		return 8
	case opset <= 20:
		return 9
	}
	return 10
}

// Model validates the graph and converts it to a ModelProto.
func (g *Graph) Model(info ModelInfo) (*onnxpb.ModelProto, error) {
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("graph %s: %w", g.Name, err)
	}
	gp := &onnxpb.GraphProto{Name: proto.String(g.Name)}
	if g.Doc != "" {
		gp.DocString = proto.String(g.Doc)
	}
	for _, v := range g.Inputs {
		gp.Input = append(gp.Input, valueInfo(v))
	}
	isOutput := map[*Value]bool{}
	for _, v := range g.Outputs {
		gp.Output = append(gp.Output, valueInfo(v))
		isOutput[v] = true
	}
	for _, in := range append(append([]*Initializer{}, g.Inits...), g.Defaults...) {
		gp.Initializer = append(gp.Initializer, tensorProto(in.Value.Name, in.Tensor))
	}
	for _, n := range g.Nodes {
		np, err := nodeProto(n)
		if err != nil {
			return nil, fmt.Errorf("graph %s: %w", g.Name, err)
		}
		gp.Node = append(gp.Node, np)
		for _, o := range n.Outputs {
			if !isOutput[o] && o.Shape != nil {
				gp.ValueInfo = append(gp.ValueInfo, valueInfo(o))
			}
		}
	}
	m := &onnxpb.ModelProto{
		IrVersion:    proto.Int64(irVersion(g.Opset)),
		ProducerName: proto.String(Producer),
		OpsetImport:  []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(g.Opset)}},
		Graph:        gp,
	}
	// Operators of other domains (ONNX Runtime's contrib operators) are
	// imported at version 1, the only version those domains have.
	seen := map[string]bool{"": true}
	for _, n := range g.Nodes {
		if !seen[n.Domain] {
			seen[n.Domain] = true
			m.OpsetImport = append(m.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: proto.String(n.Domain), Version: proto.Int64(1)})
		}
	}
	if info.ProducerVersion != "" {
		m.ProducerVersion = proto.String(info.ProducerVersion)
	}
	if info.Domain != "" {
		m.Domain = proto.String(info.Domain)
	}
	if info.ModelVersion != 0 {
		m.ModelVersion = proto.Int64(info.ModelVersion)
	}
	if info.Doc != "" {
		m.DocString = proto.String(info.Doc)
	}
	for _, kv := range info.Metadata {
		m.MetadataProps = append(m.MetadataProps, &onnxpb.StringStringEntryProto{Key: proto.String(kv[0]), Value: proto.String(kv[1])})
	}
	return m, nil
}

// MaxModelBytes is protobuf's limit on a message, so on an ONNX file that
// keeps its weights inside.
const MaxModelBytes = 1<<31 - 1

// Marshal serializes the graph as ONNX model bytes.
func (g *Graph) Marshal(info ModelInfo) ([]byte, error) {
	m, err := g.Model(info)
	if err != nil {
		return nil, err
	}
	if size := proto.Size(m); size > MaxModelBytes {
		return nil, fmt.Errorf("serialize %s: the model would take %d bytes; protobuf limits an ONNX file to 2 GiB (make the model smaller: fewer classes?)", g.Name, size)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("serialize %s: %w", g.Name, err)
	}
	return b, nil
}

// WriteFile serializes the graph to path atomically: it writes a temporary
// file beside path, syncs it and renames it, so an existing file is never left
// half-written.
func (g *Graph) WriteFile(path string, info ModelInfo) error {
	b, err := g.Marshal(info)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b)
}

func valueInfo(v *Value) *onnxpb.ValueInfoProto {
	tt := &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(v.DType.proto())}
	if v.Shape != nil {
		sh := &onnxpb.TensorShapeProto{Dim: []*onnxpb.TensorShapeProto_Dimension{}}
		for _, d := range v.Shape {
			dp := &onnxpb.TensorShapeProto_Dimension{}
			switch {
			case d.Known():
				dp.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d.Size}
			case d.Param != "":
				dp.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: d.Param}
			}
			sh.Dim = append(sh.Dim, dp)
		}
		tt.Shape = sh
	}
	return &onnxpb.ValueInfoProto{
		Name: proto.String(v.Name),
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: tt}},
	}
}

func tensorProto(name string, t *Tensor) *onnxpb.TensorProto {
	tp := &onnxpb.TensorProto{
		Dims:     append([]int64{}, t.Dims...),
		DataType: proto.Int32(t.DType.proto()),
		RawData:  t.rawBytes(),
	}
	if name != "" {
		tp.Name = proto.String(name)
	}
	return tp
}

func nodeProto(n *Node) (*onnxpb.NodeProto, error) {
	np := &onnxpb.NodeProto{Name: proto.String(n.Name), OpType: proto.String(n.Op)}
	if n.Domain != "" {
		np.Domain = proto.String(n.Domain)
	}
	for _, in := range n.Inputs {
		if in == nil {
			np.Input = append(np.Input, "")
		} else {
			np.Input = append(np.Input, in.Name)
		}
	}
	for _, o := range n.Outputs {
		np.Output = append(np.Output, o.Name)
	}
	for _, k := range sortedAttrNames(n.Attrs) {
		ap, err := attrProto(k, n.Attrs[k])
		if err != nil {
			return nil, fmt.Errorf("node %s (%s): %w", n.Name, n.Op, err)
		}
		np.Attribute = append(np.Attribute, ap)
	}
	return np, nil
}

func attrProto(name string, v any) (*onnxpb.AttributeProto, error) {
	a := &onnxpb.AttributeProto{Name: proto.String(name)}
	typ := func(t onnxpb.AttributeProto_AttributeType) *onnxpb.AttributeProto_AttributeType { return &t }
	switch x := v.(type) {
	case int:
		a.Type, a.I = typ(onnxpb.AttributeProto_INT), proto.Int64(int64(x))
	case int64:
		a.Type, a.I = typ(onnxpb.AttributeProto_INT), proto.Int64(x)
	case float32:
		a.Type, a.F = typ(onnxpb.AttributeProto_FLOAT), proto.Float32(x)
	case float64:
		a.Type, a.F = typ(onnxpb.AttributeProto_FLOAT), proto.Float32(float32(x))
	case string:
		a.Type, a.S = typ(onnxpb.AttributeProto_STRING), []byte(x)
	case []int64:
		a.Type, a.Ints = typ(onnxpb.AttributeProto_INTS), append([]int64{}, x...)
	case []float32:
		a.Type, a.Floats = typ(onnxpb.AttributeProto_FLOATS), append([]float32{}, x...)
	case []string:
		a.Type = typ(onnxpb.AttributeProto_STRINGS)
		for _, s := range x {
			a.Strings = append(a.Strings, []byte(s))
		}
	case *Tensor:
		a.Type, a.T = typ(onnxpb.AttributeProto_TENSOR), tensorProto("", x)
	default:
		return nil, fmt.Errorf("attribute %s has unsupported type %T", name, v)
	}
	return a, nil
}
