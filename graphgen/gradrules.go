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

// Conv: y = Conv(x, W) + b, so
//
//	dX = ConvTranspose(dY, W)                      (the transposed convolution)
//	dW = sum over the batch of x correlated with dY (per input and output channel)
//	dB = sum of dY over batch and space
//
// convInputGrad and convWeightGrad write the first two in one of several
// exact forms, chosen by convGradForms for ONNX Runtime's CPU kernels.
func gradConv(c *gradCtx, n *Node, dy []*Value, need []bool) ([]*Value, error) {
	a, err := readConvArgs(n, dy[0])
	if err != nil {
		return nil, err
	}
	out := make([]*Value, len(n.Inputs))
	if need[0] {
		if out[0], err = convInputGrad(c.g, a); err != nil {
			return nil, err
		}
	}
	if need[1] {
		out[1] = convWeightGrad(c.g, a)
	}
	if len(need) > 2 && need[2] {
		out[2] = c.g.ReduceSum(a.d, a.batchAndSpace(), false)
	}
	return out, nil
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
// on to x, and none to the shift, which BatchNormBatchStats detaches. Without the role
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
// (BenchmarkKernelReluGrad). Only a subnormal output
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
