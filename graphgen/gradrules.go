package graphgen

import (
	"fmt"
	"math"
)

// gradRule returns the gradients of a node's inputs given the gradients of
// its outputs (dy[i] nil when output i does not reach the loss). need[i] says
// which input gradients are wanted; a rule may return nil for the others.
type gradRule func(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error)

// gradRules is the table of gradient rules, one per operator, each written
// only in standard ONNX operators. Each is tested against PyTorch autograd in
// float64 (graphgen/gradrules_test.go). Read-only after initialization.
var gradRules map[string]gradRule

func init() {
	gradRules = map[string]gradRule{
		"Conv":               gradConv,
		"BatchNormalization": gradBatchNorm,
		"Relu":               gradRelu,
		"MaxPool":            gradMaxPool,
		"AveragePool":        gradAveragePool,
		"GlobalAveragePool":  gradGlobalAveragePool,
		"Gemm":               gradGemm,
		"MatMul":             gradMatMul,
		"Add":                gradAdd,
		"Sub":                gradSub,
		"Mul":                gradMul,
		"Div":                gradDiv,
		"Pow":                gradPow,
		"Sum":                gradSum,
		"Neg":                gradNeg,
		"Exp":                gradExp,
		"Log":                gradLog,
		"Sqrt":               gradSqrt,
		"Reciprocal":         gradReciprocal,
		"Abs":                gradAbs,
		"Sigmoid":            gradSigmoid,
		"Tanh":               gradTanh,
		"Identity":           gradIdentity,
		"Cast":               gradCast,
		"Softmax":            gradSoftmax,
		"LogSoftmax":         gradLogSoftmax,
		"ReduceSum":          gradReduce,
		"ReduceMean":         gradReduce,
		"ReduceSumSquare":    gradReduce,
		"Flatten":            gradReshapeLike,
		"Reshape":            gradReshapeLike,
		"Squeeze":            gradReshapeLike,
		"Unsqueeze":          gradReshapeLike,
		"Transpose":          gradTranspose,
		"Expand":             gradExpand,
		"Where":              gradWhere,
		"Concat":             gradConcat,
	}
}

// ---- convolution and normalization ----

// Conv: the input gradient is a ConvTranspose of dY with the same weight
// (for stride 1 written as a Conv with the flipped, transposed kernel); the
// bias gradient sums dY over batch and space. The weight gradient of an
// ungrouped 2-D convolution with at least 16 input channels is one
// batched MatMul per kernel tap, dY (N,Co,HoWo) times the input shifted by
// the tap and strided (N,Ci,HoWo) transposed, summed over the batch:
// im2col without materializing the whole column matrix, 2 to 15 times
// faster in ONNX Runtime than the alternative; for kernels larger than 1x1
// on output planes under 512 the column matrix is materialized after all,
// by a one-hot grouped Conv, and multiplied once (convWeightGradIm2col),
// except for "same" convolutions on planes of tapsMinSamePlane or more
// (ResNet's 14x14 3x3s), whose four-Pad taps are faster.
// Otherwise (the 3-channel stem, groups) it is a convolution of the input
// (batch and channels swapped, grouped by the forward groups) with dY as
// the kernel, dilated by the forward stride.
func gradConv(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	g := c.g
	x, w, d := n.Inputs[0], n.Inputs[1], dy[0]
	if !x.Shape.Static() || !w.Shape.Static() || !d.Shape.Static() {
		return nil, fmt.Errorf("needs static shapes")
	}
	k := x.Shape.Rank() - 2
	kernel := w.Shape[2:].Ints()
	sp, err := readSpatial(n, k, kernel)
	if err != nil {
		return nil, err
	}
	group := n.Int("group", 1)
	out := make([]*Value, len(n.Inputs))
	if need[0] && group == 1 && k == 2 && kernel[0] == 1 && kernel[1] == 1 && sp.strides[0] == 1 && sp.strides[1] == 1 &&
		sp.padsBegin[0]+sp.padsBegin[1]+sp.padsEnd[0]+sp.padsEnd[1] == 0 {
		// A pointwise convolution's input gradient is W^T dY per image: a
		// pointwise Conv with the transposed weight, without ConvTranspose's
		// col2im pass. ONNX Runtime runs it as fast as the same product as a
		// batched MatMul with the weight's transpose folded in, and up to
		// 1.4 times faster (BenchmarkKernelPointwiseInputGrad; 154 to 133
		// ms per ResNet-50 step over the 30 nodes, docs/benchmarks.md).
		out[0] = g.Conv(d, g.Transpose(w, 1, 0, 2, 3), nil, ConvOpts{})
	} else if need[0] && group == 1 && k == 2 && sp.strides[0] == 1 && sp.strides[1] == 1 && flippable(kernel, sp) {
		// With stride 1 the transposed convolution is a convolution with the
		// flipped, transposed kernel and the complementary padding: up to 1.7
		// times faster than ConvTranspose in ONNX Runtime on ResNet's 3x3
		// planes, as fast on the 7x7 ones (BenchmarkKernelConvInputGrad).
		pads := make([]int64, 4)
		for i := 0; i < 2; i++ {
			span := (kernel[i]-1)*sp.dilations[i] + 1
			pads[i], pads[2+i] = span-1-sp.padsBegin[i], span-1-sp.padsEnd[i]
		}
		out[0] = g.Conv(d, flipKernel(g, w), nil, ConvOpts{Pads: pads, Dilations: sp.dilations})
	} else if need[0] {
		opad := make([]int64, k)
		anyPad := false
		for i := 0; i < k; i++ {
			full := sp.strides[i]*(d.Shape[2+i].Size-1) + (kernel[i]-1)*sp.dilations[i] + 1 - sp.padsBegin[i] - sp.padsEnd[i]
			opad[i] = x.Shape[2+i].Size - full
			if opad[i] < 0 || opad[i] >= max(sp.strides[i], sp.dilations[i]) {
				return nil, fmt.Errorf("input gradient: cannot reach size %v from %v", x.Shape, d.Shape)
			}
			anyPad = anyPad || opad[i] > 0
		}
		o := ConvOpts{Strides: sp.strides, Pads: sp.pads(), Dilations: sp.dilations, Group: group}
		if anyPad {
			o.OutputPadding = opad
		}
		out[0] = g.ConvTranspose(d, w, nil, o)
	}
	if need[1] && group == 1 && k == 2 && x.Shape[1].Size >= 16 {
		plane := d.Shape[2].Size * d.Shape[3].Size
		same := sp.strides[0] == 1 && sp.strides[1] == 1 && d.Shape[2].Size == x.Shape[2].Size && d.Shape[3].Size == x.Shape[3].Size
		if kernel[0]*kernel[1] > 1 && plane < 512 && !(same && plane >= tapsMinSamePlane) {
			out[1] = convWeightGradIm2col(g, x, d, kernel, sp)
		} else {
			out[1] = convWeightGradTaps(g, x, d, kernel, sp, sp.strides[0] == 1 && sp.strides[1] == 1)
		}
	} else if need[1] {
		nb, ci := x.Shape[0].Size, x.Shape[1].Size
		perm := []int64{1, 0}
		for i := 0; i < k; i++ {
			perm = append(perm, int64(2+i))
		}
		xt := g.Transpose(x, perm...) // (Ci, N, spatial)
		if group > 1 {
			// (N, G, Ci/G, sp) -> (Ci/G, G, N, sp) -> (Ci/G, G*N, sp)
			s5 := append([]int64{nb, group, ci / group}, x.Shape[2:].Ints()...)
			p5 := []int64{2, 1, 0}
			for i := 0; i < k; i++ {
				p5 = append(p5, int64(3+i))
			}
			xt = g.Transpose(g.Reshape(x, s5...), p5...)
			xt = g.Reshape(xt, append([]int64{ci / group, group * nb}, x.Shape[2:].Ints()...)...)
		}
		dyt := g.Transpose(d, perm...) // (Co, N, out spatial)
		r := g.Conv(xt, dyt, nil, ConvOpts{Strides: sp.dilations, Dilations: sp.strides, Pads: sp.pads(), Group: group})
		// r is (Ci/G, Co, k'...), k' >= kernel when the stride skips the end
		if r.Shape.Static() {
			var axes, ends []int64
			for i := 0; i < k; i++ {
				if r.Shape[2+i].Size != kernel[i] {
					axes = append(axes, int64(2+i))
					ends = append(ends, kernel[i])
				}
			}
			if len(axes) > 0 {
				r = g.Slice(r, make([]int64, len(axes)), ends, axes)
			}
		}
		out[1] = g.Transpose(r, perm...)
	}
	if len(need) > 2 && need[2] {
		axes := []int64{0}
		for i := 0; i < k; i++ {
			axes = append(axes, int64(2+i))
		}
		out[2] = g.ReduceSum(d, axes, false)
	}
	return out, nil
}

// convWeightGradTaps is the weight gradient of an ungrouped 2-D convolution
// as one MatMul per kernel tap (see gradConv). With large planes the MatMuls
// are batched over the images and summed; with small planes (deep layers,
// Ho*Wo < 512, which 1x1 kernels and the "same" convolutions of at least
// tapsMinSamePlane bring here: other larger kernels go to
// convWeightGradIm2col) the batch is folded into the reduction dimension
// instead, by transposing dY and the input once, because a GEMM whose
// inner dimension is a 7x7 plane runs at a fraction of the machine's speed.
//
// Each tap pairs dY with the input shifted by the tap's offset. With stride 1
// the shift is applied to dY instead, by a Pad whose negative entries crop
// (ONNX's Pad allows them): the input is then used as it is, with no padded
// copy, and the centre tap of a padded kernel needs no copy at all, which
// is up to 1.3 times faster on ResNet's 3x3 planes
// (BenchmarkKernelWeightGrad3x3). When dY also has the input's size (the
// "same" convolutions, ResNet's 3x3) the shift (sh, sw) is split between
// the two: sum over h, w of dY[h-sh, w-sw] x[h, w] equals the sum of
// dY[h-sh, w] x[h, w+sw], dY shifted by rows and x by columns, both with
// zeros shifted in, so a 3x3 kernel needs two row-shifted dYs and two
// column-shifted inputs instead of eight shifted dYs, and the Pads, which
// ONNX Runtime runs on one thread, halve. With a larger stride the taps
// are strided slices of the padded input.
//
// shift chooses the dY shifts; it must only be true with stride 1.
func convWeightGradTaps(g *Graph, x, d *Value, kernel []int64, sp spatial, shift bool) *Value {
	n, ci := x.Shape[0].Size, x.Shape[1].Size
	h, w := x.Shape[2].Size, x.Shape[3].Size
	co, ho, wo := d.Shape[1].Size, d.Shape[2].Size, d.Shape[3].Size
	fold := ho*wo < 512
	xp, dt := x, d
	if fold {
		xp = g.Transpose(x, 1, 0, 2, 3) // (Ci, N, H, W)
		dt = g.Transpose(d, 1, 0, 2, 3) // (Co, N, Ho, Wo)
	}
	if !shift && sp.padsBegin[0]+sp.padsBegin[1]+sp.padsEnd[0]+sp.padsEnd[1] > 0 {
		xp = g.Pad(xp, []int64{0, 0, sp.padsBegin[0], sp.padsBegin[1], 0, 0, sp.padsEnd[0], sp.padsEnd[1]}, 0)
	}
	// lhs and rhs are the tap's MatMul operands: dY (Co, K) or (N, Co, K), and
	// the input transposed, (K, Ci) or (N, K, Ci).
	lhs := func(v *Value) *Value {
		plane := v.Shape[2].Size * v.Shape[3].Size
		if fold {
			return g.Reshape(v, co, n*plane)
		}
		return g.Reshape(v, n, co, plane)
	}
	rhs := func(v *Value) *Value {
		plane := v.Shape[2].Size * v.Shape[3].Size
		// ONNX Runtime fuses these Transposes into the MatMuls.
		if fold {
			return g.Transpose(g.Reshape(v, ci, n*plane), 1, 0)
		}
		return g.Transpose(g.Reshape(v, n, ci, plane), 0, 2, 1)
	}
	var dyWhole, xWhole *Value
	same := shift && h == ho && w == wo
	dyRows := map[int64]*Value{} // same: dY shifted by sh rows, as lhs
	xCols := map[int64]*Value{}  // same: the input shifted by sw columns, as rhs
	var taps []*Value
	for kh := int64(0); kh < kernel[0]; kh++ {
		for kw := int64(0); kw < kernel[1]; kw++ {
			h0, w0 := kh*sp.dilations[0], kw*sp.dilations[1]
			var a, b *Value
			if shift {
				// dY index i meets input index i + s: shift dY by s.
				sh, sw := h0-sp.padsBegin[0], w0-sp.padsBegin[1]
				if xWhole == nil {
					xWhole = rhs(xp)
				}
				b = xWhole
				if same {
					if dyRows[sh] == nil {
						v := dt
						if sh != 0 {
							v = g.Pad(dt, []int64{0, 0, sh, 0, 0, 0, -sh, 0}, 0)
						}
						dyRows[sh] = lhs(v)
					}
					if xCols[sw] == nil {
						xCols[sw] = xWhole
						if sw != 0 {
							xCols[sw] = rhs(g.Pad(xp, []int64{0, 0, 0, -sw, 0, 0, 0, sw}, 0))
						}
					}
					a, b = dyRows[sh], xCols[sw]
				} else {
					a = lhs(g.Pad(dt, []int64{0, 0, sh, sw, 0, 0, h - ho - sh, w - wo - sw}, 0))
				}
			} else {
				if dyWhole == nil {
					dyWhole = lhs(dt)
				}
				a = dyWhole
				b = rhs(g.SliceSteps(xp, []int64{h0, w0}, []int64{h0 + (ho-1)*sp.strides[0] + 1, w0 + (wo-1)*sp.strides[1] + 1},
					[]int64{2, 3}, sp.strides))
			}
			tap := g.MatMul(a, b) // (Co, Ci) or (N, Co, Ci)
			if !fold {
				tap = g.ReduceSum(tap, []int64{0}, false)
			}
			taps = append(taps, g.Unsqueeze(tap, 2))
		}
	}
	r := taps[0]
	if len(taps) > 1 {
		r = g.Concat(2, taps...)
	}
	return g.Reshape(r, co, ci, kernel[0], kernel[1])
}

// tapsMinSamePlane: "same" convolutions (stride 1, dY the input's size)
// with output planes of this size or more take the taps of
// convWeightGradTaps, whose row and column shifts need four Pads for a
// 3x3 kernel: 20.0 to 20.5 ms against 24.2 to 24.5 for the column matrix
// at 256x14, while at 512x7 the column matrix stays faster (20.3 to 20.4
// against 21.9 to 22.7; BenchmarkKernelWeightGrad3x3, 2026-11-28).
const tapsMinSamePlane = 14 * 14

// convWeightGradIm2col is the weight gradient of an ungrouped 2-D
// convolution on small output planes (Ho*Wo < 512, but from 14x14 only the
// strided and the not-"same" ones; in ResNets at 224 the 7x7 planes and the
// downsampling 3x3 onto 14x14) as one MatMul over the column matrix: a
// grouped Conv of the input with a one-hot kernel (one group per input
// channel, one output channel per kernel tap, the forward's strides, pads
// and dilations) writes every tap's view of the input, (N, Ci*taps, Ho, Wo),
// in one pass over both threads; then dY (Co, N*Ho*Wo) times its transpose
// gives (Co, Ci*taps), the weight's layout. The identity kernel multiplies
// each value by 1 and adds zeros, so the columns are exact. It was 1.2 to
// 1.3 times faster than one MatMul per tap on eight shifted copies of dY at
// 14x14 and 7x7, whose Pads run on one thread at a cost per 7 or 14 wide row
// (BenchmarkKernelWeightGrad3x3, stride 1); with four shifted copies (see
// convWeightGradTaps) it still is at 7x7 but not at 14x14
// (tapsMinSamePlane); on larger planes it is not faster. Strided small-plane
// convolutions (ResNet's downsampling 3x3) take it too, in place of strided
// slices of the input, unmeasured apart.
func convWeightGradIm2col(g *Graph, x, d *Value, kernel []int64, sp spatial) *Value {
	n, ci := x.Shape[0].Size, x.Shape[1].Size
	co, ho, wo := d.Shape[1].Size, d.Shape[2].Size, d.Shape[3].Size
	taps := kernel[0] * kernel[1]
	id := FilledTensor(x.DType, []int64{ci * taps, 1, kernel[0], kernel[1]}, 0)
	for c := int64(0); c < ci; c++ {
		for t := int64(0); t < taps; t++ {
			id.set((c*taps+t)*taps+t, 1)
		}
	}
	col := g.Conv(x, g.Const(id), nil, ConvOpts{Strides: sp.strides, Pads: sp.pads(), Dilations: sp.dilations, Group: ci})
	k := n * ho * wo
	dt := g.Reshape(g.Transpose(d, 1, 0, 2, 3), co, k)
	// (Ci*taps, N, Ho, Wo) -> (K, Ci*taps); ONNX Runtime folds the last
	// Transpose into the MatMul.
	ct := g.Transpose(g.Reshape(g.Transpose(col, 1, 0, 2, 3), ci*taps, k), 1, 0)
	return g.Reshape(g.MatMul(dt, ct), co, ci, kernel[0], kernel[1])
}

// BatchNormalization. With RoleBatchStats (training mode; see
// BatchNormBatchStats) the input is xs = x - shift, the mean input m its
// batch mean and the variance its batch variance, and the gradient with
// respect to x is
//
//	dX = gamma/sigma * (dY - mean(dY) - xhat * mean(dY*xhat)),
//	dgamma = sum(dY*xhat), dbeta = sum(dY),
//
// over batch and space per channel, with sigma = sqrt(var+eps) and xhat =
// (xs-m)/sigma, so sum(dY*xhat) = (sum(dY*xs) - m*sum(dY))/sigma, where
// sum(dY*xs) is channelDot. The affine-in-xhat term is one inference-mode
// BatchNormalization of xs, or on large planes the same map as a depthwise
// Conv, which ONNX Runtime fuses with the Add (see affineConvMinPlane). The
// gradient is returned for the node's input xs; the shifting Sub passes it
// on to x unchanged and none to the shift: the output does not depend on a
// shift that the statistics remove again, and when the shift is the batch
// mean the formula already accounts for its dependence on x. Without the role
// (inference mode) the statistics are constants and dX = gamma/sigma * dY.
func gradBatchNorm(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	g := c.g
	x, scale, variance, d := n.Inputs[0], n.Inputs[1], n.Inputs[4], dy[0]
	if len(n.Outputs) > 1 || n.Int("training_mode", 0) != 0 {
		return nil, fmt.Errorf("training_mode=1 is not differentiated; build with BatchNormBatchStats")
	}
	if !x.Shape.Static() {
		return nil, fmt.Errorf("needs a static shape")
	}
	if scale.DType != x.DType || variance.DType != x.DType {
		return nil, fmt.Errorf("mixed types %v, %v, %v are not differentiated", x.DType, scale.DType, variance.DType)
	}
	train := n.Role == RoleBatchStats
	if (need[3] || need[4]) && !train {
		return nil, fmt.Errorf("gradient with respect to running statistics is not supported")
	}
	eps := float64(n.Float("epsilon", 1e-5))
	r := x.Shape.Rank()
	axes := []int64{0}
	for i := 2; i < r; i++ {
		axes = append(axes, int64(i))
	}
	invstd := g.Reciprocal(g.Sqrt(g.Add(variance, c.scalar(variance.DType, eps)))) // (C)
	out := make([]*Value, 5)
	var dbeta, dgamma *Value
	if need[2] || (train && (need[0] || need[1])) {
		dbeta = g.ReduceSum(d, axes, false)
	}
	if need[1] || (train && need[0]) {
		var xhatDot *Value
		if train {
			// (sum(dY*xs) - m*sum(dY))/sigma
			xhatDot = g.Mul(g.Sub(g.channelDot(d, x), g.Mul(n.Inputs[3], dbeta)), invstd)
		} else {
			mean := n.Inputs[3]
			xc := g.Sub(x, g.Reshape(mean, channelShape(r)...))
			xhatDot = g.Mul(g.ReduceSum(g.Mul(d, xc), axes, false), invstd)
		}
		dgamma = xhatDot
	}
	out[1], out[2] = dgamma, dbeta
	if need[0] {
		k1 := g.Mul(scale, invstd) // gamma/sigma per channel
		dx := g.Mul(d, g.Reshape(k1, channelShape(r)...))
		if train {
			m := float64(x.Shape.NumElements() / x.Shape[1].Size)
			negInvM := c.scalar(scale.DType, -1/m)
			k2 := g.Mul(g.Mul(k1, dgamma), negInvM)
			k3 := g.Mul(g.Mul(k1, dbeta), negInvM)
			if affineAsConv(x) {
				a := g.Mul(k2, invstd) // (xs-m)*a + k3 = xs*a + (k3 - m*a)
				dx = g.Add(dx, g.depthwiseAffine(x, a, g.Sub(k3, g.Mul(n.Inputs[3], a))))
			} else {
				dx = g.Add(dx, g.BatchNorm(x, k2, k3, n.Inputs[3], variance, float32(eps)))
			}
		}
		out[0] = dx
	}
	return out, nil
}

// ---- activations and pooling ----

// Relu: dY where the output is positive (PyTorch's convention at 0), as dY
// times a 0/1 mask. In float32 the mask is HardSigmoid(y) with alpha the
// largest float, max(0, min(1, alpha*y)): 0 at y = 0 and 1 for every y >=
// 1/alpha = 2.9e-39, in one pass that ONNX Runtime spreads over its
// threads, where Greater then Cast makes two and its Cast runs on one
// thread (1.4 times faster with the Mul at ResNet-50's 256x56,
// BenchmarkKernelReluGrad; docs/benchmarks.md). Only a subnormal output
// below 2.9e-39, which a ReLU after BatchNorm's affine map reaches only by
// cancelling to within 1e-38 without reaching 0, gets a fraction of dY
// where PyTorch passes all of it. Other types keep Cast(y > 0): ONNX
// Runtime's CPU HardSigmoid is float32 only, and with float16's largest
// value as alpha every output below 1.5e-5, a range float16 activations
// do reach, would get a fraction of dY. Where with a broadcast zero
// is slower than either. Mul differs from a selection only where dY is not
// finite and the mask is 0 (NaN instead of 0), which can only make the
// step's all-finite check stricter: an overflowing fp16 step is skipped
// rather than continued with the overflow zeroed.
func gradRelu(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	y := n.Outputs[0]
	var mask *Value
	if y.DType == Float {
		mask = c.g.HardSigmoid(y, math.MaxFloat32, 0)
	} else {
		mask = c.g.Cast(c.g.Greater(y, c.scalar(y.DType, 0)), y.DType)
	}
	return []*Value{c.g.Mul(dy[0], mask)}, nil
}

// MaxPool: dY scattered (added) to the positions of the maxima, read from
// the Indices output (added to the forward node when it has none). ONNX
// Runtime's indices are flat over the whole NCHW tensor.
func gradMaxPool(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	g := c.g
	x := n.Inputs[0]
	if !x.Shape.Static() {
		return nil, fmt.Errorf("needs a static shape")
	}
	if n.Int("storage_order", 0) != 0 {
		return nil, fmt.Errorf("storage_order=1 (column-major indices) is not supported")
	}
	if len(n.Outputs) == 1 {
		y := n.Outputs[0]
		idx := &Value{Name: g.uniqueName(n.Name + ":indices"), DType: Int64, Shape: y.Shape.Clone(), Producer: n}
		n.Outputs = append(n.Outputs, idx)
	}
	total := x.Shape.NumElements()
	flatIdx := g.Reshape(n.Outputs[1], -1)
	// ONNX Runtime's CPU ScatterElements has no float16 "add"; scatter
	// float16 gradients in float32 (exact: each position gets one or a few
	// float16 terms).
	acc := x.DType
	if acc == Float16 {
		acc = Float
	}
	flatDy := g.Cast(g.Reshape(dy[0], -1), acc)
	zeros := g.ConstantOfShape(acc, 0, total)
	dx := g.ScatterElements(zeros, flatIdx, flatDy, 0, "add")
	return []*Value{g.Cast(g.Reshape(dx, x.Shape.Ints()...), x.DType)}, nil
}

// windowCounts is, per output position along one axis, how many input
// elements the average divides by.
func windowCounts(in, out, k, s, pb, pe int64, includePad bool) []float64 {
	counts := make([]float64, out)
	for o := int64(0); o < out; o++ {
		start := o*s - pb
		end := min(start+k, in+pe)
		if !includePad {
			start, end = max(start, 0), min(end, in)
		}
		counts[o] = float64(end - start)
	}
	return counts
}

// AveragePool: dY divided by each window's count, spread back over the
// window by a depthwise ConvTranspose with a kernel of ones; cropped or
// padded at the end where ceil_mode windows overhang or the stride skips.
func gradAveragePool(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	g := c.g
	x, d := n.Inputs[0], dy[0]
	if !x.Shape.Static() {
		return nil, fmt.Errorf("needs a static shape")
	}
	k := x.Shape.Rank() - 2
	kernel := n.Ints("kernel_shape")
	sp, err := readSpatial(n, k, kernel)
	if err != nil {
		return nil, err
	}
	if n.Ints("dilations") != nil {
		for _, v := range sp.dilations {
			if v != 1 {
				return nil, fmt.Errorf("dilated average pooling is not supported")
			}
		}
	}
	includePad := n.Int("count_include_pad", 0) == 1
	if includePad && n.Int("ceil_mode", 0) == 1 {
		// Runtimes disagree on the divisor of a ceil_mode window that runs
		// past the padding (ONNX Runtime divides by the kernel area, PyTorch
		// by the part inside the padded input), so no rule can match both.
		return nil, fmt.Errorf("AveragePool with ceil_mode=1 and count_include_pad=1 is not differentiated (runtimes disagree on its divisor)")
	}
	// divisor: outer product of the per-axis counts, shape (1,1,out...)
	div := []float64{1}
	for i := 0; i < k; i++ {
		cnt := windowCounts(x.Shape[2+i].Size, d.Shape[2+i].Size, kernel[i], sp.strides[i], sp.padsBegin[i], sp.padsEnd[i], includePad)
		next := make([]float64, 0, len(div)*len(cnt))
		for _, a := range div {
			for _, b := range cnt {
				next = append(next, a*b)
			}
		}
		div = next
	}
	inv := FilledTensor(d.DType, append([]int64{1, 1}, d.Shape[2:].Ints()...), 0)
	for i, v := range div {
		setTensorValue(inv, i, 1/v)
	}
	scaled := g.Mul(d, g.Const(inv))
	ch := x.Shape[1].Size
	ones := g.Const(FilledTensor(d.DType, append([]int64{ch, 1}, kernel...), 1))
	opad := make([]int64, k)
	anyPad, crop := false, false
	for i := 0; i < k; i++ {
		full := sp.strides[i]*(d.Shape[2+i].Size-1) + kernel[i] - sp.padsBegin[i] - sp.padsEnd[i]
		diff := x.Shape[2+i].Size - full
		switch {
		case diff > 0 && diff < sp.strides[i]:
			opad[i], anyPad = diff, true
		case diff < 0:
			crop = true
		case diff != 0:
			return nil, fmt.Errorf("cannot reach input size %v from %v", x.Shape, d.Shape)
		}
	}
	o := ConvOpts{Strides: sp.strides, Pads: sp.pads(), Group: ch}
	if anyPad {
		o.OutputPadding = opad
	}
	dx := g.ConvTranspose(scaled, ones, nil, o)
	if crop {
		axes := make([]int64, k)
		for i := range axes {
			axes[i] = int64(2 + i)
		}
		dx = g.Slice(dx, make([]int64, k), x.Shape[2:].Ints(), axes)
	}
	return []*Value{dx}, nil
}

func setTensorValue(t *Tensor, i int, v float64) {
	switch t.DType {
	case Float:
		t.Float32[i] = float32(v)
	default:
		putScalar(t.Raw[i*t.DType.Size():], t.DType, v)
	}
}

// GlobalAveragePool: dY / (H*W) expanded over the plane.
func gradGlobalAveragePool(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	x := n.Inputs[0]
	if !x.Shape.Static() {
		return nil, fmt.Errorf("needs a static shape")
	}
	area := x.Shape.NumElements() / (x.Shape[0].Size * x.Shape[1].Size)
	scaled := c.g.Mul(dy[0], c.scalar(x.DType, 1/float64(area)))
	return []*Value{c.g.Expand(scaled, x.Shape.Ints()...)}, nil
}

// ---- linear algebra ----

// Gemm: Y = alpha*A'B' + beta*C, A' = A or A^T, B' = B or B^T.
func gradGemm(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	g := c.g
	a, b, d := n.Inputs[0], n.Inputs[1], dy[0]
	ta, tb := n.Int("transA", 0) == 1, n.Int("transB", 0) == 1
	alpha, beta := float64(n.Float("alpha", 1)), float64(n.Float("beta", 1))
	if alpha != 1 {
		d = g.Mul(d, c.scalar(d.DType, alpha))
	}
	out := make([]*Value, len(n.Inputs))
	if need[0] {
		switch {
		case !ta && !tb:
			out[0] = g.Gemm(d, b, nil, false, true)
		case !ta && tb:
			out[0] = g.Gemm(d, b, nil, false, false)
		case ta && !tb:
			out[0] = g.Gemm(b, d, nil, false, true)
		default:
			out[0] = g.Gemm(b, d, nil, true, true)
		}
	}
	if need[1] {
		switch {
		case !ta && !tb:
			out[1] = g.Gemm(a, d, nil, true, false)
		case ta && !tb:
			out[1] = g.Gemm(a, d, nil, false, false)
		case !ta && tb:
			out[1] = g.Gemm(d, a, nil, true, false)
		default:
			out[1] = g.Gemm(d, a, nil, true, true)
		}
	}
	if len(n.Inputs) > 2 && need[2] {
		dc := dy[0]
		if beta != 1 {
			dc = g.Mul(dc, c.scalar(dc.DType, beta))
		}
		var err error
		if out[2], err = c.unbroadcast(dc, n.Inputs[2].Shape); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func swapLast(g *Graph, v *Value) *Value {
	r := v.Shape.Rank()
	perm := make([]int64, r)
	for i := range perm {
		perm[i] = int64(i)
	}
	perm[r-1], perm[r-2] = perm[r-2], perm[r-1]
	return g.Transpose(v, perm...)
}

// MatMul: dA = dY B^T, dB = A^T dY, summed over broadcast batch dims.
func gradMatMul(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	g := c.g
	a, b := n.Inputs[0], n.Inputs[1]
	out := make([]*Value, 2)
	var err error
	if need[0] {
		if out[0], err = c.unbroadcast(g.MatMul(dy[0], swapLast(g, b)), a.Shape); err != nil {
			return nil, err
		}
	}
	if need[1] {
		if out[1], err = c.unbroadcast(g.MatMul(swapLast(g, a), dy[0]), b.Shape); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ---- elementwise arithmetic (with broadcasting) ----

func binaryGrads(c *gradCtx, n *Node, need []bool, da, db func() *Value) ([]*Value, error) {
	out := make([]*Value, 2)
	var err error
	if need[0] {
		if out[0], err = c.unbroadcast(da(), n.Inputs[0].Shape); err != nil {
			return nil, err
		}
	}
	if need[1] {
		if out[1], err = c.unbroadcast(db(), n.Inputs[1].Shape); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func gradAdd(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	return binaryGrads(c, n, need, func() *Value { return dy[0] }, func() *Value { return dy[0] })
}

func gradSub(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	if n.Role == RoleCentering {
		return []*Value{dy[0], nil}, nil
	}
	return binaryGrads(c, n, need, func() *Value { return dy[0] }, func() *Value { return c.g.Neg(dy[0]) })
}

func gradMul(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	a, b := n.Inputs[0], n.Inputs[1]
	return binaryGrads(c, n, need, func() *Value { return c.g.Mul(dy[0], b) }, func() *Value { return c.g.Mul(dy[0], a) })
}

// Div: dA = dY/B, dB = -dY*Y/B.
func gradDiv(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	b, y := n.Inputs[1], n.Outputs[0]
	return binaryGrads(c, n, need,
		func() *Value { return c.g.Div(dy[0], b) },
		func() *Value { return c.g.Neg(c.g.Div(c.g.Mul(dy[0], y), b)) })
}

// Pow: dA = dY*B*A^(B-1), dB = dY*Y*log(A).
func gradPow(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	g := c.g
	a, b, y := n.Inputs[0], n.Inputs[1], n.Outputs[0]
	if b.DType != a.DType {
		return nil, fmt.Errorf("exponent type %v differs from base %v", b.DType, a.DType)
	}
	return binaryGrads(c, n, need,
		func() *Value { return g.Mul(g.Mul(dy[0], b), g.Pow(a, g.Sub(b, c.scalar(b.DType, 1)))) },
		func() *Value { return g.Mul(g.Mul(dy[0], y), g.Log(a)) })
}

// Sum: each input gets dY, summed over its broadcast axes.
func gradSum(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	out := make([]*Value, len(n.Inputs))
	for i, in := range n.Inputs {
		if need[i] {
			var err error
			if out[i], err = c.unbroadcast(dy[0], in.Shape); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// ---- elementwise functions ----

func gradNeg(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	return []*Value{c.g.Neg(dy[0])}, nil
}

func gradExp(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	return []*Value{c.g.Mul(dy[0], n.Outputs[0])}, nil
}

func gradLog(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	return []*Value{c.g.Div(dy[0], n.Inputs[0])}, nil
}

// Sqrt: dY / (2Y).
func gradSqrt(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	y := n.Outputs[0]
	return []*Value{c.g.Div(c.g.Mul(dy[0], c.scalar(y.DType, 0.5)), y)}, nil
}

// Reciprocal: -dY * Y^2.
func gradReciprocal(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	y := n.Outputs[0]
	return []*Value{c.g.Neg(c.g.Mul(dy[0], c.g.Mul(y, y)))}, nil
}

// Abs: dY * sign(X) (0 at 0, as PyTorch).
func gradAbs(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	return []*Value{c.g.Mul(dy[0], c.g.Sign(n.Inputs[0]))}, nil
}

// Sigmoid: dY * Y * (1-Y).
func gradSigmoid(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	y := n.Outputs[0]
	return []*Value{c.g.Mul(dy[0], c.g.Mul(y, c.g.Sub(c.scalar(y.DType, 1), y)))}, nil
}

// Tanh: dY * (1 - Y^2).
func gradTanh(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	y := n.Outputs[0]
	return []*Value{c.g.Mul(dy[0], c.g.Sub(c.scalar(y.DType, 1), c.g.Mul(y, y)))}, nil
}

func gradIdentity(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	return []*Value{dy[0]}, nil
}

// Cast: the gradient goes back to the input's type (FP16 activations give
// FP32 master-weight gradients this way).
func gradCast(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	return []*Value{c.g.Cast(dy[0], n.Inputs[0].DType)}, nil
}

// Softmax: Y * (dY - sum(dY*Y)) along the axis.
func gradSoftmax(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	g := c.g
	y := n.Outputs[0]
	axis := n.Int("axis", -1)
	s := g.ReduceSum(g.Mul(dy[0], y), []int64{axis}, true)
	return []*Value{g.Mul(y, g.Sub(dy[0], s))}, nil
}

// LogSoftmax: dY - exp(Y) * sum(dY) along the axis.
func gradLogSoftmax(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	g := c.g
	y := n.Outputs[0]
	axis := n.Int("axis", -1)
	s := g.ReduceSum(dy[0], []int64{axis}, true)
	return []*Value{g.Sub(dy[0], g.Mul(g.Exp(y), s))}, nil
}

// ---- reductions and shape operators ----

// ReduceSum, ReduceMean, ReduceSumSquare: dY (reshaped to keep the reduced
// axes) expanded back, divided by the count for the mean, times 2X for the
// sum of squares.
func gradReduce(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	g := c.g
	x := n.Inputs[0]
	if !x.Shape.Static() {
		return nil, fmt.Errorf("needs a static shape")
	}
	axes, given, err := reduceAxes(g, n)
	if err != nil {
		return nil, err
	}
	r := x.Shape.Rank()
	if !given || len(axes) == 0 {
		if n.Int("noop_with_empty_axes", 0) == 1 {
			return []*Value{dy[0]}, nil
		}
		axes = nil
		for i := 0; i < r; i++ {
			axes = append(axes, int64(i))
		}
	}
	set, err := axesSet(axes, r)
	if err != nil {
		return nil, err
	}
	kept := make([]int64, r)
	count := int64(1)
	for i, d := range x.Shape {
		kept[i] = d.Size
		if set[i] {
			kept[i] = 1
			count *= d.Size
		}
	}
	d := dy[0]
	if n.Op == "ReduceMean" {
		d = g.Mul(d, c.scalar(d.DType, 1/float64(count)))
	}
	d, err = c.reshapeTo(d, S(kept...))
	if err != nil {
		return nil, err
	}
	dx := g.Expand(d, x.Shape.Ints()...)
	if n.Op == "ReduceSumSquare" {
		dx = g.Mul(dx, g.Mul(x, c.scalar(x.DType, 2)))
	}
	return []*Value{dx}, nil
}

// Flatten, Reshape, Squeeze, Unsqueeze: dY reshaped to the input's shape.
func gradReshapeLike(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	d, err := c.reshapeTo(dy[0], n.Inputs[0].Shape)
	out := make([]*Value, len(n.Inputs))
	out[0] = d
	return out, err
}

// Transpose: dY transposed by the inverse permutation.
func gradTranspose(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	perm := n.Ints("perm")
	r := n.Inputs[0].Shape.Rank()
	if perm == nil {
		for i := r - 1; i >= 0; i-- {
			perm = append(perm, int64(i))
		}
	}
	inv := make([]int64, len(perm))
	for i, p := range perm {
		inv[p] = int64(i)
	}
	return []*Value{c.g.Transpose(dy[0], inv...)}, nil
}

// Expand: dY summed over the broadcast axes.
func gradExpand(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	d, err := c.unbroadcast(dy[0], n.Inputs[0].Shape)
	return []*Value{d, nil}, err
}

// Where: dY goes to the branch the condition chose.
func gradWhere(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	g := c.g
	cond := n.Inputs[0]
	zero := c.scalar(dy[0].DType, 0)
	out := make([]*Value, 3)
	var err error
	if need[1] {
		if out[1], err = c.unbroadcast(g.Where(cond, dy[0], zero), n.Inputs[1].Shape); err != nil {
			return nil, err
		}
	}
	if need[2] {
		if out[2], err = c.unbroadcast(g.Where(cond, zero, dy[0]), n.Inputs[2].Shape); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Concat: each input gets its slice of dY.
func gradConcat(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	r := n.Outputs[0].Shape.Rank()
	axis, err := normAxis(n.Int("axis", 0), r)
	if err != nil {
		return nil, err
	}
	out := make([]*Value, len(n.Inputs))
	start := int64(0)
	for i, in := range n.Inputs {
		if !in.Shape[axis].Known() {
			return nil, fmt.Errorf("input %d has a dynamic size on axis %d", i, axis)
		}
		end := start + in.Shape[axis].Size
		if need[i] {
			out[i] = c.g.Slice(dy[0], []int64{start}, []int64{end}, []int64{int64(axis)})
		}
		start = end
	}
	return out, nil
}

// flippable says whether a stride-1 convolution's padding leaves a
// non-negative complementary padding for its flipped-kernel transpose.
func flippable(kernel []int64, sp spatial) bool {
	for i := range kernel {
		span := (kernel[i]-1)*sp.dilations[i] + 1
		if sp.padsBegin[i] > span-1 || sp.padsEnd[i] > span-1 {
			return false
		}
	}
	return true
}

// flipKernel turns a convolution kernel (Co, Ci, kh, kw) into the kernel
// whose convolution is the transposed convolution of the original: (Ci, Co)
// swapped and both spatial axes reversed.
//
// Reversing both spatial axes reverses the flattened kh*kw taps, done as a
// MatMul by the reversal permutation: ONNX Runtime's Slice with negative
// steps copies element by element and takes twice as long with the
// Transpose (7 ms against 3 for a 512x512x3x3 kernel, BenchmarkKernelFlip,
// about half the 7x7 convolution it serves). Multiplying by ones and adding
// zeros is exact for finite weights in float32 arithmetic (a provider that
// rounds MatMul inputs, as TF32 on recent GPUs does, rounds them as its
// convolution would).
func flipKernel(g *Graph, w *Value) *Value {
	co, ci, kh, kw := w.Shape[0].Size, w.Shape[1].Size, w.Shape[2].Size, w.Shape[3].Size
	taps := kh * kw
	rev := FilledTensor(w.DType, []int64{taps, taps}, 0)
	for i := int64(0); i < taps; i++ {
		rev.set(i*taps+taps-1-i, 1)
	}
	flipped := g.MatMul(g.Reshape(w, co*ci, taps), g.Const(rev))
	return g.Transpose(g.Reshape(flipped, co, ci, kh, kw), 1, 0, 2, 3)
}
