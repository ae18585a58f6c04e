package training

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/ortrain/ortrain/graphgen"
	"github.com/ortrain/ortrain/internal/testutil"
	"github.com/ortrain/ortrain/runtime"
)

// The distillation term T^2 CE(softmax(r/T), softmax(z/T)), the combined
// loss with a hard weight, and their gradients with respect to the student
// logits equal a float64 PyTorch implementation of the paper's formula to
// 1e-5, for T in {1, 4, 20}, with one-hot-smoothed and mixup-mixed targets.
func TestDistillationLossMatchesPyTorch(t *testing.T) {
	testutil.InitORT(t)
	const n, k = 6, 10
	g := graphgen.New("kd", graphgen.DefaultOpset)
	z := g.Input("z", graphgen.Float, graphgen.S(n, k))
	r := g.Input("r", graphgen.Float, graphgen.S(n, k))
	q := g.Input("q", graphgen.Float, graphgen.S(n, k))
	temp := g.Input("t", graphgen.Float, graphgen.S(1))
	w := g.Input("w", graphgen.Float, graphgen.S(1))
	hard := CrossEntropy(g, z, q)
	soft := DistillationLoss(g, z, r, temp)
	loss := g.Add(g.Mul(w, hard), g.Mul(g.Sub(g.Scalar(graphgen.Float, 1), w), soft))
	one := g.Const(graphgen.FloatTensor([]int64{1}, []float32{1}))
	gl, err := g.Gradients(loss, []*graphgen.Value{z}, one)
	if err != nil {
		t.Fatal(err)
	}
	gs, err := g.Gradients(soft, []*graphgen.Value{z}, one)
	if err != nil {
		t.Fatal(err)
	}
	g.Output(loss, hard, soft, gl[0], gs[0])
	model, err := g.Marshal(graphgen.ModelInfo{})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := runtime.NewSession(model, nil, nil, runtime.Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()

	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(4, 4))
	var spec []map[string]any
	var ours [][]float32
	for ci, c := range []struct {
		temp, w float32
		mixed   bool
	}{{1, 0.5, false}, {1, 0.5, true}, {4, 0.5, false}, {4, 0.5, true}, {20, 0.5, false}, {20, 0.5, true}, {20, 0, true}, {4, 1, false}} {
		zs, rs, qs := make([]float32, n*k), make([]float32, n*k), make([]float32, n*k)
		for i := range zs {
			zs[i], rs[i] = float32(3*rng.NormFloat64()), float32(3*rng.NormFloat64())
		}
		labels := make([]int, n)
		for i := range labels {
			labels[i] = rng.IntN(k)
		}
		SmoothTargets(qs, labels, k, 0.1, SmoothPaper)
		if c.mixed { // mixup: lambda*q_i + (1-lambda)*q_j, pairs within the batch
			lam := float32(0.3)
			mixed := make([]float32, n*k)
			for i := 0; i < n; i++ {
				j := n - 1 - i
				for c := 0; c < k; c++ {
					mixed[i*k+c] = lam*qs[i*k+c] + (1-lam)*qs[j*k+c]
				}
			}
			qs = mixed
		}
		in := []*runtime.Tensor{}
		for _, d := range [][]float32{zs, rs, qs} {
			tt, _ := runtime.NewFloat32([]int64{n, k}, d)
			in = append(in, tt)
		}
		tt, _ := runtime.NewFloat32([]int64{1}, []float32{c.temp})
		ww, _ := runtime.NewFloat32([]int64{1}, []float32{c.w})
		in = append(in, tt, ww)
		outs, err := sess.Run(in, nil)
		if err != nil {
			t.Fatal(err)
		}
		var res []float32
		for _, o := range outs {
			res = append(res, o.Float32s()...)
			o.Destroy()
		}
		for _, x := range in {
			x.Destroy()
		}
		ours = append(ours, res)
		files := map[string]string{}
		for name, d := range map[string][]float32{"z": zs, "r": rs, "q": qs} {
			f := filepath.Join(dir, fmt.Sprintf("%s%d.bin", name, ci))
			testutil.WriteFloats(t, f, d)
			files[name] = f
		}
		spec = append(spec, map[string]any{"z": files["z"], "r": files["r"], "q": files["q"], "n": n, "k": k,
			"t": c.temp, "w": c.w, "out": filepath.Join(dir, fmt.Sprint("c", ci))})
	}
	b, _ := json.Marshal(spec)
	sp := filepath.Join(dir, "spec.json")
	os.WriteFile(sp, b, 0o644)
	testutil.RunOracle(t, "distill_torch.py", sp)
	for ci, c := range spec {
		want := testutil.ReadFloats(t, c["out"].(string)+".bin")
		got := ours[ci]
		for i, what := range []string{"loss", "hard", "soft"} {
			if e := math.Abs(float64(got[i]-want[i])) / math.Max(math.Abs(float64(want[i])), 1e-12); e > 1e-5 {
				t.Errorf("T=%v w=%v: %s %.8g, PyTorch %.8g (relative %.3g)", c["t"], c["w"], what, got[i], want[i], e)
			}
		}
		if e := testutil.RelErr(got[3:3+n*k], want[3:3+n*k]); e > 1e-5 {
			t.Errorf("T=%v w=%v: loss gradient differs by %.3g", c["t"], c["w"], e)
		}
		if e := testutil.RelErr(got[3+n*k:], want[3+n*k:]); e > 1e-5 {
			t.Errorf("T=%v w=%v: soft-term gradient differs by %.3g", c["t"], c["w"], e)
		}
	}
}
