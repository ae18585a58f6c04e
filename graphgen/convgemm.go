package graphgen

import "fmt"

// Thresholds of ConvsAsGemm: the output planes (Ho*Wo) up to which the
// product beats ONNX Runtime's Conv, each with its input and weight
// gradients, lowered as the step is (BenchmarkKernelConvGemm, 2 threads;
// the numbers are in docs/results/bench/history.md).
const (
	// gemmMaxPlane, 3x3 stride 1: 2.2 times the Conv's speed on 2x2
	// planes of 512 channels, batch 64; 1.13 times on 4x4 of 256; 0.86
	// on 8x8 of 128, and 0.57 against the blocked Conv on 7x7, batch 16.
	gemmMaxPlane = 4 * 4
	// gemmMaxPointwisePlane, 1x1 stride 1 (strided ones are subsampled
	// first): 1.6-2.7 times on 2x2, batch 64; 0.76-0.82 on 4x4, and on
	// 7x7, batch 16.
	gemmMaxPointwisePlane = 2 * 2
	// gemmMaxStridedPlane, strided convolutions, whose input gradient is
	// otherwise a strided ConvTranspose: 3x3 stride 2 to 2x2, batch 64:
	// 2.9 times; to 4x4: 1.07; to 7x7, batch 16: 1.09.
	gemmMaxStridedPlane = 7 * 7
)

// ConvsAsGemm rewrites, on a forward graph before Gradients, each float32
// 2-D convolution with one group and static shapes whose output plane
// (Ho*Wo) is small (the thresholds above) as one matrix product over the
// whole batch:
//
//	cols = Reshape(x, N*Ci, H*W) x G            (N*Ci, taps*Ho*Wo)
//	A    = cols as (Ci*taps, N*Ho*Wo)           (a Transpose)
//	y    = Reshape(W, Co, Ci*taps) x A          (Co, N*Ho*Wo), then back to NCHW
//
// G is a constant one-hot (H*W, taps*Ho*Wo) matrix that places each input
// position where a kernel tap reads it (strides, pads and dilations
// included; padding leaves a column of zeros), so cols is im2col's column
// matrix, exact: each entry is one input times 1 plus zeros. A pointwise
// stride-1 convolution needs no G. The rest of the step follows by
// differentiation: the weight gradient is dY by A's transpose, one product
// whose inner dimension is the batch times the plane, and the input
// gradient is W's transpose by dY, then by G's transpose (col2im as a
// product).
//
// Why: ONNX Runtime's CPU convolution multiplies one image at a time, so
// on a plane of 2x2 each image's product has 4 columns and reads the whole
// weight again (ResNet-18's layer 4 at 64x64: 37 GMAC/s where larger
// planes reach 80-235). Here the weight is read once per batch. G's
// product costs H*W/Co of the convolution's, which is what bounds the
// planes, and never more than the convolution (H*W <= Co).
//
// For the CPU step, by choice, not by validity: the graph stays standard
// ONNX, but a GPU's convolutions have no such loss. A non-finite input
// makes its whole image channel's columns NaN (Inf times 0), which only
// makes a step's all-finite check stricter. It returns how many
// convolutions it rewrote.
func (g *Graph) ConvsAsGemm() (int, error) {
	return g.convsAsGemm(func(a convArgs) bool {
		switch {
		case a.x.Shape[2].Size*a.x.Shape[3].Size > a.d.Shape[1].Size:
			return false // G's product would cost more than the convolution
		case !a.stride1():
			return a.plane() <= gemmMaxStridedPlane
		case a.taps() == 1:
			return a.plane() <= gemmMaxPointwisePlane
		}
		return a.plane() <= gemmMaxPlane
	})
}

// convsAsGemm is ConvsAsGemm for the convolutions that fit and that want
// accepts.
func (g *Graph) convsAsGemm(want func(convArgs) bool) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	nodes := make([]*Node, 0, len(g.Nodes))
	rewritten := 0
	for _, n := range g.Nodes {
		a, ok := convGemmFits(n)
		if !ok || !want(a) {
			nodes = append(nodes, n)
			continue
		}
		y := n.Outputs[0]
		var out *Value
		added := g.detached("gemm/"+n.Name, func() { out = g.convGemm(a, optInput(n, 2)) })
		if g.err != nil {
			return 0, fmt.Errorf("convs as gemm %s: %w", n.Name, g.err)
		}
		// The last node writes the Conv's output value, so its readers
		// stay as they are.
		last := out.Producer
		last.Outputs[0] = y
		y.Producer = last
		nodes = append(nodes, added...)
		rewritten++
	}
	g.Nodes = nodes
	return rewritten, nil
}

// convGemmFits says whether n is a convolution convGemm can write, with its
// operands (the output in place of dY).
func convGemmFits(n *Node) (convArgs, bool) {
	if n.Op != "Conv" || n.Domain != "" || len(n.Inputs) < 2 || n.Role != "" {
		return convArgs{}, false
	}
	x, w, y := n.Inputs[0], n.Inputs[1], n.Outputs[0]
	if x.DType != Float || w.DType != Float || x.Shape.Rank() != 4 || !x.Shape.Static() || !w.Shape.Static() || !y.Shape.Static() {
		return convArgs{}, false
	}
	a, err := readConvArgs(n, y)
	if err != nil || !a.plain2D() {
		return convArgs{}, false
	}
	return a, true
}

// convGemm is the convolution a describes (d is its output) as ConvsAsGemm
// writes it, plus bias when there is one.
func (g *Graph) convGemm(a convArgs, bias *Value) *Value {
	x, w := a.x, a.w
	nb, ci, h, wd := x.Shape[0].Size, x.Shape[1].Size, x.Shape[2].Size, x.Shape[3].Size
	co, ho, wo := a.d.Shape[1].Size, a.d.Shape[2].Size, a.d.Shape[3].Size
	taps, plane := a.taps(), ho*wo
	var cols *Value                              // (Ci*taps, N, Ho*Wo)
	if taps == 1 && a.stride1() && !a.padded() { // the input's plane is the output's
		cols = g.Reshape(g.Transpose(x, 1, 0, 2, 3), ci, nb, plane)
	} else {
		c := g.MatMul(g.Reshape(x, nb*ci, h*wd), g.Const(im2colMatrix(a)))
		cols = g.Transpose(g.Reshape(c, nb, ci*taps, plane), 1, 0, 2)
	}
	yt := g.MatMul(g.Reshape(w, co, ci*taps), g.Reshape(cols, ci*taps, nb*plane))
	y := g.Transpose(g.Reshape(yt, co, nb, ho, wo), 1, 0, 2, 3)
	if bias != nil {
		y = g.Add(y, g.Reshape(bias, 1, co, 1, 1))
	}
	return y
}

// im2colMatrix is ConvsAsGemm's one-hot G: entry (ih*W+iw, t*Ho*Wo+p) is 1
// where output position p's kernel tap t reads input position (ih, iw).
func im2colMatrix(a convArgs) *Tensor {
	h, w := a.x.Shape[2].Size, a.x.Shape[3].Size
	ho, wo := a.d.Shape[2].Size, a.d.Shape[3].Size
	kh, kw := a.kernel[0], a.kernel[1]
	cols := kh * kw * ho * wo
	m := FilledTensor(a.x.DType, []int64{h * w, cols}, 0)
	for th := int64(0); th < kh; th++ {
		for tw := int64(0); tw < kw; tw++ {
			for oh := int64(0); oh < ho; oh++ {
				for ow := int64(0); ow < wo; ow++ {
					ih := oh*a.sp.strides[0] - a.sp.padsBegin[0] + th*a.sp.dilations[0]
					iw := ow*a.sp.strides[1] - a.sp.padsBegin[1] + tw*a.sp.dilations[1]
					if ih < 0 || ih >= h || iw < 0 || iw >= w {
						continue // padding
					}
					col := (th*kw+tw)*ho*wo + oh*wo + ow
					m.set((ih*w+iw)*cols+col, 1)
				}
			}
		}
	}
	return m
}
