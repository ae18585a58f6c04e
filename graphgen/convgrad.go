package graphgen

import "fmt"

// The exact forms a convolution's input and weight gradients can be
// written in, and convGradForms, the one place that chooses among them for
// ONNX Runtime's CPU kernels (each choice names the kernel benchmark in
// kernels_bench_test.go that measures it; docs/results/bench/history.md has the
// numbers). Every form is tested against PyTorch (gradrules_test.go).

// convArgs are one Conv's operands, window and output gradient.
type convArgs struct {
	x, w, d *Value // input, weight, dY
	k       int    // spatial dimensions
	kernel  []int64
	sp      spatial
	group   int64
}

func readConvArgs(n *Node, d *Value) (convArgs, error) {
	x, w := n.Inputs[0], n.Inputs[1]
	if !x.Shape.Static() || !w.Shape.Static() || !d.Shape.Static() {
		return convArgs{}, fmt.Errorf("needs static shapes")
	}
	a := convArgs{x: x, w: w, d: d, k: x.Shape.Rank() - 2, kernel: w.Shape[2:].Ints(), group: n.Int("group", 1)}
	var err error
	a.sp, err = readSpatial(n, a.k, a.kernel)
	return a, err
}

// batchAndSpace are the axes a bias gradient sums over.
func (a convArgs) batchAndSpace() []int64 {
	axes := []int64{0}
	for i := 0; i < a.k; i++ {
		axes = append(axes, int64(2+i))
	}
	return axes
}

func (a convArgs) plain2D() bool { return a.group == 1 && a.k == 2 }
func (a convArgs) stride1() bool { return a.sp.strides[0] == 1 && a.sp.strides[1] == 1 }
func (a convArgs) taps() int64   { return a.kernel[0] * a.kernel[1] }
func (a convArgs) padded() bool {
	return a.sp.padsBegin[0]+a.sp.padsBegin[1]+a.sp.padsEnd[0]+a.sp.padsEnd[1] > 0
}

// plane is the output plane's size, Ho*Wo.
func (a convArgs) plane() int64 { return a.d.Shape[2].Size * a.d.Shape[3].Size }

// same says the output plane is the input's (stride 1, "same" padding).
func (a convArgs) same() bool {
	return a.stride1() && a.d.Shape[2].Size == a.x.Shape[2].Size && a.d.Shape[3].Size == a.x.Shape[3].Size
}

// The forms of the input gradient.
type inputGradForm int

const (
	inputGradTranspose inputGradForm = iota // ConvTranspose(dY, W)
	inputGradPointwise                      // Conv(dY, W^T): a pointwise product per image
	inputGradFlipped                        // Conv(dY, flipped W^T), complementary pads (stride 1)
)

// The forms of the weight gradient.
type weightGradForm int

const (
	weightGradConv       weightGradForm = iota // a Conv of the input's transpose with dY as the kernel
	weightGradTaps                             // one MatMul per kernel tap, batched over the images
	weightGradTapsFolded                       // the same with the batch folded into the product
	weightGradIm2col                           // the column matrix by a one-hot grouped Conv, one MatMul
)

// Thresholds of convGradForms.
const (
	// smallPlane: below this output plane a GEMM whose inner dimension is
	// the plane runs at a fraction of the machine's speed, so the weight
	// gradient folds the batch into it (BenchmarkKernelWeightGrad3x3).
	smallPlane = 512
	// tapsMinChannels: from this many input channels the per-tap MatMuls
	// beat the transposed convolution; the 3-channel stem stays a Conv
	// (also against the column matrix: BenchmarkKernelStemWeightGrad).
	tapsMinChannels = 16
	// shortRow: up to this width, shiftColumns shifts the flattened planes.
	shortRow = 16
)

// convGradForms chooses the forms of a convolution's input and weight
// gradients for ONNX Runtime's CPU kernels; every form computes the same
// values.
func convGradForms(a convArgs) (inputGradForm, weightGradForm) {
	in := inputGradTranspose
	switch {
	case a.plain2D() && a.taps() == 1 && a.stride1() && !a.padded():
		// No col2im pass: up to 1.4 times ConvTranspose's speed
		// (BenchmarkKernelPointwiseInputGrad).
		in = inputGradPointwise
	case a.plain2D() && a.stride1() && flippable(a.kernel, a.sp):
		// Up to 1.7 times ConvTranspose's speed on ResNet's 3x3 planes
		// (BenchmarkKernelConvInputGrad).
		in = inputGradFlipped
	}
	w := weightGradConv
	if a.plain2D() && a.x.Shape[1].Size >= tapsMinChannels {
		// im2col without the whole column matrix: 2 to 15 times the
		// transposed convolution's speed (BenchmarkKernelWeightGrad*).
		switch small := a.plane() < smallPlane; {
		case small && a.taps() > 1 && !a.same():
			// One pass on both threads, where the taps' strided slices of
			// the input (or Pads of dY) copy a value or a row at a time on
			// one. A "same" convolution's taps shift dY and the input by
			// whole planes instead (shiftRows, shiftColumns), and beat it
			// on every plane from 2x2 to 56x56
			// (BenchmarkKernelWeightGrad3x3).
			w = weightGradIm2col
		case small:
			w = weightGradTapsFolded
		default:
			w = weightGradTaps
		}
	}
	return in, w
}

// convInputGrad is dX, the transposed convolution of dY with the weight.
func convInputGrad(g *Graph, a convArgs) (*Value, error) {
	form, _ := convGradForms(a)
	switch form {
	case inputGradPointwise:
		return g.Conv(a.d, g.Transpose(a.w, 1, 0, 2, 3), nil, ConvOpts{}), nil
	case inputGradFlipped:
		pads := make([]int64, 4)
		for i := 0; i < 2; i++ {
			span := (a.kernel[i]-1)*a.sp.dilations[i] + 1
			pads[i], pads[2+i] = span-1-a.sp.padsBegin[i], span-1-a.sp.padsEnd[i]
		}
		return g.Conv(a.d, flipKernel(g, a.w), nil, ConvOpts{Pads: pads, Dilations: a.sp.dilations}), nil
	}
	return convTransposeGrad(g, a)
}

// convTransposeGrad is dX as ConvTranspose(dY, W), with the output padding
// that gives back the input's size.
func convTransposeGrad(g *Graph, a convArgs) (*Value, error) {
	opad := make([]int64, a.k)
	anyPad := false
	for i := 0; i < a.k; i++ {
		full := a.sp.strides[i]*(a.d.Shape[2+i].Size-1) + (a.kernel[i]-1)*a.sp.dilations[i] + 1 - a.sp.padsBegin[i] - a.sp.padsEnd[i]
		opad[i] = a.x.Shape[2+i].Size - full
		if opad[i] < 0 || opad[i] >= max(a.sp.strides[i], a.sp.dilations[i]) {
			return nil, fmt.Errorf("input gradient: cannot reach size %v from %v", a.x.Shape, a.d.Shape)
		}
		anyPad = anyPad || opad[i] > 0
	}
	o := ConvOpts{Strides: a.sp.strides, Pads: a.sp.pads(), Dilations: a.sp.dilations, Group: a.group}
	if anyPad {
		o.OutputPadding = opad
	}
	return g.ConvTranspose(a.d, a.w, nil, o), nil
}

// convWeightGrad is dW, the input correlated with dY, summed over the batch.
func convWeightGrad(g *Graph, a convArgs) *Value {
	_, form := convGradForms(a)
	switch form {
	case weightGradTaps, weightGradTapsFolded:
		return convWeightGradTaps(g, a, form == weightGradTapsFolded, a.stride1())
	case weightGradIm2col:
		return convWeightGradIm2col(g, a)
	}
	return convWeightGradConv(g, a)
}

// convWeightGradConv is dW as a convolution of the input, batch and
// channels swapped (grouped by the forward's groups), with dY as the
// kernel, dilated by the forward's stride.
func convWeightGradConv(g *Graph, a convArgs) *Value {
	x, d, k, group := a.x, a.d, a.k, a.group
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
	r := g.Conv(xt, dyt, nil, ConvOpts{Strides: a.sp.dilations, Dilations: a.sp.strides, Pads: a.sp.pads(), Group: group})
	// r is (Ci/G, Co, k'...), k' >= kernel when the stride skips the end.
	var axes, ends []int64
	for i := 0; i < k; i++ {
		if r.Shape.Static() && r.Shape[2+i].Size != a.kernel[i] {
			axes = append(axes, int64(2+i))
			ends = append(ends, a.kernel[i])
		}
	}
	if len(axes) > 0 {
		r = g.Slice(r, make([]int64, len(axes)), ends, axes)
	}
	return g.Transpose(r, perm...)
}

// convWeightGradTaps is dW of an ungrouped 2-D convolution as one MatMul
// per kernel tap: dY times the input shifted by the tap, summed over the
// batch (batched MatMuls then a sum, or with fold the batch folded into
// the product's inner dimension by transposing dY and the input once).
//
// With shift (stride 1 only) the tap's offset moves dY instead of the
// input, by a Pad whose negative entries crop: the input is used as it is,
// and the centre tap needs no copy. When dY also has the input's size (a
// "same" convolution) the offset (sh, sw) is split between the two:
// sum_{h,w} dY[h-sh, w-sw] x[h, w] = sum_{h,w} dY[h-sh, w] x[h, w+sw], so
// a 3x3 kernel needs two row-shifted dYs and two column-shifted inputs
// instead of eight shifted dYs (shiftRows, shiftColumns). Otherwise the taps are strided slices of
// the padded input. (One function: the three cases share the tap loop and
// its cache of shifted operands.)
func convWeightGradTaps(g *Graph, a convArgs, fold, shift bool) *Value {
	x, d, kernel, sp := a.x, a.d, a.kernel, a.sp
	n, ci := x.Shape[0].Size, x.Shape[1].Size
	h, w := x.Shape[2].Size, x.Shape[3].Size
	co, ho, wo := d.Shape[1].Size, d.Shape[2].Size, d.Shape[3].Size
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
							v = shiftRows(g, dt, sh)
						}
						dyRows[sh] = lhs(v)
					}
					if xCols[sw] == nil {
						xCols[sw] = xWhole
						if sw != 0 {
							xCols[sw] = rhs(shiftColumns(g, xp, sw))
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

// shiftRows is v (4-D) with row h taken from row h-s, zero where that is
// outside: a Pad of the flattened planes, whose copies then run a whole
// plane long; padding the rows axis copies one row at a time, on one
// thread, several times slower on small planes (BenchmarkKernelShift).
func shiftRows(g *Graph, v *Value, s int64) *Value {
	if max(s, -s) >= v.Shape[2].Size {
		return zerosLike(g, v)
	}
	return shiftFlat(g, v, nil, s*v.Shape[3].Size)
}

// shiftColumns is v (4-D) with column w taken from column w+s, zero where
// that is outside: shiftColumnsMasked on rows of up to shortRow values,
// else a Pad of the columns axis (BenchmarkKernelShift).
func shiftColumns(g *Graph, v *Value, s int64) *Value {
	switch w := v.Shape[3].Size; {
	case max(s, -s) >= w:
		return zerosLike(g, v)
	case w > shortRow:
		return g.Pad(v, []int64{0, 0, 0, -s, 0, 0, 0, s}, 0)
	}
	return shiftColumnsMasked(g, v, s)
}

// shiftColumnsMasked is shiftColumns as the flattened planes shifted by s
// after zeroing the values that would wrap into the neighbouring row (a
// Mul on both threads): up to twice a Pad's speed at 16x16, slower from
// 28x28 (BenchmarkKernelShift). A masked Inf becomes NaN, which can only
// make the step's all-finite check stricter.
func shiftColumnsMasked(g *Graph, v *Value, s int64) *Value {
	h, w := v.Shape[2].Size, v.Shape[3].Size
	keep := FilledTensor(v.DType, []int64{h * w}, 1)
	for r := int64(0); r < h; r++ {
		for c := int64(0); c < w; c++ {
			// Value i = r*w+c+s would come from another row (or from
			// outside, where the shift fills zeros anyway).
			if i := r*w + c + s; (c+s < 0 || c+s >= w) && i >= 0 && i < h*w {
				keep.set(i, 0)
			}
		}
	}
	return shiftFlat(g, v, keep, -s)
}

// shiftFlat is v's planes, flattened, optionally times mask, moved by s
// positions (value i from i-s, |s| under a plane), zero-filled, in v's
// shape.
func shiftFlat(g *Graph, v *Value, mask *Tensor, s int64) *Value {
	a, b, h, w := v.Shape[0].Size, v.Shape[1].Size, v.Shape[2].Size, v.Shape[3].Size
	flat := g.Reshape(v, a, b, h*w)
	if mask != nil {
		flat = g.Mul(flat, g.Const(mask))
	}
	return g.Reshape(g.Pad(flat, []int64{0, 0, s, 0, 0, -s}, 0), a, b, h, w)
}

// zerosLike is a zero tensor of v's static shape: a tap that a shift moves
// wholly outside the plane contributes nothing (and a Pad that crops more
// than its axis is an edge ONNX Runtime's CPU Pad has mishandled).
func zerosLike(g *Graph, v *Value) *Value {
	return g.ConstantOfShape(v.DType, 0, v.Shape.Ints()...)
}

// convWeightGradIm2col is dW of an ungrouped 2-D convolution as one MatMul
// over the column matrix: a grouped Conv of the input with a one-hot kernel
// (one group per input channel, one output channel per tap, the forward's
// strides, pads and dilations) writes every tap's view of the input, (N,
// Ci*taps, Ho, Wo); then dY (Co, N*Ho*Wo) times its transpose is (Co,
// Ci*taps), the weight's layout. The one-hot kernel multiplies by 1 and adds
// zeros, so the columns are exact.
func convWeightGradIm2col(g *Graph, a convArgs) *Value {
	x, d, kernel, sp := a.x, a.d, a.kernel, a.sp
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
// MatMul by the reversal permutation, where ONNX Runtime's Slice with
// negative steps copies element by element (BenchmarkKernelFlip). Multiplying by ones and adding
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
