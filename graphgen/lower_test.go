package graphgen

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/ortrain/ortrain/internal/testutil"
)

// TestLowerBatchStatsKeepsResults builds a Conv, training-mode BatchNorm,
// ReLU, residual Add and ReLU, with gradients, batch mean and variance as
// outputs, and runs it in ONNX Runtime before and after LowerBatchStats:
// every output must agree to float32 rounding, and the graph must have
// changed as the case says: a shift given to BatchNormBatchStats folded into
// the Conv's bias (any kernel, stride or width), but not the two-pass
// centering (no shift), nor into a Conv whose output something else reads;
// and the BatchNorm made a Conv. (The graph before lowering is the one the
// gradient rules are checked against PyTorch with.)
func TestLowerBatchStatsKeepsResults(t *testing.T) {
	testutil.InitORT(t)
	for _, c := range []lowerCase{
		{name: "fold, 1x1 8->16 at 16x16", ci: 8, co: 16, k: 1, hw: 16, stride: 1, shift: true, fold: true},
		{name: "fold, 1x1 16->8 at 28x28 (grouped-conv sums)", ci: 16, co: 8, k: 1, hw: 28, stride: 1, shift: true, fold: true},
		{name: "fold, 3x3 stride 2", ci: 8, co: 16, k: 3, hw: 32, stride: 2, shift: true, fold: true},
		{name: "fold, 3x3, the first image's mean as the shift", ci: 8, co: 16, k: 3, hw: 16, stride: 1, shift: true, convShift: true, fold: true},
		{name: "no fold without a shift", ci: 8, co: 16, k: 3, hw: 16, stride: 1},
		{name: "no fold when the Conv output is read twice", ci: 8, co: 8, k: 1, hw: 16, stride: 1, shift: true, reread: true},
		{name: "no fold when the shifted input is an output", ci: 8, co: 16, k: 1, hw: 16, stride: 1, shift: true, outShifted: true},
	} {
		t.Run(c.name, func(t *testing.T) { checkLowering(t, c) })
	}
}

// offsetNormalFeeds is random data for inputs of the given shapes, normal
// with mean 0.5: a mean well away from 0, as after a ReLU, so that
// centering matters.
func offsetNormalFeeds(shapes [][]int64, seed uint64) [][]float32 {
	r := rand.New(rand.NewPCG(seed, seed+1))
	feeds := make([][]float32, len(shapes))
	for i, s := range shapes {
		feeds[i] = make([]float32, S(s...).NumElements())
		for j := range feeds[i] {
			feeds[i][j] = float32(r.NormFloat64() + 0.5)
		}
	}
	return feeds
}

type lowerCase struct {
	name                  string
	ci, co, k, hw, stride int64
	shift                 bool // give BatchNormBatchStats a shift (an input)
	convShift             bool // with shift: FirstImageConvMean of the Conv, not an input
	reread                bool // the residual branch also reads the Conv's output
	outShifted            bool // the shifted input is a graph output too
	fold                  bool // want the shift folded into the Conv
}

func checkLowering(t *testing.T, c lowerCase) {
	out := c.hw / c.stride
	shapes := [][]int64{{4, c.ci, c.hw, c.hw}, {c.co, c.ci, c.k, c.k}, {c.co}, {c.co}, {4, c.co, out, out}, {c.co}}
	feeds := offsetNormalFeeds(shapes, 3)
	run := func(lower bool) ([][]float32, *Graph) {
		g := New("lower", DefaultOpset)
		in := letteredInputs(g, shapes)
		p := (c.k - 1) / 2
		z := g.Conv(in[0], in[1], nil, ConvOpts{Strides: []int64{c.stride, c.stride}, Pads: []int64{p, p, p, p}})
		var shift *Value
		if c.shift {
			shift = in[5]
		}
		if c.convShift {
			shift = g.FirstImageConvMean(z)
		}
		y, mean, variance := g.BatchNormBatchStats(z, in[2], in[3], shift, 1e-5)
		res := in[4]
		if c.reread {
			res = g.Add(res, z)
		}
		o := g.Relu(g.Add(g.Relu(y), res))
		loss := g.ReduceSum(g.Mul(o, o), nil, false)
		grads, err := g.Gradients(loss, in[:4], g.Scalar(Float, 1))
		if err != nil {
			t.Fatal(err)
		}
		// Graph outputs keep their values' producers, so the mean is read
		// through an Identity, as the running statistics read it.
		g.Output(o, g.Identity(mean), variance, g.Reshape(loss, 1))
		g.Output(grads...)
		if !c.shift || c.convShift {
			g.Output(g.Identity(in[5])) // every input is fed
		}
		if c.outShifted {
			g.Output(y.Producer.Inputs[0]) // x - shift, the BatchNorm's input
		}
		if lower {
			if err := g.LowerBatchStats(); err != nil {
				t.Fatal(err)
			}
		}
		return validateAndRun(t, g, shapes, feeds), g
	}
	want, plain := run(false)
	got, lowered := run(true)
	names := []string{"output", "mean", "variance", "loss", "dx", "dW", "dgamma", "dbeta", "extra output"}
	for i := range want {
		if e := testutil.RelErr(got[i], want[i]); e > 1e-5 {
			t.Errorf("%s differs after lowering by %.3g", names[i], e)
		}
	}
	count := func(g *Graph, pred func(n *Node) bool) int {
		k := 0
		for _, n := range g.Nodes {
			if pred(n) {
				k++
			}
		}
		return k
	}
	centering := func(n *Node) bool { return n.Role == RoleCentering }
	batchNorm := func(n *Node) bool { return n.Role == RoleBatchStats }
	wantCentering := 1
	if c.fold {
		wantCentering = 0
	}
	if count(plain, centering) != 1 || count(lowered, centering) != wantCentering {
		t.Errorf("centering Subs: %d before, %d after lowering; want 1 and %d", count(plain, centering), count(lowered, centering), wantCentering)
	}
	if count(plain, batchNorm) != 1 || count(lowered, batchNorm) != 0 {
		t.Errorf("batch-stats BatchNorms: %d before, %d after lowering; want 1 and 0", count(plain, batchNorm), count(lowered, batchNorm))
	}
	// Passes over the activations: nodes writing a tensor of the Conv
	// output's size. The fold removes the centering Sub's; nothing of that
	// size is added.
	size := S(shapes[4]...).NumElements()
	full := func(n *Node) bool { return n.Outputs[0].Shape.NumElements() >= size }
	if b, a := count(plain, full), count(lowered, full); a != b-1+wantCentering {
		t.Errorf("activation-sized nodes: %d before, %d after lowering; want %d", b, a, b-1+wantCentering)
	}
	// No constant is left that nothing reads.
	read := map[*Value]bool{}
	for _, n := range lowered.Nodes {
		for _, in := range n.Inputs {
			read[in] = true
		}
	}
	for _, in := range lowered.Inits {
		if !read[in.Value] {
			t.Errorf("initializer %s is read by no node after lowering", in.Value.Name)
		}
	}
}

// TestBatchNormNonFiniteShift: a NaN or infinite shift entry (a running
// mean gone bad) is replaced by 0, so its channel is normalized as with a
// zero shift and stays finite, before and after lowering.
func TestBatchNormNonFiniteShift(t *testing.T) {
	testutil.InitORT(t)
	shapes := [][]int64{{4, 3, 5, 6}, {3, 3, 1, 1}, {3}, {3}, {3}}
	feeds := offsetNormalFeeds(shapes, 5)
	run := func(shift []float32, lower bool) []float32 {
		g := New("shift", DefaultOpset)
		in := letteredInputs(g, shapes)
		z := g.Conv(in[0], in[1], nil, ConvOpts{})
		y, mean, variance := g.BatchNormBatchStats(z, in[2], in[3], in[4], 1e-5)
		g.Output(y, g.Identity(mean), variance)
		if lower {
			if err := g.LowerBatchStats(); err != nil {
				t.Fatal(err)
			}
		}
		model, err := g.Marshal(ModelInfo{})
		if err != nil {
			t.Fatal(err)
		}
		f := append(append([][]float32{}, feeds[:4]...), shift)
		out := testutil.RunFloat32(t, model, shapes, f)
		return out[0]
	}
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	want := run([]float32{0, 0.25, 0}, false)
	for _, lower := range []bool{false, true} {
		got := run([]float32{nan, 0.25, -inf}, lower)
		for i := range got {
			if math.IsNaN(float64(got[i])) || math.Abs(float64(got[i]-want[i])) > 1e-5 {
				t.Fatalf("lowered %v: y[%d] = %v with a non-finite shift, %v with 0", lower, i, got[i], want[i])
			}
		}
	}
}

// TestShiftedVarianceError measures the one-pass shifted variance of
// BatchNormBatchStats against float64 as the shift moves away from the
// batch mean (inputs N(mu, 1), shift 0, 6272 values per channel), for the
// limits stated in docs/training-graph.md; -v prints the errors.
func TestShiftedVarianceError(t *testing.T) {
	testutil.InitORT(t)
	shape := []int64{8, 2, 28, 28}
	// At 3000 the variance is lost; that case is only measured.
	for _, c := range []struct{ mu, limit float64 }{{0, 1e-6}, {3, 1e-5}, {30, 1e-3}, {300, 1e-1}, {3000, math.Inf(1)}} {
		r := rand.New(rand.NewPCG(7, 8))
		x := make([]float32, S(shape...).NumElements())
		for i := range x {
			x[i] = float32(c.mu + r.NormFloat64())
		}
		g := New("var", DefaultOpset)
		in := g.Input("x", Float, S(shape...))
		ones, zeros := g.Const(FilledTensor(Float, []int64{2}, 1)), g.Const(FilledTensor(Float, []int64{2}, 0))
		_, _, variance := g.BatchNormBatchStats(in, ones, zeros, zeros, 1e-5)
		g.Output(variance)
		model, err := g.Marshal(ModelInfo{})
		if err != nil {
			t.Fatal(err)
		}
		got := testutil.RunFloat32(t, model, [][]int64{shape}, [][]float32{x})[0]
		per := len(x) / 2 / int(shape[0])
		worst := 0.0
		for ch := 0; ch < 2; ch++ {
			var vals []float64
			for n := 0; n < int(shape[0]); n++ {
				for _, v := range x[(n*2+ch)*per : (n*2+ch+1)*per] {
					vals = append(vals, float64(v))
				}
			}
			mean, sq := 0.0, 0.0
			for _, v := range vals {
				mean += v
			}
			mean /= float64(len(vals))
			for _, v := range vals {
				sq += (v - mean) * (v - mean)
			}
			want := sq / float64(len(vals))
			worst = max(worst, math.Abs(float64(got[ch])-want)/want)
		}
		t.Logf("shift %g standard deviations from the mean: variance relative error %.2g", c.mu, worst)
		if worst > c.limit {
			t.Errorf("shift %g sd: variance relative error %.3g > %g", c.mu, worst, c.limit)
		}
	}
}

// TestSubsamplePointwiseKeepsResults runs, in ONNX Runtime before and after
// SubsamplePointwise, a graph of strided 1x1 convolutions and their
// gradients: two that read one input with the same strides (one subsample
// shared), one with other strides and a width the stride does not divide,
// and three the rewrite must leave alone (a height the stride does not
// divide, padding, a 3x3 kernel). Every output and gradient must agree to
// float32 rounding, and the graph must have the expected subsamples and
// strided Convs left.
func TestSubsamplePointwiseKeepsResults(t *testing.T) {
	testutil.InitORT(t)
	shapes := [][]int64{{2, 6, 8, 9}, {4, 6, 1, 1}, {5, 6, 1, 1}, {3, 6, 1, 1}, {2, 6, 7, 8}, {4, 6, 1, 1}, {4, 6, 1, 1}, {4, 6, 3, 3}}
	feeds := offsetNormalFeeds(shapes, 5)
	run := func(rewrite bool) ([][]float32, *Graph) {
		g := New("subsample", DefaultOpset)
		in := letteredInputs(g, shapes)
		s22 := ConvOpts{Strides: []int64{2, 2}}
		outs := []*Value{
			g.Conv(in[0], in[1], nil, s22),
			g.Conv(in[0], in[2], nil, s22),
			g.Conv(in[0], in[3], nil, ConvOpts{Strides: []int64{2, 3}}),
			g.Conv(in[4], in[5], nil, s22),                                                         // odd height
			g.Conv(in[0], in[6], nil, ConvOpts{Strides: []int64{2, 2}, Pads: []int64{1, 0, 1, 0}}), // padded
			g.Conv(in[0], in[7], nil, ConvOpts{Strides: []int64{2, 2}, Pads: []int64{1, 1, 1, 1}}), // 3x3
		}
		if rewrite {
			if err := g.SubsamplePointwise(); err != nil {
				t.Fatal(err)
			}
		}
		var loss *Value
		for i, o := range outs {
			sq := g.ReduceSum(g.Mul(g.Mul(o, o), g.Scalar(Float, float64(i+1))), nil, false)
			if loss == nil {
				loss = sq
			} else {
				loss = g.Add(loss, sq)
			}
		}
		grads, err := g.Gradients(loss, in, g.Scalar(Float, 1))
		if err != nil {
			t.Fatal(err)
		}
		g.Output(outs...)
		g.Output(grads...)
		return validateAndRun(t, g, shapes, feeds), g
	}
	want, _ := run(false)
	got, rewritten := run(true)
	for i := range want {
		if e := testutil.RelErr(got[i], want[i]); e > 1e-5 {
			t.Errorf("output %d differs after the rewrite by %.3g", i, e)
		}
	}
	strided, matmuls := 0, 0
	for _, n := range rewritten.Nodes {
		if n.Op == "Conv" && !slices.Equal(n.Ints("strides"), nil) && !slices.Equal(n.Ints("strides"), []int64{1, 1}) && !strings.HasPrefix(n.Name, "grad") {
			strided++
		}
		if n.Op == "MatMul" && strings.HasPrefix(n.Name, "subsample/") {
			matmuls++
		}
	}
	if strided != 3 || matmuls != 2 {
		t.Errorf("after the rewrite: %d strided forward Convs, %d subsample MatMuls; want 3 and 2", strided, matmuls)
	}
}

// validateAndRun checks g, serializes it and runs it in ONNX Runtime on
// feeds of the given shapes, returning every output.
func validateAndRun(t *testing.T, g *Graph, shapes [][]int64, feeds [][]float32) [][]float32 {
	t.Helper()
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	model, err := g.Marshal(ModelInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return testutil.RunFloat32(t, model, shapes, feeds)
}

// letteredInputs declares float32 graph inputs a, b, c, ... of the given
// shapes.
func letteredInputs(g *Graph, shapes [][]int64) []*Value {
	var in []*Value
	for i, s := range shapes {
		in = append(in, g.Input(string(rune('a'+i)), Float, S(s...)))
	}
	return in
}

// TestFirstImageConvMean: the estimate equals the first image's output
// mean when each input channel of that image is constant (any kernel,
// stride, pads and dilation: the tap shares are exact), and on a random
// input with a mean of 0.5 it is within a small part of the output's
// spread of it.
func TestFirstImageConvMean(t *testing.T) {
	testutil.InitORT(t)
	for _, c := range []struct {
		name                       string
		hw, k, stride, pad, dilate int64
	}{
		{"1x1", 9, 1, 1, 0, 1},
		{"1x1 stride 2", 9, 1, 2, 0, 1},
		{"3x3 same", 8, 3, 1, 1, 1},
		{"3x3 same on 2x2", 2, 3, 1, 1, 1},
		{"3x3 stride 2", 9, 3, 2, 1, 1},
		{"7x7 stride 2 pad 3", 16, 7, 2, 3, 1},
		{"3x3 dilation 2 pad 1", 10, 3, 1, 1, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			const n, ci, co = 3, 4, 5
			shapes := [][]int64{{n, ci, c.hw, c.hw}, {co, ci, c.k, c.k}}
			g := New("mean", DefaultOpset)
			in := letteredInputs(g, shapes)
			y := g.Conv(in[0], in[1], nil, ConvOpts{Strides: []int64{c.stride, c.stride}, Pads: []int64{c.pad, c.pad, c.pad, c.pad}, Dilations: []int64{c.dilate, c.dilate}})
			est := g.FirstImageConvMean(y)
			if est == nil {
				t.Fatal("no estimate")
			}
			first := g.Slice(y, []int64{0}, []int64{1}, []int64{0})
			g.Output(est, g.ReduceMean(first, []int64{0, 2, 3}, false), g.Reshape(g.Sqrt(g.ReduceMean(g.Mul(first, first), nil, false)), 1))
			random := offsetNormalFeeds(shapes, 9)
			constant := offsetNormalFeeds(shapes, 9)
			for k := int64(0); k < ci; k++ { // the first image: one value per channel
				plane := constant[0][k*c.hw*c.hw : (k+1)*c.hw*c.hw]
				for i := range plane {
					plane[i] = plane[0]
				}
			}
			out := validateAndRun(t, g, shapes, constant)
			if e := testutil.RelErr(out[0], out[1]); e > 1e-5 {
				t.Errorf("constant channels: estimate %v, mean %v (%.3g)", out[0], out[1], e)
			}
			out = validateAndRun(t, g, shapes, random)
			for i := range out[0] {
				if d := math.Abs(float64(out[0][i] - out[1][i])); d > 0.5*float64(out[2][0]) {
					t.Errorf("random input, channel %d: estimate %g, mean %g, RMS %g", i, out[0][i], out[1][i], out[2][0])
				}
			}
		})
	}
}
