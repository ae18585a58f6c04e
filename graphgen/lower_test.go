package graphgen

import (
	"math/rand/v2"
	"testing"

	"github.com/ortrain/ortrain/internal/testutil"
)

// TestLowerBatchStatsKeepsResults builds a Conv, training-mode BatchNorm,
// ReLU, residual Add and ReLU, with gradients, batch mean and variance as
// outputs, and runs it in ONNX Runtime before and after LowerBatchStats:
// every output must agree to float32 rounding, and the graph must have
// changed as the case says: the centering folded into a pointwise Conv with
// no more input than output channels (not into one with more, nor a strided
// one), and the BatchNorm made a Conv. (The graph before lowering is the one
// the gradient rules are checked against PyTorch with.)
func TestLowerBatchStatsKeepsResults(t *testing.T) {
	testutil.InitORT(t)
	for _, c := range []struct {
		name            string
		ci, co, hw, str int64
		fold            bool
	}{
		{"fold 8->16 at 16x16", 8, 16, 16, 1, true},
		{"fold 8->16 at 28x28 (grouped-conv sums)", 8, 16, 28, 1, true},
		{"no fold, 16->8", 16, 8, 16, 1, false},
		{"no fold, stride 2", 8, 16, 32, 2, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := c.hw / c.str
			checkLowering(t, [][]int64{{4, c.ci, c.hw, c.hw}, {c.co, c.ci, 1, 1}, {c.co}, {c.co}, {4, c.co, out, out}},
				c.str, c.fold)
		})
	}
}

func checkLowering(t *testing.T, shapes [][]int64, stride int64, fold bool) {
	r := rand.New(rand.NewPCG(3, 4))
	feeds := make([][]float32, len(shapes))
	for i, s := range shapes {
		feeds[i] = make([]float32, S(s...).NumElements())
		for j := range feeds[i] {
			// A mean well away from 0, as after a ReLU, so centering matters.
			feeds[i][j] = float32(r.NormFloat64() + 0.5)
		}
	}
	run := func(lower bool) ([][]float32, *Graph) {
		g := New("lower", DefaultOpset)
		var in []*Value
		for i, s := range shapes {
			in = append(in, g.Input(string(rune('a'+i)), Float, S(s...)))
		}
		z := g.Conv(in[0], in[1], nil, ConvOpts{Strides: []int64{stride, stride}})
		y, mean, variance := g.BatchNormBatchStats(z, in[2], in[3], 1e-5)
		out := g.Relu(g.Add(g.Relu(y), in[4]))
		loss := g.ReduceSum(g.Mul(out, out), nil, false)
		grads, err := g.Gradients(loss, in[:4], g.Scalar(Float, 1))
		if err != nil {
			t.Fatal(err)
		}
		// Graph outputs keep their values' producers, so the mean is read
		// through an Identity, as the running statistics read it.
		g.Output(out, g.Identity(mean), variance, g.Reshape(loss, 1))
		g.Output(grads...)
		if lower {
			if err := g.LowerBatchStats(); err != nil {
				t.Fatal(err)
			}
		}
		if err := g.Validate(); err != nil {
			t.Fatal(err)
		}
		model, err := g.Marshal(ModelInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return testutil.RunFloat32(t, model, shapes, feeds), g
	}
	want, plain := run(false)
	got, lowered := run(true)
	names := []string{"output", "mean", "variance", "loss", "dx", "dW", "dgamma", "dbeta"}
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
	if fold {
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
