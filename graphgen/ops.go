package graphgen

import (
	"fmt"
	"math"
)

// Typed builder methods, one per operator the project emits. Each appends a
// node through Op, so shape inference and sticky errors apply.

// ConvOpts are the sliding-window attributes of Conv and ConvTranspose.
// Nil slices take ONNX's defaults (stride 1, no padding, dilation 1).
type ConvOpts struct {
	Strides   []int64
	Pads      []int64 // begin values for every spatial dim, then end values
	Dilations []int64
	Group     int64
	// ConvTranspose only: the exact spatial output size (overrides padding
	// arithmetic) and the extra size added at the end.
	OutputShape   []int64
	OutputPadding []int64
}

func (o ConvOpts) attrs() Attrs {
	a := Attrs{}
	if o.Strides != nil {
		a["strides"] = o.Strides
	}
	if o.Pads != nil {
		a["pads"] = o.Pads
	}
	if o.Dilations != nil {
		a["dilations"] = o.Dilations
	}
	if o.Group > 1 {
		a["group"] = o.Group
	}
	if o.OutputShape != nil {
		a["output_shape"] = o.OutputShape
	}
	if o.OutputPadding != nil {
		a["output_padding"] = o.OutputPadding
	}
	return a
}

// missing records an error when a required input is nil and says so.
func (g *Graph) missing(op string, vs ...*Value) bool {
	for i, v := range vs {
		if v == nil {
			g.fail(fmt.Errorf("%s: required input %d is nil", op, i))
			return true
		}
	}
	return false
}

// placeholder is what a builder method returns after an error.
func placeholder() *Value { return &Value{Name: "invalid"} }

// Conv is an N-d convolution; b may be nil.
func (g *Graph) Conv(x, w, b *Value, o ConvOpts) *Value { return g.conv("Conv", x, w, b, o) }

// ConvTranspose is the transpose (input gradient) of Conv; b may be nil.
func (g *Graph) ConvTranspose(x, w, b *Value, o ConvOpts) *Value {
	return g.conv("ConvTranspose", x, w, b, o)
}

func (g *Graph) conv(op string, x, w, b *Value, o ConvOpts) *Value {
	if g.missing(op, x, w) {
		return placeholder()
	}
	a := o.attrs()
	if w.Shape.Static() && w.Shape.Rank() > 2 {
		a["kernel_shape"] = w.Shape[2:].Ints()
	}
	in := []*Value{x, w}
	if b != nil {
		in = append(in, b)
	}
	return g.Op1(op, in, a)
}

// PoolOpts are the attributes of MaxPool and AveragePool.
type PoolOpts struct {
	Kernel          []int64
	Strides         []int64
	Pads            []int64
	CeilMode        bool
	CountIncludePad bool // AveragePool only
}

func (o PoolOpts) attrs() Attrs {
	a := Attrs{"kernel_shape": o.Kernel}
	if o.Strides != nil {
		a["strides"] = o.Strides
	}
	if o.Pads != nil {
		a["pads"] = o.Pads
	}
	if o.CeilMode {
		a["ceil_mode"] = int64(1)
	}
	return a
}

// MaxPool is max pooling.
func (g *Graph) MaxPool(x *Value, o PoolOpts) *Value {
	return g.Op1("MaxPool", []*Value{x}, o.attrs())
}

// MaxPoolWithIndices is max pooling that also returns the flat (per N*C
// plane offset included, row-major) index of each maximum.
func (g *Graph) MaxPoolWithIndices(x *Value, o PoolOpts) (y, indices *Value) {
	outs := g.Op("MaxPool", []*Value{x}, o.attrs(), 2)
	return outs[0], outs[1]
}

// AveragePool is average pooling.
func (g *Graph) AveragePool(x *Value, o PoolOpts) *Value {
	a := o.attrs()
	if o.CountIncludePad {
		a["count_include_pad"] = int64(1)
	}
	return g.Op1("AveragePool", []*Value{x}, a)
}

// GlobalAveragePool averages every spatial plane to 1x1.
func (g *Graph) GlobalAveragePool(x *Value) *Value {
	return g.Op1("GlobalAveragePool", []*Value{x}, nil)
}

// BatchNorm is inference-mode batch normalization with running statistics.
func (g *Graph) BatchNorm(x, scale, bias, mean, variance *Value, eps float32) *Value {
	return g.Op1("BatchNormalization", []*Value{x, scale, bias, mean, variance}, Attrs{"epsilon": eps})
}

// BatchNormTrain is training-mode batch normalization: it normalizes by the
// batch statistics and returns ONNX's running statistics,
// mean*momentum + batch*(1-momentum), where the batch variance is biased.
func (g *Graph) BatchNormTrain(x, scale, bias, mean, variance *Value, eps, momentum float32) (y, runMean, runVar *Value) {
	outs := g.Op("BatchNormalization", []*Value{x, scale, bias, mean, variance},
		Attrs{"epsilon": eps, "momentum": momentum, "training_mode": int64(1)}, 3)
	return outs[0], outs[1], outs[2]
}

// Gemm is alpha*A'*B' + beta*C with optional transposes; c may be nil.
func (g *Graph) Gemm(a, b, c *Value, transA, transB bool) *Value {
	at := Attrs{}
	if transA {
		at["transA"] = int64(1)
	}
	if transB {
		at["transB"] = int64(1)
	}
	in := []*Value{a, b}
	if c != nil {
		in = append(in, c)
	}
	return g.Op1("Gemm", in, at)
}

// MatMul is numpy-style batched matrix multiplication.
func (g *Graph) MatMul(a, b *Value) *Value { return g.Op1("MatMul", []*Value{a, b}, nil) }

func (g *Graph) unary(op string, x *Value) *Value { return g.Op1(op, []*Value{x}, nil) }

// Relu, Neg, Exp, Log, Sqrt, Reciprocal, Abs, Identity, IsNaN, Not: elementwise.
func (g *Graph) Relu(x *Value) *Value       { return g.unary("Relu", x) }
func (g *Graph) Neg(x *Value) *Value        { return g.unary("Neg", x) }
func (g *Graph) Exp(x *Value) *Value        { return g.unary("Exp", x) }
func (g *Graph) Log(x *Value) *Value        { return g.unary("Log", x) }
func (g *Graph) Sqrt(x *Value) *Value       { return g.unary("Sqrt", x) }
func (g *Graph) Reciprocal(x *Value) *Value { return g.unary("Reciprocal", x) }
func (g *Graph) Abs(x *Value) *Value        { return g.unary("Abs", x) }
func (g *Graph) Identity(x *Value) *Value   { return g.unary("Identity", x) }

// Detach is x with no gradient flowing back through it (PyTorch's detach):
// an Identity that autodiff treats as a constant.
func (g *Graph) Detach(x *Value) *Value {
	y := g.Identity(x)
	if y.Producer != nil {
		y.Producer.Role = RoleDetached
	}
	return y
}
func (g *Graph) IsNaN(x *Value) *Value   { return g.unary("IsNaN", x) }
func (g *Graph) Not(x *Value) *Value     { return g.unary("Not", x) }
func (g *Graph) Sign(x *Value) *Value    { return g.unary("Sign", x) }
func (g *Graph) Sigmoid(x *Value) *Value { return g.unary("Sigmoid", x) }
func (g *Graph) Tanh(x *Value) *Value    { return g.unary("Tanh", x) }

// HardSigmoid is max(0, min(1, alpha*x + beta)), elementwise.
func (g *Graph) HardSigmoid(x *Value, alpha, beta float32) *Value {
	return g.Op1("HardSigmoid", []*Value{x}, Attrs{"alpha": alpha, "beta": beta})
}

// IsInf is true for +Inf and -Inf.
func (g *Graph) IsInf(x *Value) *Value { return g.unary("IsInf", x) }

func (g *Graph) binary(op string, a, b *Value) *Value {
	return g.Op1(op, g.alignRanks(a, b), nil)
}

// alignRanks gives every lower-rank input of a broadcasting operator the
// highest rank by prepending 1s (a free Reshape). The result is the same, but
// ONNX Runtime's CPU kernels broadcast across different ranks through a
// generic path tens of times slower (BenchmarkKernelBroadcast).
func (g *Graph) alignRanks(vs ...*Value) []*Value {
	r := 0
	for _, v := range vs {
		if v == nil || v.Shape == nil {
			return vs
		}
		r = max(r, v.Shape.Rank())
	}
	out := make([]*Value, len(vs))
	for i, v := range vs {
		out[i] = v
		if v.Shape.Rank() < r && v.Shape.Static() {
			s := make([]int64, r-v.Shape.Rank(), r)
			for j := range s {
				s[j] = 1
			}
			out[i] = g.Reshape(v, append(s, v.Shape.Ints()...)...)
		}
	}
	return out
}

// Add, Sub, Mul, Div, Pow, And, Or, Equal, Less: elementwise with broadcasting.
func (g *Graph) Add(a, b *Value) *Value   { return g.binary("Add", a, b) }
func (g *Graph) Sub(a, b *Value) *Value   { return g.binary("Sub", a, b) }
func (g *Graph) Mul(a, b *Value) *Value   { return g.binary("Mul", a, b) }
func (g *Graph) Div(a, b *Value) *Value   { return g.binary("Div", a, b) }
func (g *Graph) Pow(a, b *Value) *Value   { return g.binary("Pow", a, b) }
func (g *Graph) And(a, b *Value) *Value   { return g.binary("And", a, b) }
func (g *Graph) Or(a, b *Value) *Value    { return g.binary("Or", a, b) }
func (g *Graph) Equal(a, b *Value) *Value { return g.binary("Equal", a, b) }
func (g *Graph) Less(a, b *Value) *Value  { return g.binary("Less", a, b) }

// Greater is elementwise a > b.
func (g *Graph) Greater(a, b *Value) *Value { return g.binary("Greater", a, b) }

// Sum adds any number of same-typed tensors with broadcasting.
func (g *Graph) Sum(xs ...*Value) *Value {
	if len(xs) == 0 || g.missing("Sum", xs...) {
		g.Failf("Sum: needs at least one input")
		return placeholder()
	}
	if len(xs) == 1 {
		return xs[0]
	}
	return g.Op1("Sum", g.alignRanks(xs...), nil)
}

// Where selects x where cond is true, else y.
func (g *Graph) Where(cond, x, y *Value) *Value {
	return g.Op1("Where", g.alignRanks(cond, x, y), nil)
}

// Cast converts to another element type.
func (g *Graph) Cast(x *Value, to DType) *Value {
	if g.missing("Cast", x) {
		return placeholder()
	}
	if x.DType == to {
		return x
	}
	return g.Op1("Cast", []*Value{x}, Attrs{"to": int64(to)})
}

// Softmax along axis.
func (g *Graph) Softmax(x *Value, axis int64) *Value {
	return g.Op1("Softmax", []*Value{x}, Attrs{"axis": axis})
}

// LogSoftmax along axis.
func (g *Graph) LogSoftmax(x *Value, axis int64) *Value {
	return g.Op1("LogSoftmax", []*Value{x}, Attrs{"axis": axis})
}

// Flatten reshapes to 2-D, splitting the dims before axis from the rest.
func (g *Graph) Flatten(x *Value, axis int64) *Value {
	return g.Op1("Flatten", []*Value{x}, Attrs{"axis": axis})
}

// Reshape to a constant shape (0 copies a dim, -1 is inferred).
func (g *Graph) Reshape(x *Value, shape ...int64) *Value {
	return g.Op1("Reshape", []*Value{x, g.Ints64(shape...)}, nil)
}

// Transpose permutes dims.
func (g *Graph) Transpose(x *Value, perm ...int64) *Value {
	return g.Op1("Transpose", []*Value{x}, Attrs{"perm": perm})
}

// Squeeze removes size-1 dims.
func (g *Graph) Squeeze(x *Value, axes ...int64) *Value {
	return g.Op1("Squeeze", []*Value{x, g.Ints64(axes...)}, nil)
}

// Unsqueeze inserts size-1 dims.
func (g *Graph) Unsqueeze(x *Value, axes ...int64) *Value {
	return g.Op1("Unsqueeze", []*Value{x, g.Ints64(axes...)}, nil)
}

// Expand broadcasts to a constant shape.
func (g *Graph) Expand(x *Value, shape ...int64) *Value {
	return g.Op1("Expand", []*Value{x, g.Ints64(shape...)}, nil)
}

// Concat joins along axis.
func (g *Graph) Concat(axis int64, xs ...*Value) *Value {
	return g.Op1("Concat", xs, Attrs{"axis": axis})
}

// Slice takes [starts, ends) along axes with step 1.
func (g *Graph) Slice(x *Value, starts, ends, axes []int64) *Value {
	return g.Op1("Slice", []*Value{x, g.Ints64(starts...), g.Ints64(ends...), g.Ints64(axes...)}, nil)
}

// SliceSteps takes [starts, ends) along axes with the given positive steps.
func (g *Graph) SliceSteps(x *Value, starts, ends, axes, steps []int64) *Value {
	return g.Op1("Slice", []*Value{x, g.Ints64(starts...), g.Ints64(ends...), g.Ints64(axes...), g.Ints64(steps...)}, nil)
}

// Pad pads with a constant value: pads holds the begin values for every
// axis, then the end values.
func (g *Graph) Pad(x *Value, pads []int64, value float64) *Value {
	if g.missing("Pad", x) {
		return placeholder()
	}
	return g.Op1("Pad", []*Value{x, g.Ints64(pads...), g.Scalar(x.DType, value)}, nil)
}

// ScatterElements writes (or with reduction "add", accumulates) updates into
// a copy of data at indices along axis.
func (g *Graph) ScatterElements(data, indices, updates *Value, axis int64, reduction string) *Value {
	a := Attrs{"axis": axis}
	if reduction != "" && reduction != "none" {
		a["reduction"] = reduction
	}
	return g.Op1("ScatterElements", []*Value{data, indices, updates}, a)
}

// ConstantOfShape is a tensor of a constant shape filled with one value.
func (g *Graph) ConstantOfShape(dt DType, value float64, shape ...int64) *Value {
	return g.Op1("ConstantOfShape", []*Value{g.Ints64(shape...)}, Attrs{"value": FilledTensor(dt, []int64{1}, value)})
}

// reduce emits a reduction in the form the opset wants: ReduceSum takes axes
// as an input since opset 13, the others since 18.
func (g *Graph) reduce(op string, x *Value, axes []int64, keepdims bool) *Value {
	keep := int64(0)
	if keepdims {
		keep = 1
	}
	a := Attrs{"keepdims": keep}
	if len(axes) == 0 {
		return g.Op1(op, []*Value{x}, a)
	}
	if op == "ReduceSum" || g.Opset >= 18 {
		return g.Op1(op, []*Value{x, g.Ints64(axes...)}, a)
	}
	a["axes"] = append([]int64{}, axes...)
	return g.Op1(op, []*Value{x}, a)
}

// ReduceSum sums over axes (all when none are given).
func (g *Graph) ReduceSum(x *Value, axes []int64, keepdims bool) *Value {
	return g.reduce("ReduceSum", x, axes, keepdims)
}

// ReduceMean averages over axes (all when none are given).
func (g *Graph) ReduceMean(x *Value, axes []int64, keepdims bool) *Value {
	return g.reduce("ReduceMean", x, axes, keepdims)
}

// ReduceSumSquare sums squares over axes (all when none are given).
func (g *Graph) ReduceSumSquare(x *Value, axes []int64, keepdims bool) *Value {
	return g.reduce("ReduceSumSquare", x, axes, keepdims)
}

// ReduceMax takes the maximum over axes (all when none are given).
func (g *Graph) ReduceMax(x *Value, axes []int64, keepdims bool) *Value {
	return g.reduce("ReduceMax", x, axes, keepdims)
}

// channelSum sums x over every axis but the channels (axis 1) of a static
// NC... tensor: over space first, then over the batch. Each stage adds fewer
// float32 terms, which halves BatchNorm's rounding error at 224x224 (the
// whole-step oracle's) at no extra cost.
func (g *Graph) channelSum(x *Value) *Value {
	return g.twoStageSum("ReduceSum", x)
}

func (g *Graph) twoStageSum(op string, x *Value) *Value {
	r := x.Shape.Rank()
	axes := []int64{0}
	for i := 2; i < r; i++ {
		axes = append(axes, int64(i))
	}
	if r == 2 {
		return g.reduce(op, x, axes, false)
	}
	return g.ReduceSum(g.reduce(op, x, axes[1:], true), axes, false)
}

// groupConvDotMinPlane is the smallest plane (H*W) at which channelDot uses
// the grouped convolution; below it the per-group overhead of ONNX Runtime's
// CPU convolution loses to Mul and ReduceSum (BenchmarkKernelChannelDot and
// BenchmarkKernelChannelSum, docs/results/bench/history.md).
const groupConvDotMinPlane = 28 * 28

// channelDot is sum(a*b) over every axis but the channels (axis 1) of two
// static NC... tensors of one shape; with a == b, the sum of squares. It is
// BatchNorm's variance (forward) and gamma gradient (backward).
//
// On float32 NCHW tensors with planes of at least groupConvDotMinPlane it
// is one Conv: a viewed as (1, N*C, H, W), b as N*C kernels (N*C, 1, H, W),
// one group per image and channel, so each output is the dot product of a
// plane of a with the same plane of b; then a sum over the batch. That reads
// each tensor once and writes nothing of their size, where Mul then
// ReduceSum writes and reads the product (2.5 to 4 times slower at
// ResNet-50's large planes on ONNX Runtime's CPU provider), and ONNX
// Runtime's ReduceSumSquare is about 3 times slower than its ReduceSum. The
// sum is still in two stages (planes in the convolution, then the batch).
// Other shapes and types take Mul (or ReduceSumSquare) and channelSum.
func (g *Graph) channelDot(a, b *Value) *Value {
	s := a.Shape
	if s.Rank() == 4 && s.Static() && a.DType == Float && b.Shape.Equal(s) && s[2].Size*s[3].Size >= groupConvDotMinPlane {
		n, c, h, w := s[0].Size, s[1].Size, s[2].Size, s[3].Size
		dot := g.Conv(g.Reshape(a, 1, n*c, h, w), g.Reshape(b, n*c, 1, h, w), nil, ConvOpts{Group: n * c})
		return g.ReduceSum(g.Reshape(dot, n, c), []int64{0}, false)
	}
	if a == b {
		return g.twoStageSum("ReduceSumSquare", a)
	}
	return g.channelSum(g.Mul(a, b))
}

// BatchNormBatchStats is training-mode batch normalization written in
// standard operators: it normalizes x by its own per-channel batch mean and
// biased variance (the statistics PyTorch and ONNX normalize with) and returns
// them too, for the running statistics.
//
// The input is first shifted: xs = x - shift, per channel. With a nil shift
// the shift is the batch mean itself (two passes: the mean, then the
// centered xs), so xs is centered and var = mean(xs^2). Given a shift, such
// as FirstImageConvMean's, the statistics come from one pass over xs, the
// shifted-data variance
//
//	m = mean(xs), var = mean(xs^2) - m^2, batch mean = shift + m,
//
// whose float32 rounding error is about eps * (1 + m^2/var) relative: as
// good as the two-pass form while the shift is within a few standard
// deviations of the batch mean, as the mean of one image of the batch is.
// It degrades as the shift moves away: about
// 2e-4 relative at 30 standard deviations, 2e-2 at 300, and at 3000 the
// variance is lost (TestShiftedVarianceError). A non-finite shift entry is
// replaced by 0. Because the shift does not depend on x, LowerBatchStats
// moves it into the Conv that produces x, as a bias, and the pass that
// subtracts it disappears.
//
// y is then an inference-mode BatchNormalization of xs with mean m and
// variance var. Feeding the shifted xs matters: the kernel computes x*s +
// (beta - mean*s), which loses float32 precision when |mean| is large
// against the standard deviation. The BatchNormalization carries
// RoleBatchStats, so that autodiff applies the training-mode gradient
// (gradBatchNorm), and the Sub RoleCentering, for LowerBatchStats.
//
// Written this way rather than as BatchNormalization(training_mode=1)
// because that kernel's running-variance output differs between execution
// providers (biased on ONNX Runtime's CPU, unbiased under cuDNN), while these
// operators mean the same everywhere.
func (g *Graph) BatchNormBatchStats(x, scale, bias, shift *Value, eps float32) (y, mean, variance *Value) {
	if g.missing("BatchNormBatchStats", x, scale, bias) {
		p := placeholder()
		return p, p, p
	}
	r := x.Shape.Rank()
	if r < 2 || !x.Shape.Static() {
		g.fail(fmt.Errorf("BatchNormBatchStats: input %s must have a static shape of rank >= 2", x))
		return x, x, x
	}
	c := x.Shape[1].Size
	if shift != nil && (shift.DType != x.DType || !shift.Shape.Equal(S(c))) {
		g.fail(fmt.Errorf("BatchNormBatchStats: shift %s must be %v of shape (%d)", shift, x.DType, c))
		return x, x, x
	}
	inv := g.Scalar(x.DType, 1/float64(x.Shape.NumElements()/c))
	centered := shift == nil
	if centered {
		shift = g.Mul(g.channelSum(x), inv)
	} else {
		// Any finite shift is valid; a non-finite entry (from a
		// non-finite input, or a running mean gone bad in a checkpoint)
		// is replaced by 0, so that it cannot make its channel NaN.
		finite := g.Less(g.Abs(shift), g.Scalar(x.DType, math.Inf(1)))
		shift = g.Where(finite, shift, g.Scalar(x.DType, 0))
	}
	// The shift is detached: the output does not depend on a shift that
	// the statistics remove again, and the batch-stats rule accounts for
	// the batch mean's dependence on x.
	xs := g.Sub(x, g.Reshape(g.Detach(shift), channelShape(r)...))
	if xs.Producer != nil {
		xs.Producer.Role = RoleCentering
	}
	sq := g.Mul(g.channelDot(xs, xs), inv) // mean(xs^2)
	var m *Value
	if centered {
		m = g.Const(FilledTensor(x.DType, []int64{c}, 0))
		mean, variance = shift, sq
	} else {
		m = g.Mul(g.channelSum(xs), inv)
		mean = g.Add(shift, m)
		variance = g.binary("Max", g.Sub(sq, g.Mul(m, m)), g.Scalar(x.DType, 0))
	}
	y = g.BatchNorm(xs, scale, bias, m, variance, eps)
	if y.Producer != nil {
		y.Producer.Role = RoleBatchStats
	}
	return y, mean, variance
}
