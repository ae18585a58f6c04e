package graphgen

import (
	"fmt"
	"math"
)

// inferRule sets the DType and Shape of a node's outputs from its inputs and
// attributes, or says why the node is malformed.
type inferRule func(g *Graph, n *Node) error

// inferRules holds shape inference for every operator the project emits.
// It is read-only after package initialization.
var inferRules = map[string]inferRule{}

func init() {
	for _, op := range []string{"Relu", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Abs",
		"Identity", "Sigmoid", "Tanh", "Floor", "Ceil", "Erf", "Softmax", "LogSoftmax", "Sign", "HardSigmoid",
		"ReorderInput", "ReorderOutput"} { // the last two: NchwcDomain, channels a multiple of the block
		inferRules[op] = inferUnary
	}
	for _, op := range []string{"IsInf", "IsNaN", "Not"} {
		inferRules[op] = inferUnaryBool
	}
	for _, op := range []string{"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean"} {
		inferRules[op] = inferBroadcast
	}
	for _, op := range []string{"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor"} {
		inferRules[op] = inferCompare
	}
	for _, op := range []string{"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp"} {
		inferRules[op] = inferReduce
	}
	inferRules["Cast"] = inferCast
	inferRules["Where"] = inferWhere
	inferRules["Conv"] = inferConv
	inferRules["ConvTranspose"] = inferConvTranspose
	inferRules["MaxPool"] = inferPool
	inferRules["AveragePool"] = inferPool
	inferRules["GlobalAveragePool"] = inferGlobalPool
	inferRules["GlobalMaxPool"] = inferGlobalPool
	inferRules["BatchNormalization"] = inferBatchNorm
	inferRules["Gemm"] = inferGemm
	inferRules["MatMul"] = inferMatMul
	inferRules["Flatten"] = inferFlatten
	inferRules["Reshape"] = inferReshape
	inferRules["Transpose"] = inferTranspose
	inferRules["Squeeze"] = inferSqueeze
	inferRules["Unsqueeze"] = inferUnsqueeze
	inferRules["Concat"] = inferConcat
	inferRules["Slice"] = inferSlice
	inferRules["Expand"] = inferExpand
	inferRules["Shape"] = inferShapeOp
	inferRules["ScatterElements"] = inferScatterElements
	inferRules["ConstantOfShape"] = inferConstantOfShape
	inferRules["Pad"] = inferPad
}

func needInputs(n *Node, min, max int) error {
	got := 0
	for i, in := range n.Inputs {
		if in != nil {
			got = i + 1
		}
	}
	for i := 0; i < min && i < len(n.Inputs); i++ {
		if n.Inputs[i] == nil {
			return fmt.Errorf("input %d is required but missing", i)
		}
	}
	if got < min || len(n.Inputs) > max {
		return fmt.Errorf("takes %d to %d inputs, got %d", min, max, len(n.Inputs))
	}
	return nil
}

func needOutputs(n *Node, min, max int) error {
	if len(n.Outputs) < min || len(n.Outputs) > max {
		return fmt.Errorf("has %d to %d outputs, asked for %d", min, max, len(n.Outputs))
	}
	return nil
}

func setOut(n *Node, i int, dt DType, s Shape) {
	n.Outputs[i].DType = dt
	n.Outputs[i].Shape = s
}

func inferUnary(g *Graph, n *Node) error {
	if err := needInputs(n, 1, 1); err != nil {
		return err
	}
	x := n.Inputs[0]
	if n.Op == "Softmax" || n.Op == "LogSoftmax" {
		if _, err := normAxis(n.Int("axis", -1), x.Shape.Rank()); err != nil && x.Shape != nil {
			return err
		}
	}
	setOut(n, 0, x.DType, x.Shape.Clone())
	return needOutputs(n, 1, 1)
}

func inferUnaryBool(g *Graph, n *Node) error {
	if err := needInputs(n, 1, 1); err != nil {
		return err
	}
	setOut(n, 0, Bool, n.Inputs[0].Shape.Clone())
	return nil
}

func broadcastAll(n *Node, from int) (Shape, error) {
	s := n.Inputs[from].Shape
	for _, in := range n.Inputs[from+1:] {
		var err error
		if s, err = broadcast(s, in.Shape); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func sameTypes(n *Node, from int) error {
	for _, in := range n.Inputs[from+1:] {
		if in.DType != n.Inputs[from].DType {
			return fmt.Errorf("mixed input types %v and %v", n.Inputs[from].DType, in.DType)
		}
	}
	return nil
}

func inferBroadcast(g *Graph, n *Node) error {
	switch n.Op {
	case "Max", "Min", "Sum", "Mean":
		return inferElementwise(n, 1, 1<<20, 0, n.Op != "Pow", Undefined)
	}
	return inferElementwise(n, 2, 2, 0, n.Op != "Pow", Undefined)
}

func inferCompare(g *Graph, n *Node) error { return inferElementwise(n, 2, 2, 0, true, Bool) }

func inferWhere(g *Graph, n *Node) error {
	if len(n.Inputs) > 0 && n.Inputs[0] != nil && n.Inputs[0].DType != Bool {
		return fmt.Errorf("condition must be bool, got %v", n.Inputs[0].DType)
	}
	return inferElementwise(n, 3, 3, 1, true, Undefined)
}

// inferElementwise checks the input count, that inputs from typeFrom on
// share a type (when sameType), and broadcasts all shapes; the output type is
// out, or that of input typeFrom when out is Undefined.
func inferElementwise(n *Node, min, max, typeFrom int, sameType bool, out DType) error {
	if err := needInputs(n, min, max); err != nil {
		return err
	}
	if sameType {
		if err := sameTypes(n, typeFrom); err != nil {
			return err
		}
	}
	s, err := broadcastAll(n, 0)
	if err != nil {
		return err
	}
	if out == Undefined {
		out = n.Inputs[typeFrom].DType
	}
	setOut(n, 0, out, s)
	return nil
}

func inferCast(g *Graph, n *Node) error {
	if err := needInputs(n, 1, 1); err != nil {
		return err
	}
	to := DType(n.Int("to", 0))
	if to.Size() == 0 {
		return fmt.Errorf("bad target type %d", to)
	}
	setOut(n, 0, to, n.Inputs[0].Shape.Clone())
	return nil
}

// constInts reads an int64 constant input (axes, shapes, slice bounds).
func constInts(g *Graph, v *Value) ([]int64, bool) {
	t := g.ConstData(v)
	if t == nil || t.DType != Int64 {
		return nil, false
	}
	return t.Int64, true
}

// reduceAxes reads a reduction's axes from the attribute (opset <= 17 for all
// but ReduceSum) or from the second input.
func reduceAxes(g *Graph, n *Node) ([]int64, bool, error) {
	if len(n.Inputs) > 1 && n.Inputs[1] != nil {
		axes, ok := constInts(g, n.Inputs[1])
		if !ok {
			return nil, false, fmt.Errorf("axes must be an int64 constant")
		}
		return axes, true, nil
	}
	if a := n.Ints("axes"); a != nil {
		return a, true, nil
	}
	return nil, false, nil
}

func inferReduce(g *Graph, n *Node) error {
	if err := needInputs(n, 1, 2); err != nil {
		return err
	}
	x := n.Inputs[0]
	axes, given, err := reduceAxes(g, n)
	if err != nil {
		return err
	}
	keep := n.Int("keepdims", 1) == 1
	if x.Shape == nil {
		setOut(n, 0, x.DType, nil)
		return nil
	}
	r := x.Shape.Rank()
	reduced := make([]bool, r)
	if !given || len(axes) == 0 {
		if n.Int("noop_with_empty_axes", 0) == 1 {
			setOut(n, 0, x.DType, x.Shape.Clone())
			return nil
		}
		for i := range reduced {
			reduced[i] = true
		}
	}
	for _, a := range axes {
		ax, err := normAxis(a, r)
		if err != nil {
			return err
		}
		reduced[ax] = true
	}
	out := Shape{}
	for i, d := range x.Shape {
		switch {
		case !reduced[i]:
			out = append(out, d)
		case keep:
			out = append(out, D(1))
		}
	}
	setOut(n, 0, x.DType, out)
	return nil
}

// dataAndConst reads a (data, int64 constant) input pair: Reshape's shape,
// Squeeze's and Unsqueeze's axes, Expand's shape.
func dataAndConst(g *Graph, n *Node, what string) (*Value, []int64, error) {
	if err := needInputs(n, 2, 2); err != nil {
		return nil, nil, err
	}
	c, ok := constInts(g, n.Inputs[1])
	if !ok {
		return nil, nil, fmt.Errorf("%s must be an int64 constant", what)
	}
	return n.Inputs[0], c, nil
}

// spatial reads kernel, strides, pads and dilations for k spatial dims.
type spatial struct {
	kernel, strides, dilations, padsBegin, padsEnd []int64
}

func readSpatial(n *Node, k int, kernel []int64) (spatial, error) {
	sp := spatial{kernel: kernel}
	if ap := n.Str("auto_pad", "NOTSET"); ap != "NOTSET" {
		return sp, fmt.Errorf("auto_pad %s is not supported; give explicit pads", ap)
	}
	if len(kernel) != k {
		return sp, fmt.Errorf("kernel has %d dims, input has %d spatial dims", len(kernel), k)
	}
	ones := func() []int64 {
		s := make([]int64, k)
		for i := range s {
			s[i] = 1
		}
		return s
	}
	sp.strides, sp.dilations = ones(), ones()
	if s := n.Ints("strides"); s != nil {
		sp.strides = s
	}
	if d := n.Ints("dilations"); d != nil {
		sp.dilations = d
	}
	pads := n.Ints("pads")
	if pads == nil {
		pads = make([]int64, 2*k)
	}
	if len(sp.strides) != k || len(sp.dilations) != k || len(pads) != 2*k {
		return sp, fmt.Errorf("strides %v, dilations %v or pads %v do not fit %d spatial dims", sp.strides, sp.dilations, pads, k)
	}
	sp.padsBegin, sp.padsEnd = pads[:k], pads[k:]
	for i := 0; i < k; i++ {
		if sp.strides[i] < 1 || sp.dilations[i] < 1 || kernel[i] < 1 || sp.padsBegin[i] < 0 || sp.padsEnd[i] < 0 {
			return sp, fmt.Errorf("bad kernel %v, strides %v, dilations %v or pads %v", kernel, sp.strides, sp.dilations, pads)
		}
	}
	return sp, nil
}

// pads is the pads attribute again: begin values, then end values (a new
// slice).
func (sp spatial) pads() []int64 {
	return append(append([]int64{}, sp.padsBegin...), sp.padsEnd...)
}

// outDim is the output length of a sliding window, with ONNX's and PyTorch's
// ceil_mode rule (a last window starting inside the end padding is dropped).
func (sp spatial) outDim(i int, in Dim, ceil bool) (Dim, error) {
	if !in.Known() {
		return Unknown(), nil
	}
	span := in.Size + sp.padsBegin[i] + sp.padsEnd[i] - (sp.kernel[i]-1)*sp.dilations[i] - 1
	if span < 0 {
		return Dim{}, fmt.Errorf("window %d (dilation %d) larger than padded input %d", sp.kernel[i], sp.dilations[i], in.Size)
	}
	var out int64
	if ceil {
		out = int64(math.Ceil(float64(span)/float64(sp.strides[i]))) + 1
		if (out-1)*sp.strides[i] >= in.Size+sp.padsBegin[i] {
			out--
		}
	} else {
		out = span/sp.strides[i] + 1
	}
	return D(out), nil
}

func needRank(v *Value, what string, min int) error {
	if v.Shape == nil {
		return fmt.Errorf("%s %q has unknown rank", what, v.Name)
	}
	if v.Shape.Rank() < min {
		return fmt.Errorf("%s %q has rank %d, need at least %d", what, v.Name, v.Shape.Rank(), min)
	}
	return nil
}

func inferConv(g *Graph, n *Node) error {
	if err := needInputs(n, 2, 3); err != nil {
		return err
	}
	x, w, k, sp, group, err := convPrologue(n)
	if err != nil {
		return err
	}
	if x.Shape[1].Known() && w.Shape[1].Known() && x.Shape[1].Size != w.Shape[1].Size*group {
		return fmt.Errorf("input has %d channels, weight %v with group %d wants %d", x.Shape[1].Size, w.Shape, group, w.Shape[1].Size*group)
	}
	if w.Shape[0].Known() && w.Shape[0].Size%group != 0 {
		return fmt.Errorf("%d output channels not divisible by group %d", w.Shape[0].Size, group)
	}
	if b := optInput(n, 2); b != nil && (b.Shape.Rank() != 1 || !b.Shape[0].same(w.Shape[0])) {
		return fmt.Errorf("bias %v does not fit weight %v", b.Shape, w.Shape)
	}
	out := Shape{x.Shape[0], w.Shape[0]}
	for i := 0; i < k; i++ {
		d, err := sp.outDim(i, x.Shape[2+i], false)
		if err != nil {
			return err
		}
		out = append(out, d)
	}
	setOut(n, 0, x.DType, out)
	return nil
}

// convPrologue reads and checks what Conv and ConvTranspose share: input and
// weight of matching rank and type, the window attributes, the group.
func convPrologue(n *Node) (x, w *Value, k int, sp spatial, group int64, err error) {
	x, w = n.Inputs[0], n.Inputs[1]
	if err = needRank(x, "input", 3); err != nil {
		return
	}
	if err = needRank(w, "weight", 3); err != nil {
		return
	}
	if x.DType != w.DType {
		err = fmt.Errorf("input %v and weight %v types differ", x.DType, w.DType)
		return
	}
	k = x.Shape.Rank() - 2
	if w.Shape.Rank() != k+2 {
		err = fmt.Errorf("weight %v does not fit input %v", w.Shape, x.Shape)
		return
	}
	kernel := n.Ints("kernel_shape")
	if kernel == nil {
		kernel = w.Shape[2:].Ints()
	}
	if sp, err = readSpatial(n, k, kernel); err != nil {
		return
	}
	if group = n.Int("group", 1); group < 1 {
		err = fmt.Errorf("group must be positive, got %d", group)
	}
	return
}

func optInput(n *Node, i int) *Value {
	if i < len(n.Inputs) {
		return n.Inputs[i]
	}
	return nil
}

func inferConvTranspose(g *Graph, n *Node) error {
	if err := needInputs(n, 2, 3); err != nil {
		return err
	}
	x, w, k, sp, group, err := convPrologue(n)
	if err != nil {
		return err
	}
	kernel := sp.kernel
	if x.Shape[1].Known() && w.Shape[0].Known() && x.Shape[1].Size != w.Shape[0].Size {
		return fmt.Errorf("input has %d channels, weight %v wants %d", x.Shape[1].Size, w.Shape, w.Shape[0].Size)
	}
	cout := Unknown()
	if w.Shape[1].Known() {
		cout = D(w.Shape[1].Size * group)
	}
	out := Shape{x.Shape[0], cout}
	if os := n.Ints("output_shape"); os != nil {
		if len(os) != k {
			return fmt.Errorf("output_shape %v does not fit %d spatial dims", os, k)
		}
		for _, v := range os {
			out = append(out, D(v))
		}
		setOut(n, 0, x.DType, out)
		return nil
	}
	opad := n.Ints("output_padding")
	if opad == nil {
		opad = make([]int64, k)
	}
	if len(opad) != k {
		return fmt.Errorf("output_padding %v does not fit %d spatial dims", opad, k)
	}
	for i := 0; i < k; i++ {
		in := x.Shape[2+i]
		if !in.Known() {
			out = append(out, Unknown())
			continue
		}
		o := sp.strides[i]*(in.Size-1) + opad[i] + (kernel[i]-1)*sp.dilations[i] + 1 - sp.padsBegin[i] - sp.padsEnd[i]
		out = append(out, D(o))
	}
	setOut(n, 0, x.DType, out)
	return nil
}

func inferPool(g *Graph, n *Node) error {
	if err := needInputs(n, 1, 1); err != nil {
		return err
	}
	x := n.Inputs[0]
	if err := needRank(x, "input", 3); err != nil {
		return err
	}
	k := x.Shape.Rank() - 2
	sp, err := readSpatial(n, k, n.Ints("kernel_shape"))
	if err != nil {
		return err
	}
	if n.Op == "MaxPool" && n.Int("storage_order", 0) != 0 {
		return fmt.Errorf("storage_order 1 is not supported")
	}
	ceil := n.Int("ceil_mode", 0) == 1
	out := Shape{x.Shape[0], x.Shape[1]}
	for i := 0; i < k; i++ {
		d, err := sp.outDim(i, x.Shape[2+i], ceil)
		if err != nil {
			return err
		}
		out = append(out, d)
	}
	setOut(n, 0, x.DType, out)
	if len(n.Outputs) == 2 && n.Op == "MaxPool" {
		setOut(n, 1, Int64, out.Clone())
		return nil
	}
	return needOutputs(n, 1, 1)
}

func inferGlobalPool(g *Graph, n *Node) error {
	if err := needInputs(n, 1, 1); err != nil {
		return err
	}
	x := n.Inputs[0]
	if err := needRank(x, "input", 3); err != nil {
		return err
	}
	out := Shape{x.Shape[0], x.Shape[1]}
	for i := 2; i < x.Shape.Rank(); i++ {
		out = append(out, D(1))
	}
	setOut(n, 0, x.DType, out)
	return nil
}

func inferBatchNorm(g *Graph, n *Node) error {
	if err := needInputs(n, 5, 5); err != nil {
		return err
	}
	if err := needOutputs(n, 1, 3); err != nil {
		return err
	}
	x := n.Inputs[0]
	if err := needRank(x, "input", 2); err != nil {
		return err
	}
	c := x.Shape[1]
	for i, what := range []string{"scale", "bias", "mean", "var"} {
		p := n.Inputs[1+i]
		if p.Shape.Rank() != 1 || !p.Shape[0].same(c) {
			return fmt.Errorf("%s %v does not fit %d channels", what, p.Shape, c.Size)
		}
	}
	training := n.Int("training_mode", 0) == 1
	if len(n.Outputs) > 1 && !training {
		return fmt.Errorf("running statistics outputs need training_mode=1")
	}
	setOut(n, 0, x.DType, x.Shape.Clone())
	for i := 1; i < len(n.Outputs); i++ {
		setOut(n, i, n.Inputs[2+i].DType, Shape{c})
	}
	return nil
}

func inferGemm(g *Graph, n *Node) error {
	if err := needInputs(n, 2, 3); err != nil {
		return err
	}
	a, b := n.Inputs[0], n.Inputs[1]
	if a.Shape.Rank() != 2 || b.Shape.Rank() != 2 {
		return fmt.Errorf("needs rank-2 inputs, got %v and %v", a.Shape, b.Shape)
	}
	m, ka := a.Shape[0], a.Shape[1]
	if n.Int("transA", 0) == 1 {
		m, ka = ka, m
	}
	kb, nn := b.Shape[0], b.Shape[1]
	if n.Int("transB", 0) == 1 {
		kb, nn = nn, kb
	}
	if ka.Known() && kb.Known() && ka.Size != kb.Size {
		return fmt.Errorf("inner dimensions %d and %d differ", ka.Size, kb.Size)
	}
	out := Shape{m, nn}
	if c := optInput(n, 2); c != nil {
		if _, err := broadcast(out, c.Shape); err != nil {
			return fmt.Errorf("bias: %w", err)
		}
	}
	setOut(n, 0, a.DType, out)
	return nil
}

func inferMatMul(g *Graph, n *Node) error {
	if err := needInputs(n, 2, 2); err != nil {
		return err
	}
	a, b := n.Inputs[0], n.Inputs[1]
	if a.Shape.Rank() < 2 || b.Shape.Rank() < 2 {
		return fmt.Errorf("rank-1 operands are not supported, got %v and %v", a.Shape, b.Shape)
	}
	ra, rb := a.Shape.Rank(), b.Shape.Rank()
	ka, kb := a.Shape[ra-1], b.Shape[rb-2]
	if ka.Known() && kb.Known() && ka.Size != kb.Size {
		return fmt.Errorf("inner dimensions %d and %d differ", ka.Size, kb.Size)
	}
	batch, err := broadcast(a.Shape[:ra-2], b.Shape[:rb-2])
	if err != nil {
		return err
	}
	setOut(n, 0, a.DType, append(batch, a.Shape[ra-2], b.Shape[rb-1]))
	return nil
}

// product multiplies dims; the result is unknown unless all are known, except
// that a single dim passes through unchanged (so a symbolic batch survives).
func product(ds []Dim) Dim {
	if len(ds) == 1 {
		return ds[0]
	}
	p := int64(1)
	for _, d := range ds {
		if !d.Known() {
			return Unknown()
		}
		p *= d.Size
	}
	return D(p)
}

func inferFlatten(g *Graph, n *Node) error {
	if err := needInputs(n, 1, 1); err != nil {
		return err
	}
	x := n.Inputs[0]
	if x.Shape == nil {
		setOut(n, 0, x.DType, Shape{Unknown(), Unknown()})
		return nil
	}
	axis := n.Int("axis", 1)
	if axis < 0 {
		axis += int64(x.Shape.Rank())
	}
	if axis < 0 || axis > int64(x.Shape.Rank()) {
		return fmt.Errorf("axis %d out of range for %v", n.Int("axis", 1), x.Shape)
	}
	setOut(n, 0, x.DType, Shape{product(x.Shape[:axis]), product(x.Shape[axis:])})
	return nil
}

func inferReshape(g *Graph, n *Node) error {
	x, target, err := dataAndConst(g, n, "shape")
	if err != nil {
		return err
	}
	if x.Shape == nil {
		out := make(Shape, len(target))
		minus := 0
		for i, t := range target {
			if t < -1 {
				return fmt.Errorf("bad shape %v", target)
			}
			if t == -1 {
				minus++
			}
			out[i] = Unknown()
			if t > 0 {
				out[i] = D(t)
			}
		}
		if minus > 1 {
			return fmt.Errorf("shape %v has two -1", target)
		}
		setOut(n, 0, x.DType, out)
		return nil
	}
	out := make(Shape, len(target))
	copied := map[int]bool{}
	inferAt := -1
	knownOut := int64(1)
	for i, t := range target {
		switch {
		case t == 0:
			if i >= x.Shape.Rank() {
				return fmt.Errorf("shape %v copies dim %d of %v", target, i, x.Shape)
			}
			out[i] = x.Shape[i]
			copied[i] = true
			if out[i].Known() {
				knownOut *= out[i].Size
			}
		case t == -1:
			if inferAt >= 0 {
				return fmt.Errorf("shape %v has two -1", target)
			}
			inferAt = i
		case t > 0:
			out[i] = D(t)
			knownOut *= t
		default:
			return fmt.Errorf("bad shape %v", target)
		}
	}
	knownIn := int64(1)
	var unknownIn []Dim
	for i, d := range x.Shape {
		switch {
		case d.Known():
			knownIn *= d.Size
		case !copied[i]:
			unknownIn = append(unknownIn, d)
		}
	}
	if inferAt >= 0 {
		switch {
		case len(unknownIn) == 0:
			if knownOut == 0 || knownIn%knownOut != 0 {
				return fmt.Errorf("cannot reshape %v to %v", x.Shape, target)
			}
			out[inferAt] = D(knownIn / knownOut)
		case len(unknownIn) == 1 && knownIn == knownOut:
			out[inferAt] = unknownIn[0]
		default:
			out[inferAt] = Unknown()
		}
	} else if len(unknownIn) == 0 && knownIn != knownOut {
		return fmt.Errorf("cannot reshape %v to %v", x.Shape, target)
	}
	setOut(n, 0, x.DType, out)
	return nil
}

func inferTranspose(g *Graph, n *Node) error {
	if err := needInputs(n, 1, 1); err != nil {
		return err
	}
	x := n.Inputs[0]
	if err := needRank(x, "input", 1); err != nil {
		return err
	}
	r := x.Shape.Rank()
	perm := n.Ints("perm")
	if perm == nil {
		for i := r - 1; i >= 0; i-- {
			perm = append(perm, int64(i))
		}
	}
	if len(perm) != r {
		return fmt.Errorf("perm %v does not fit rank %d", perm, r)
	}
	seen := make([]bool, r)
	out := make(Shape, r)
	for i, p := range perm {
		if p < 0 || p >= int64(r) || seen[p] {
			return fmt.Errorf("bad perm %v", perm)
		}
		seen[p] = true
		out[i] = x.Shape[p]
	}
	setOut(n, 0, x.DType, out)
	return nil
}

func axesSet(axes []int64, rank int) (map[int]bool, error) {
	m := map[int]bool{}
	for _, a := range axes {
		ax, err := normAxis(a, rank)
		if err != nil {
			return nil, err
		}
		m[ax] = true
	}
	return m, nil
}

func inferSqueeze(g *Graph, n *Node) error {
	x, axes, err := dataAndConst(g, n, "axes")
	if err != nil {
		return err
	}
	if err := needRank(x, "input", 1); err != nil {
		return err
	}
	set, err := axesSet(axes, x.Shape.Rank())
	if err != nil {
		return err
	}
	var out Shape = Shape{}
	for i, d := range x.Shape {
		if set[i] {
			if d.Known() && d.Size != 1 {
				return fmt.Errorf("cannot squeeze dim %d of %v", i, x.Shape)
			}
			continue
		}
		out = append(out, d)
	}
	setOut(n, 0, x.DType, out)
	return nil
}

func inferUnsqueeze(g *Graph, n *Node) error {
	x, axes, err := dataAndConst(g, n, "axes")
	if err != nil {
		return err
	}
	if x.Shape == nil {
		return fmt.Errorf("input %q has unknown rank", x.Name)
	}
	r := x.Shape.Rank() + len(axes)
	set, err := axesSet(axes, r)
	if err != nil {
		return err
	}
	if len(set) != len(axes) {
		return fmt.Errorf("axes %v repeat an axis", axes)
	}
	out := make(Shape, 0, r)
	j := 0
	for i := 0; i < r; i++ {
		if set[i] {
			out = append(out, D(1))
		} else {
			out = append(out, x.Shape[j])
			j++
		}
	}
	setOut(n, 0, x.DType, out)
	return nil
}

func inferConcat(g *Graph, n *Node) error {
	if err := needInputs(n, 1, 1<<20); err != nil {
		return err
	}
	if err := sameTypes(n, 0); err != nil {
		return err
	}
	first := n.Inputs[0]
	if err := needRank(first, "input", 1); err != nil {
		return err
	}
	ax, err := normAxis(n.Int("axis", 0), first.Shape.Rank())
	if err != nil {
		return err
	}
	out := first.Shape.Clone()
	for _, in := range n.Inputs[1:] {
		if in.Shape.Rank() != out.Rank() {
			return fmt.Errorf("ranks differ: %v and %v", first.Shape, in.Shape)
		}
		for i := range out {
			if i == ax {
				if out[i].Known() && in.Shape[i].Known() {
					out[i] = D(out[i].Size + in.Shape[i].Size)
				} else {
					out[i] = Unknown()
				}
			} else if !out[i].same(in.Shape[i]) && out[i].Known() && in.Shape[i].Known() {
				return fmt.Errorf("shapes %v and %v differ off the concat axis", first.Shape, in.Shape)
			}
		}
	}
	setOut(n, 0, first.DType, out)
	return nil
}

func inferSlice(g *Graph, n *Node) error {
	if err := needInputs(n, 3, 5); err != nil {
		return err
	}
	x := n.Inputs[0]
	if err := needRank(x, "input", 1); err != nil {
		return err
	}
	var lists [4][]int64
	for i := 1; i < len(n.Inputs); i++ {
		if n.Inputs[i] == nil {
			continue
		}
		l, ok := constInts(g, n.Inputs[i])
		if !ok {
			return fmt.Errorf("input %d must be an int64 constant", i)
		}
		lists[i-1] = l
	}
	starts, ends, axes, steps := lists[0], lists[1], lists[2], lists[3]
	if axes == nil {
		for i := range starts {
			axes = append(axes, int64(i))
		}
	}
	if steps == nil {
		for range starts {
			steps = append(steps, 1)
		}
	}
	if len(ends) != len(starts) || len(axes) != len(starts) || len(steps) != len(starts) {
		return fmt.Errorf("starts, ends, axes and steps differ in length")
	}
	out := x.Shape.Clone()
	for i := range starts {
		ax, err := normAxis(axes[i], x.Shape.Rank())
		if err != nil {
			return err
		}
		if steps[i] == 0 {
			return fmt.Errorf("step 0 on axis %d", axes[i])
		}
		d := x.Shape[ax]
		if !d.Known() {
			out[ax] = Unknown()
			continue
		}
		// ONNX's clamping: starts and ends to [0, dim] for positive steps;
		// for negative ones starts to [0, dim-1] and ends to [-1, dim-1] (an
		// end of -1 then means "past the first element").
		clamp := func(v, lo, hi int64) int64 {
			if v < 0 {
				v += d.Size
			}
			return min(max(v, lo), hi)
		}
		s, e := clamp(starts[i], 0, d.Size), clamp(ends[i], 0, d.Size)
		if steps[i] < 0 {
			s, e = clamp(starts[i], 0, d.Size-1), clamp(ends[i], -1, d.Size-1)
		}
		if steps[i] > 0 {
			out[ax] = D(max((e-s+steps[i]-1)/steps[i], 0))
		} else {
			out[ax] = D(max((s-e-steps[i]-1)/-steps[i], 0))
		}
	}
	setOut(n, 0, x.DType, out)
	return nil
}

func inferExpand(g *Graph, n *Node) error {
	x, target, err := dataAndConst(g, n, "shape")
	if err != nil {
		return err
	}
	s, err := broadcast(x.Shape, S(target...))
	if err != nil {
		return err
	}
	setOut(n, 0, n.Inputs[0].DType, s)
	return nil
}

func inferShapeOp(g *Graph, n *Node) error {
	if err := needInputs(n, 1, 1); err != nil {
		return err
	}
	if err := needRank(n.Inputs[0], "input", 0); err != nil {
		return err
	}
	setOut(n, 0, Int64, S(int64(n.Inputs[0].Shape.Rank())))
	return nil
}

func inferScatterElements(g *Graph, n *Node) error {
	if err := needInputs(n, 3, 3); err != nil {
		return err
	}
	data, idx, upd := n.Inputs[0], n.Inputs[1], n.Inputs[2]
	if idx.DType != Int64 && idx.DType != Int32 {
		return fmt.Errorf("indices must be int32 or int64, got %v", idx.DType)
	}
	if upd.DType != data.DType {
		return fmt.Errorf("updates %v and data %v types differ", upd.DType, data.DType)
	}
	if idx.Shape.Rank() != data.Shape.Rank() || !idx.Shape.Equal(upd.Shape) {
		return fmt.Errorf("indices %v, updates %v and data %v do not fit", idx.Shape, upd.Shape, data.Shape)
	}
	setOut(n, 0, data.DType, data.Shape.Clone())
	return nil
}

func inferConstantOfShape(g *Graph, n *Node) error {
	if err := needInputs(n, 1, 1); err != nil {
		return err
	}
	target, ok := constInts(g, n.Inputs[0])
	if !ok {
		return fmt.Errorf("shape must be an int64 constant")
	}
	for _, d := range target {
		if d < 0 {
			return fmt.Errorf("negative size in %v", target)
		}
	}
	dt := Float
	if t, ok := n.Attrs["value"].(*Tensor); ok {
		dt = t.DType
	}
	setOut(n, 0, dt, S(target...))
	return nil
}

func inferPad(g *Graph, n *Node) error {
	if err := needInputs(n, 2, 3); err != nil {
		return err
	}
	if m := n.Str("mode", "constant"); m != "constant" {
		return fmt.Errorf("pad mode %s is not supported", m)
	}
	x := n.Inputs[0]
	if err := needRank(x, "input", 1); err != nil {
		return err
	}
	pads, ok := constInts(g, n.Inputs[1])
	r := x.Shape.Rank()
	if !ok || len(pads) != 2*r {
		return fmt.Errorf("pads must be an int64 constant of length %d", 2*r)
	}
	out := x.Shape.Clone()
	for i := range out {
		if out[i].Known() {
			out[i] = D(out[i].Size + pads[i] + pads[r+i])
			if out[i].Size < 0 {
				return fmt.Errorf("pads %v make dim %d negative", pads, i)
			}
		}
	}
	setOut(n, 0, x.DType, out)
	return nil
}
