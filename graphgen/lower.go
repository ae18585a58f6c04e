package graphgen

import "fmt"

// affineConvMinPlane is the smallest plane (H*W) at which a per-channel
// affine map is written as a depthwise 1x1 Conv rather than as
// BatchNormalization: the Conv (with a bias) fuses with a following Relu,
// or Add and Relu, into one pass in ONNX Runtime; on 7x7 planes its
// per-group overhead makes it slower (BenchmarkKernelAffine).
const affineConvMinPlane = 14 * 14

// affineAsConv says whether an affine map of x is written as a depthwise
// Conv (depthwiseAffine), by LowerBatchStats and by gradBatchNorm.
func affineAsConv(x *Value) bool {
	s := x.Shape
	return s.Rank() == 4 && s.Static() && x.DType == Float && s[2].Size*s[3].Size >= affineConvMinPlane
}

// depthwiseAffine is x*a + b with a and b per channel (axis 1) of shape
// (C), as a depthwise 1x1 Conv with a bias (for inputs that affineAsConv
// accepts).
func (g *Graph) depthwiseAffine(x, a, b *Value) *Value {
	c := x.Shape[1].Size
	return g.Conv(x, g.Reshape(a, c, 1, 1, 1), b, ConvOpts{Group: c})
}

// LowerBatchStats rewrites a finished training graph for speed on ONNX
// Runtime's CPU provider, keeping every output's value up to float32
// rounding:
//
//   - the shift of a BatchNorm input (the Sub of BatchNormBatchStats given
//     a shift that does not depend on the input, such as FirstImageConvMean's)
//     moves into the bias-free Conv that produces the input, when nothing
//     else reads that Conv's output: Conv(x, W) - shift = Conv(x, W, -shift),
//     and the convolution adds the bias as it writes its output, so the
//     Sub's pass over the activation disappears;
//   - each training-mode BatchNormalization (RoleBatchStats) whose input
//     affineAsConv accepts becomes the same affine map as a depthwise Conv,
//     y = xs*a + (beta - m*a) with a = gamma/sqrt(var+eps), which ONNX
//     Runtime fuses with the Relu or Add+Relu that reads it;
//   - nodes no output depends on any more are removed.
//
// Call it last, once every output is declared: the rewritten nodes carry
// RoleLowered, which autodiff refuses (a Conv rule would not give the
// training-mode BatchNorm gradient), and pruning drops whatever no output
// reads yet.
func (g *Graph) LowerBatchStats() error {
	if g.err != nil {
		return g.err
	}
	l := &lowering{before: map[*Node][]*Node{}, moved: map[*Node]bool{}, replace: map[*Value]*Value{}}
	if err := g.foldShifts(l); err != nil {
		return err
	}
	if err := g.affineConvs(l); err != nil {
		return err
	}
	nodes := make([]*Node, 0, len(g.Nodes)+8*len(l.before))
	for _, n := range g.Nodes {
		nodes = append(nodes, l.before[n]...)
		if !l.moved[n] {
			nodes = append(nodes, n)
		}
	}
	for _, n := range nodes {
		for i, in := range n.Inputs {
			if r, ok := l.replace[in]; ok {
				n.Inputs[i] = r
			}
		}
	}
	g.Nodes = nodes
	g.prune()
	return nil
}

// lowering collects a rewrite's changes before they are applied in one
// pass: nodes to insert before a node, nodes moved elsewhere (through
// before), and values whose readers read another.
type lowering struct {
	before  map[*Node][]*Node
	moved   map[*Node]bool
	replace map[*Value]*Value
}

// foldShifts moves each BatchNorm shift into the bias of the Conv that
// produces its input.
func (g *Graph) foldShifts(l *lowering) error {
	protected := map[*Value]bool{}
	for _, o := range g.Outputs {
		protected[o] = true
	}
	consumers := g.Consumers()
	for _, s := range g.Nodes {
		if s.Role != RoleCentering || s.Op != "Sub" {
			continue
		}
		y, shaped := s.Inputs[0], s.Inputs[1]
		c := y.Producer
		if c == nil || c.Op != "Conv" || len(c.Inputs) > 2 && c.Inputs[2] != nil ||
			protected[y] || protected[s.Outputs[0]] || len(consumers[y.Name]) != 1 {
			continue
		}
		// The shift, Reshape(shift, 1, C, 1, ...), must not depend on the
		// Conv's output (BatchNormBatchStats without a shift subtracts the
		// batch mean) and must have the bias's shape.
		if shaped.Producer == nil || shaped.Producer.Op != "Reshape" {
			continue
		}
		shift := shaped.Producer.Inputs[0]
		if shift.Producer != nil && shift.Producer.Role == RoleDetached {
			shift = shift.Producer.Inputs[0]
		}
		if shift.DType != y.DType || y.Shape.Rank() < 3 || !shift.Shape.Equal(S(y.Shape[1].Size)) || dependsOn(shift, y) {
			continue
		}
		var bias *Value
		// The Conv moves to just before the Sub, its only reader, where
		// the shift (computed after the Conv, by BatchNormBatchStats) is
		// defined: the negated shift, then the Conv.
		l.before[s] = append(l.before[s], g.detached("lowered/"+c.Name, func() { bias = g.Neg(shift) })...)
		if g.err != nil {
			return fmt.Errorf("lower batch stats: %w", g.err)
		}
		l.before[s] = append(l.before[s], c)
		l.moved[c] = true
		c.Inputs = []*Value{c.Inputs[0], c.Inputs[1], bias}
		c.Role = RoleLowered
		l.replace[s.Outputs[0]] = y
	}
	return nil
}

// affineConvs rewrites each training-mode BatchNormalization whose input
// affineAsConv accepts as the same affine map as a depthwise Conv. It reads
// the shifted values as they are; LowerBatchStats' final pass points every
// reader, these included, at the folded ones.
func (g *Graph) affineConvs(l *lowering) error {
	for _, n := range g.Nodes {
		if n.Role != RoleBatchStats || n.Op != "BatchNormalization" || !affineAsConv(n.Inputs[0]) {
			continue
		}
		if len(n.Inputs) != 5 || len(n.Outputs) != 1 {
			return fmt.Errorf("lower batch stats: node %s is not a one-output BatchNormalization", n.Name)
		}
		xs, scale, bias, m, variance := n.Inputs[0], n.Inputs[1], n.Inputs[2], n.Inputs[3], n.Inputs[4]
		var y *Value
		added := g.detached("lowered/"+n.Name, func() {
			eps := g.Scalar(variance.DType, float64(n.Float("epsilon", 1e-5)))
			a := g.Mul(scale, g.Reciprocal(g.Sqrt(g.Add(variance, eps))))
			y = g.depthwiseAffine(xs, a, g.Sub(bias, g.Mul(m, a)))
		})
		if g.err != nil {
			return fmt.Errorf("lower batch stats: %w", g.err)
		}
		// The nodes that compute the kernel go before n; n takes the Conv's
		// operator, inputs and attributes, keeping its output.
		conv := y.Producer
		l.before[n] = append(l.before[n], added[:len(added)-1]...)
		n.Op, n.Inputs, n.Attrs, n.Role = conv.Op, conv.Inputs, conv.Attrs, RoleLowered
	}
	return nil
}

// SubsamplePointwise rewrites every 1x1 Conv with a stride and no padding
// on a 4-D input whose height the stride divides (the original ResNet's
// downsampling convolutions, and ResNet-B's and -C's shortcut) as a
// stride-1 Conv of the input's subsample, the same values: x[:, :, ::sh,
// ::sw] is a MatMul of x, viewed as rows of sh input rows, by a constant
// one-hot (sh*W, Wo) matrix, shared by the convolutions that read the same
// input with the same strides. Call it on a forward graph before
// Gradients. Its reason is the backward: the subsample's gradient is the
// transposed MatMul, which spreads the gradient back with zeros between
// in one pass over both threads, once for the convolutions that share it
// and after their gradients are added on the small plane, and each
// convolution's gradients become the stride-1 pointwise ones, where ONNX
// Runtime's strided ConvTranspose and strided Slice are slow (step profiles
// in docs/results/bench/history.md). The one-hot products are exact: each output is
// one input times 1 plus zeros. A non-finite value makes its whole row of
// the product NaN (Inf or NaN times 0), forward and backward, which only
// makes a step's all-finite check stricter. Convolutions the rewrite does
// not fit, and float16 ones (below), are left as they are.
func (g *Graph) SubsamplePointwise() error {
	if g.err != nil {
		return g.err
	}
	type key struct {
		x      *Value
		sh, sw int64
	}
	subs := map[key]*Value{}
	nodes := make([]*Node, 0, len(g.Nodes))
	for _, n := range g.Nodes {
		s, ok := subsampleStrides(n)
		if !ok {
			nodes = append(nodes, n)
			continue
		}
		kk := key{n.Inputs[0], s[0], s[1]}
		xs := subs[kk]
		if xs == nil {
			nodes = append(nodes, g.detached("subsample/"+n.Name, func() { xs = g.subsample(n.Inputs[0], s[0], s[1]) })...)
			if g.err != nil {
				return fmt.Errorf("subsample %s: %w", n.Name, g.err)
			}
			subs[kk] = xs
		}
		n.Inputs = append([]*Value{xs}, n.Inputs[1:]...)
		attrs := Attrs{}
		for a, v := range n.Attrs {
			attrs[a] = v
		}
		delete(attrs, "strides")
		n.Attrs = attrs
		nodes = append(nodes, n)
	}
	g.Nodes = nodes
	return nil
}

// subsampleStrides says whether SubsamplePointwise rewrites n, and returns
// its strides.
func subsampleStrides(n *Node) (strides []int64, ok bool) {
	if n.Op != "Conv" || len(n.Inputs) < 2 || n.Role != "" {
		return nil, false
	}
	x, w := n.Inputs[0], n.Inputs[1]
	// Float32 only. ONNX Runtime's CPU provider runs a float16 step's
	// convolutions through Casts in float32, but not a float16 MatMul: with
	// the subsample, the original ResNet-50's float16 step lands 1.4e-3
	// from float64 after one step where it is 1.0e-3 without (its case of
	// TestStepOracle), and the float16 step gains no speed on the CPU.
	if x.DType != Float || x.Shape.Rank() != 4 || !x.Shape.Static() || !w.Shape.Static() || w.Shape[2].Size != 1 || w.Shape[3].Size != 1 ||
		n.Str("auto_pad", "NOTSET") != "NOTSET" {
		return nil, false
	}
	for _, p := range n.Ints("pads") {
		if p != 0 {
			return nil, false
		}
	}
	s := n.Ints("strides")
	if len(s) != 2 || s[0] < 1 || s[1] < 1 || s[0]*s[1] == 1 || x.Shape[2].Size%s[0] != 0 {
		return nil, false
	}
	return s, true
}

// subsample is x[:, :, ::sh, ::sw] for a static 4-D x whose height sh
// divides, as Reshape, MatMul by a one-hot matrix, Reshape (see
// SubsamplePointwise).
func (g *Graph) subsample(x *Value, sh, sw int64) *Value {
	n, c, h, w := x.Shape[0].Size, x.Shape[1].Size, x.Shape[2].Size, x.Shape[3].Size
	ho, wo := h/sh, (w-1)/sw+1
	pick := FilledTensor(x.DType, []int64{sh * w, wo}, 0)
	for j := int64(0); j < wo; j++ {
		pick.set(j*sw*wo+j, 1)
	}
	rows := g.Reshape(x, n*c*ho, sh*w)
	return g.Reshape(g.MatMul(rows, g.Const(pick)), n, c, ho, wo)
}

// detached runs f with the builder in scope and returns the nodes it
// appended, taking them out of g.Nodes for the caller to place.
func (g *Graph) detached(scope string, f func()) []*Node {
	start := len(g.Nodes)
	prev := g.SetScope(scope)
	f()
	g.SetScope(prev)
	added := append([]*Node{}, g.Nodes[start:]...)
	g.Nodes = g.Nodes[:start]
	return added
}

// dependsOn says whether v is computed from target.
func dependsOn(v, target *Value) bool {
	seen := map[*Value]bool{}
	var walk func(v *Value) bool
	walk = func(v *Value) bool {
		if v == target {
			return true
		}
		if v == nil || v.Producer == nil || seen[v] {
			return false
		}
		seen[v] = true
		for _, in := range v.Producer.Inputs {
			if walk(in) {
				return true
			}
		}
		return false
	}
	return walk(v)
}

// prune removes the nodes no graph output depends on, then the constant
// initializers no remaining node reads.
func (g *Graph) prune() {
	live := map[*Value]bool{}
	for _, o := range g.Outputs {
		live[o] = true
	}
	keep := make([]bool, len(g.Nodes))
	for i := len(g.Nodes) - 1; i >= 0; i-- {
		n := g.Nodes[i]
		for _, o := range n.Outputs {
			if live[o] {
				keep[i] = true
				break
			}
		}
		if keep[i] {
			for _, in := range n.Inputs {
				if in != nil {
					live[in] = true
				}
			}
		}
	}
	nodes := g.Nodes[:0]
	for i, n := range g.Nodes {
		if keep[i] {
			nodes = append(nodes, n)
		}
	}
	g.Nodes = nodes
	inits := g.Inits[:0]
	for _, in := range g.Inits {
		if live[in.Value] {
			inits = append(inits, in)
			continue
		}
		delete(g.inits, in.Value.Name)
		for k, v := range g.constants {
			if v == in.Value {
				delete(g.constants, k)
			}
		}
	}
	g.Inits = inits
}
