package graphgen

import (
	"math/rand/v2"
	"testing"

	"github.com/ortrain/ortrain/internal/testutil"
	"github.com/ortrain/ortrain/runtime"
)

// TestLowerBatchStatsKeepsResults builds a pointwise Conv (fewer input than
// output channels, so its centering folds into a bias), training-mode
// BatchNorm, ReLU, residual Add and ReLU, with gradients, batch mean and
// variance as outputs, and runs it in ONNX Runtime before and after
// LowerBatchStats: every output must agree to float32 rounding, the
// centering Sub must be gone and the BatchNorm must have become a Conv.
// (The graph before lowering is the one the gradient rules are checked
// against PyTorch with.)
func TestLowerBatchStatsKeepsResults(t *testing.T) {
	testutil.InitORT(t)
	shapes := [][]int64{{4, 8, 16, 16}, {16, 8, 1, 1}, {16}, {16}, {4, 16, 16, 16}}
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
		z := g.Conv(in[0], in[1], nil, ConvOpts{})
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
		sess, err := runtime.NewSession(model, nil, nil, runtime.Options{IntraOpThreads: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Destroy()
		var tensors []*runtime.Tensor
		for i, s := range shapes {
			tt, err := runtime.NewFloat32(s, feeds[i])
			if err != nil {
				t.Fatal(err)
			}
			defer tt.Destroy()
			tensors = append(tensors, tt)
		}
		outs, err := sess.Run(tensors, nil)
		if err != nil {
			t.Fatal(err)
		}
		var res [][]float32
		for _, o := range outs {
			res = append(res, append([]float32{}, o.Float32s()...))
			o.Destroy()
		}
		return res, g
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
	if count(plain, centering) != 1 || count(lowered, centering) != 0 {
		t.Errorf("centering Subs: %d before, %d after lowering; want 1 and 0", count(plain, centering), count(lowered, centering))
	}
	if count(plain, batchNorm) != 1 || count(lowered, batchNorm) != 0 {
		t.Errorf("batch-stats BatchNorms: %d before, %d after lowering; want 1 and 0", count(plain, batchNorm), count(lowered, batchNorm))
	}
	// Passes over the activations: nodes writing a tensor of the Conv
	// output's size. The centering Sub's is gone; nothing of that size is
	// added.
	full := func(n *Node) bool { return n.Outputs[0].Shape.NumElements() >= 4*16*16*16 }
	if b, a := count(plain, full), count(lowered, full); a != b-1 {
		t.Errorf("activation-sized nodes: %d before, %d after lowering; want one fewer", b, a)
	}
}
