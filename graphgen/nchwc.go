package graphgen

import "fmt"

// NchwcDomain is the operator domain of ONNX Runtime's CPU kernels on
// channel-blocked tensors (NCHWc: channels split into blocks of 8 or 16,
// the block innermost). ONNX Runtime registers them on x86-64 CPUs (block
// 16 with AVX-512, else 8), outside minimal builds; no other execution
// provider has them.
const NchwcDomain = "com.microsoft.nchwc"

// nchwcMinPlane is the smallest output plane (H*W) whose convolutions
// LowerNchwc rewrites: from 7x7 up the blocked kernel saves more than its
// reorders cost (BenchmarkKernelNchwcConv, and step profiles for 7x7);
// smaller planes are unmeasured. Pointwise convolutions never gain (the
// reorders cost what the kernel saves).
const nchwcMinPlane = 7 * 7

// nchwcMaxKernel bounds the kernels LowerNchwc rewrites, so that the large
// "kernels" of convolutions over transposed tensors (weight gradients) keep
// ONNX Runtime's Conv.
const nchwcMaxKernel = 7

// LowerNchwc rewrites a finished graph for ONNX Runtime's CPU provider
// only: every float32 2-D convolution with a kernel of more than one tap
// and at most 7 on a side,
// one group, no dilation, output channels a multiple of block, input
// channels a multiple of block or fewer than one block, and an output plane
// of at least 7x7, whose weight is not a constant, becomes ONNX Runtime's
// blocked convolution (NchwcDomain): ReorderInput of x (an input with fewer
// channels than a block, such as the images, is read as it is), the weight
// reordered by ReorderInput to the blocked filter layout, the
// blocked Conv, and ReorderOutput back to NCHW under the old output's
// name. The values are those of the Conv up to float32 rounding (the sums
// run in another order).
//
// Why: ONNX Runtime applies this layout itself (its NCHWc transformer) only
// to convolutions whose weights are constant initializers, since it
// reorders them once at load; a training step's weights are inputs, so its
// convolutions would run as im2col and GEMM, slower than oneDNN's direct
// convolutions in PyTorch (scripts/bench/torch_conv.py,
// BenchmarkKernelNchwcConv).
//
// block must be the block size of the ONNX Runtime that will run the graph
// (its MLAS library picks 16 with AVX-512, else 8 on x86-64). The reorders
// themselves block by the runtime's own size, but block decides which
// convolutions read their input as NCHW (fewer channels than block), so a
// wrong one gives wrong values where input channels lie between the two
// sizes, and a graph that fails to run where a count of channels is an odd
// multiple of 8 and the runtime blocks by 16; callers take it from a probe
// that tells 16 from 8 by comparing both against the plain Conv
// (training.NchwcBlock, x86-64 only). The result runs only on the CPU
// provider: it is for sessions, never for exported files.
func (g *Graph) LowerNchwc(block int64) error {
	if g.err != nil {
		return g.err
	}
	if block < 2 {
		return fmt.Errorf("lower nchwc: block size %d, want at least 2", block)
	}
	before := map[*Node][]*Node{}
	after := map[*Node][]*Node{}
	reordered := map[*Value]*Value{} // input -> its ReorderInput, shared by the convolutions that read it
	for _, n := range g.Nodes {
		if !g.nchwcFits(n, block) {
			continue
		}
		x, w, y := n.Inputs[0], n.Inputs[1], n.Outputs[0]
		// Inputs with fewer channels than a block (an image) stay NCHW and
		// take the filter blocked by output channel only.
		nchw := x.Shape[1].Size < block
		var wb *Value
		before[n] = g.detached("nchwc/"+n.Name, func() {
			if nchw {
				wb = blockedFilterOut(g, w)
				return
			}
			if reordered[x] == nil {
				reordered[x] = g.Op1("ReorderInput", []*Value{x}, Attrs{})
				reordered[x].Producer.Domain = NchwcDomain
			}
			wb = blockedFilter(g, w)
		})
		if g.err != nil {
			return fmt.Errorf("lower nchwc: %w", g.err)
		}
		// The first convolution to read x placed its ReorderInput (made in
		// its detached nodes); the later ones reuse it.
		xb := x
		if !nchw {
			xb = reordered[x]
		}
		yb := &Value{Name: g.uniqueName(y.Name + ":nchwc"), DType: y.DType, Shape: y.Shape.Clone(), Producer: n}
		after[n] = g.detached("nchwc/"+n.Name, func() {
			o := g.Op1("ReorderOutput", []*Value{yb}, Attrs{"channels": y.Shape[1].Size})
			ro := o.Producer
			ro.Domain = NchwcDomain
			ro.Outputs = []*Value{y}
			y.Producer = ro
		})
		if g.err != nil {
			return fmt.Errorf("lower nchwc: %w", g.err)
		}
		n.Inputs = append([]*Value{xb, wb}, n.Inputs[2:]...)
		n.Outputs = []*Value{yb}
		n.Domain = NchwcDomain
		n.Role = RoleLowered
	}
	nodes := make([]*Node, 0, len(g.Nodes)+4*len(after))
	for _, n := range g.Nodes {
		nodes = append(nodes, before[n]...)
		nodes = append(nodes, n)
		nodes = append(nodes, after[n]...)
	}
	g.Nodes = nodes
	return nil
}

// nchwcFits says whether LowerNchwc rewrites n.
func (g *Graph) nchwcFits(n *Node, block int64) bool {
	if n.Op != "Conv" || n.Domain != "" || len(n.Inputs) < 2 || len(n.Inputs) > 3 || len(n.Outputs) != 1 {
		return false
	}
	x, w, y := n.Inputs[0], n.Inputs[1], n.Outputs[0]
	if x == nil || w == nil || x.DType != Float || w.DType != Float ||
		x.Shape.Rank() != 4 || !x.Shape.Static() || !w.Shape.Static() || w.Shape.Rank() != 4 || !y.Shape.Static() {
		return false
	}
	if _, isConst := g.inits[w.Name]; isConst || n.Int("group", 1) != 1 {
		return false
	}
	if ap, ok := n.Attrs["auto_pad"]; ok && ap != "NOTSET" {
		return false
	}
	for _, d := range n.Ints("dilations") {
		if d != 1 {
			return false
		}
	}
	ci, co, kh, kw := w.Shape[1].Size, w.Shape[0].Size, w.Shape[2].Size, w.Shape[3].Size
	return x.Shape[1].Size == ci && (ci%block == 0 || ci < block) && co%block == 0 &&
		kh*kw > 1 && kh <= nchwcMaxKernel && kw <= nchwcMaxKernel &&
		y.Shape[2].Size*y.Shape[3].Size >= nchwcMinPlane
}

// blockedFilter is the weight w (O, I, kh, kw) in ONNX Runtime's blocked
// filter layout for NCHWc inputs, (O/b, I/b, kh, kw, b_in, b_out) flat,
// under w's shape. Two of ONNX Runtime's own ReorderInput kernels move
// the channel blocks innermost, first of the input channels (w read as a
// batch of O images of I channels and kh*kw x 1 pixels: O, I/b, taps,
// b_in), then of the output channels (that read as one image of O
// channels: O/b, I/b, taps, b_in, b_out). ReorderInput blocks by the
// block size of the runtime that runs it, the one its blocked Conv
// expects, so b needs no argument here; the channel counts must be
// multiples of it (LowerNchwc's conditions). It is faster than two
// one-axis Transposes (BenchmarkKernelNchwcConv's weight reorders).
func blockedFilter(g *Graph, w *Value) *Value {
	o, i, kh, kw := w.Shape[0].Size, w.Shape[1].Size, w.Shape[2].Size, w.Shape[3].Size
	byIn := g.Op1("ReorderInput", []*Value{g.Reshape(w, o, i, kh*kw, 1)}, Attrs{})
	byIn.Producer.Domain = NchwcDomain
	return blockedFilterOut(g, g.Reshape(byIn, o, i, kh, kw))
}

// blockedFilterOut is w (O, I, kh, kw) in the blocked filter layout for
// NCHW inputs, (O/b, I, kh, kw, b_out) flat, under w's shape: w read as
// one image of O channels and I*kh*kw x 1 pixels, reordered by
// ReorderInput.
func blockedFilterOut(g *Graph, w *Value) *Value {
	o, i, kh, kw := w.Shape[0].Size, w.Shape[1].Size, w.Shape[2].Size, w.Shape[3].Size
	t := g.Op1("ReorderInput", []*Value{g.Reshape(w, 1, o, i*kh*kw, 1)}, Attrs{})
	t.Producer.Domain = NchwcDomain
	return g.Reshape(t, o, i, kh, kw)
}
