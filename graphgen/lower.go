package graphgen

import "fmt"

// affineConvMinPlane is the smallest plane (H*W) at which a per-channel
// affine map is written as a depthwise 1x1 Conv rather than as
// BatchNormalization (BenchmarkKernelAffine, docs/benchmarks.md). On
// ONNX Runtime's CPU provider the two cost about the same alone, but the
// Conv fuses with a following Relu, or Add and Relu, into one pass
// (ONNX Runtime's ConvActivation and ConvAddActivation fusions, which need
// a Conv with a bias): 30 to 40% less time for the BatchNorm+ReLU and
// BatchNorm+Add+ReLU of ResNet's blocks at 14x14 and above. On 7x7 planes
// the grouped convolution's per-group overhead makes it slower.
const affineConvMinPlane = 14 * 14

// affineAsConv says whether channelAffine writes an affine map of x as a
// depthwise Conv.
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

// LowerBatchStats rewrites, for speed on ONNX Runtime's CPU provider, each
// training-mode BatchNormalization (RoleBatchStats, see
// BatchNormBatchStats) whose input affineAsConv accepts into the same
// affine map as a depthwise Conv: y = xc * gamma/sqrt(var+eps) + beta, the
// kernel computed per channel before it. The output value is unchanged, so
// the Relu or Add+Relu that reads it fuses with the Conv.
//
// Call it after Gradients: the rewritten nodes carry RoleLowered, which
// autodiff refuses, since a Conv rule would not give the training-mode
// BatchNorm gradient.
func (g *Graph) LowerBatchStats() error {
	if g.err != nil {
		return g.err
	}
	before := map[*Node][]*Node{} // target -> nodes to insert before it
	for _, n := range g.Nodes {
		if n.Role != RoleBatchStats || n.Op != "BatchNormalization" || !affineAsConv(n.Inputs[0]) {
			continue
		}
		if len(n.Inputs) != 5 || len(n.Outputs) != 1 {
			return fmt.Errorf("lower batch stats: node %s is not a one-output BatchNormalization", n.Name)
		}
		xc, scale, bias, variance := n.Inputs[0], n.Inputs[1], n.Inputs[2], n.Inputs[4]
		start := len(g.Nodes)
		prev := g.SetScope("lowered/" + n.Name)
		eps := g.Scalar(variance.DType, float64(n.Float("epsilon", 1e-5)))
		y := g.depthwiseAffine(xc, g.Mul(scale, g.Reciprocal(g.Sqrt(g.Add(variance, eps)))), bias)
		g.SetScope(prev)
		if g.err != nil {
			return fmt.Errorf("lower batch stats: %w", g.err)
		}
		// Keep the nodes that compute the kernel, to go before n; n takes
		// the Conv's operator, inputs and attributes, keeping its output.
		conv := y.Producer
		before[n] = append([]*Node{}, g.Nodes[start:len(g.Nodes)-1]...)
		g.Nodes = g.Nodes[:start]
		n.Op, n.Inputs, n.Attrs, n.Role = conv.Op, conv.Inputs, conv.Attrs, RoleLowered
	}
	if len(before) == 0 {
		return nil
	}
	nodes := make([]*Node, 0, len(g.Nodes)+4*len(before))
	for _, n := range g.Nodes {
		nodes = append(nodes, before[n]...)
		nodes = append(nodes, n)
	}
	g.Nodes = nodes
	return nil
}
