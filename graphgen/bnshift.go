package graphgen

// FirstImageConvMean estimates, in float32, the per-channel mean of a
// convolution's output over the batch's first image, from the
// convolution's input and weight alone: y = Conv(u, W) (one group, any
// kernel, strides, pads and dilations), and
//
//	mean(y[0, c]) ~ sum over k and taps of W[c, k, tap] * f[tap] * mean(u[0, k]),
//
// with f[tap] the share of output positions at which the tap reads the
// input rather than padding. It is exact when each channel of u's first
// image is constant; otherwise it is off by how the image differs at its
// borders from the whole, a small part of the channel's spread.
//
// It is the shift of BatchNormBatchStats' one-pass variance, whose float32
// error grows with (shift - batch mean)^2 / variance: the first image's
// mean is within the spread of the images' means from the batch mean,
// where a running mean at its initial 0 can be many spreads away (a
// ResNet-D shortcut after zero-gamma blocks: 6.7 times PyTorch float32's
// error in the BatchNorm's output, TestBatchNormForwardPrecision). Since it
// does not read y, LowerBatchStats can still fold the shift into the
// Conv's bias; the cost is a Slice and a mean of one image of u and one
// matrix-vector product with W.
//
// x may also be a Cast of the Conv's output (mixed precision); nil is
// returned when x is not a one-group Conv's output of static shape.
func (g *Graph) FirstImageConvMean(x *Value) *Value {
	if x == nil || g.err != nil {
		return nil
	}
	conv := x.Producer
	if conv != nil && conv.Op == "Cast" {
		conv = conv.Inputs[0].Producer
	}
	if conv == nil || conv.Op != "Conv" || conv.Domain != "" || conv.Int("group", 1) != 1 {
		return nil
	}
	u, w, k, sp, _, err := convPrologue(conv)
	y := conv.Outputs[0]
	if err != nil || k != 2 || !u.Shape.Static() || !w.Shape.Static() || !y.Shape.Static() {
		return nil
	}
	co, ci := w.Shape[0].Size, w.Shape[1].Size
	taps := sp.kernel[0] * sp.kernel[1]
	fh := tapShares(u.Shape[2].Size, y.Shape[2].Size, sp, 0)
	fw := tapShares(u.Shape[3].Size, y.Shape[3].Size, sp, 1)
	f := make([]float32, 0, taps)
	allOne := true
	for _, a := range fh {
		for _, b := range fw {
			f = append(f, float32(a*b))
			allOne = allOne && a*b == 1
		}
	}
	w32 := w
	if w.Producer != nil && w.Producer.Op == "Cast" && w.Producer.Inputs[0].DType == Float {
		w32 = w.Producer.Inputs[0] // the float32 master weight
	} else if w.DType != Float {
		w32 = g.Cast(w, Float)
	}
	first := g.Slice(u, []int64{0}, []int64{1}, []int64{0})
	if first.DType != Float {
		first = g.Cast(first, Float)
	}
	// v[k, tap] = mean(u[0, k]) * f[tap], then one matrix-vector product
	// with the weight as (Co, Ci*taps): a single pass over the weight.
	v := g.Reshape(g.ReduceMean(first, []int64{0, 2, 3}, false), ci, 1)
	if !allOne {
		v = g.Reshape(g.Mul(v, g.Const(FloatTensor([]int64{1, taps}, f))), ci*taps, 1)
	} else if taps > 1 {
		v = g.Reshape(g.Expand(v, ci, taps), ci*taps, 1)
	}
	mean := g.Reshape(g.MatMul(g.Reshape(w32, co, ci*taps), v), co)
	if b := optInput(conv, 2); b != nil {
		if b.DType != Float {
			b = g.Cast(b, Float)
		}
		mean = g.Add(mean, b)
	}
	return mean
}

// tapShares is, for each tap of spatial axis i, the share of the out output
// positions at which it reads inside an input of length in.
func tapShares(in, out int64, sp spatial, i int) []float64 {
	shares := make([]float64, sp.kernel[i])
	for t := range shares {
		inside := 0
		for o := int64(0); o < out; o++ {
			p := o*sp.strides[i] - sp.padsBegin[i] + int64(t)*sp.dilations[i]
			if p >= 0 && p < in {
				inside++
			}
		}
		shares[t] = float64(inside) / float64(out)
	}
	return shares
}
