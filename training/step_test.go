package training

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ortrain/ortrain/graphgen"
	"github.com/ortrain/ortrain/internal/testutil"
	"github.com/ortrain/ortrain/models"
	"github.com/ortrain/ortrain/runtime"
)

type oracleRun struct {
	arch        string
	size, batch int
	zeroGamma   bool
	steps       int
	lr          float32
	// strict holds every state tensor to 1e-4 (infinity-norm relative error)
	// and every loss to 1e-5. Otherwise the state after each dumped step must
	// be as close to float64 PyTorch as PyTorch's own float32 run is (within
	// a factor 4) or within 1e-3, measured on the whole state change.
	strict   bool
	dataSeed uint64
}

// comparison is how far one non-strict run ended from float64 PyTorch after
// a step, beside how far PyTorch's own float32 runs ended.
type comparison struct {
	step                int
	state, loss         float64 // ours: L2 relative error of the state change, loss relative error
	yardState, yardLoss float64 // the worst PyTorch float32 run
}

// checkFloat32Yardstick holds non-strict runs (several data seeds of one
// configuration) to float32's reach: each state change within 1e-3 (L2) of
// float64 PyTorch, or no farther than 4x the worst PyTorch float32 run over
// all the seeds; losses likewise, against 1e-5.
func checkFloat32Yardstick(t *testing.T, runs [][]comparison) {
	t.Helper()
	var yardState, yardLoss float64
	for _, cs := range runs {
		for _, c := range cs {
			yardState, yardLoss = math.Max(yardState, c.yardState), math.Max(yardLoss, c.yardLoss)
		}
	}
	stateTol, lossTol := math.Max(1e-3, 4*yardState), math.Max(1e-5, 4*yardLoss)
	for i, cs := range runs {
		for _, c := range cs {
			if c.state > stateTol {
				t.Errorf("seed %d step %d: state change differs from float64 PyTorch by %.3g (L2) > %.3g", i, c.step, c.state, stateTol)
			}
			if c.step > 1 && c.loss > lossTol {
				t.Errorf("seed %d step %d: loss differs from float64 PyTorch by %.3g > %.3g", i, c.step, c.loss, lossTol)
			}
			t.Logf("seed %d step %d: vs float64 PyTorch: state change %.3g (PyTorch float32 up to %.3g), loss %.3g (up to %.3g)",
				i, c.step, c.state, c.yardState, c.loss, c.yardLoss)
		}
	}
}

// runStepOracle trains with our train-step graph in ONNX Runtime and with
// PyTorch (float64, and float32 as the yardstick of float32 rounding) from the
// same weights and batches, and compares every parameter, momentum buffer and
// running statistic after the first and the last step. Strict runs are
// checked here; others return their comparisons for checkFloat32Yardstick.
func runStepOracle(t *testing.T, r oracleRun) []comparison {
	testutil.InitORT(t)
	const classes = 10
	mo := models.Options{Name: r.arch, Classes: classes, ImageSize: r.size, Batch: r.batch, Seed: 42, ZeroGamma: r.zeroGamma}
	step, err := BuildStep(StepOptions{Model: mo, NoBiasDecay: true})
	if err != nil {
		t.Fatal(err)
	}
	init := step.InitialState()
	st, err := NewStepper(step, init, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	dir := t.TempDir()
	// The initial weights travel to PyTorch by name in an inference model.
	inf, err := models.Build(models.Options{Name: r.arch, Classes: classes, ImageSize: r.size, Seed: 42, ZeroGamma: r.zeroGamma})
	if err != nil {
		t.Fatal(err)
	}
	modelPath := filepath.Join(dir, "init.onnx")
	if err := inf.Graph.WriteFile(modelPath, graphgen.ModelInfo{}); err != nil {
		t.Fatal(err)
	}
	h := Hyper{LR: r.lr, Momentum: 0.9, WeightDecay: 1e-4}
	rng := rand.New(rand.NewPCG(1, 2+r.dataSeed))
	var batches []map[string]string
	var losses []float32
	names := step.StateNames()
	snap := map[int][]float32{}
	for s := 1; s <= r.steps; s++ {
		img, tgt := st.Images(), st.Targets()
		for i := range img {
			img[i] = float32(rng.NormFloat64())
		}
		labels := make([]int, r.batch)
		for i := range labels {
			labels[i] = rng.IntN(classes)
		}
		if err := SmoothTargets(tgt, labels, classes, 0.1, SmoothPaper); err != nil {
			t.Fatal(err)
		}
		fi, ft := filepath.Join(dir, fmt.Sprintf("x%d.bin", s)), filepath.Join(dir, fmt.Sprintf("q%d.bin", s))
		testutil.WriteFloats(t, fi, img)
		testutil.WriteFloats(t, ft, tgt)
		batches = append(batches, map[string]string{"images": fi, "targets": ft})
		res, err := st.Run(h)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Finite {
			t.Fatalf("step %d: gradients not finite", s)
		}
		losses = append(losses, res.Losses[0])
		if s == 1 || s == r.steps {
			var all []float32
			for _, n := range names {
				all = append(all, st.State(n)...)
			}
			snap[s] = all
		}
	}
	bj, _ := json.Marshal(batches)
	nj, _ := json.Marshal(names)
	bp, np := filepath.Join(dir, "batches.json"), filepath.Join(dir, "names.json")
	os.WriteFile(bp, bj, 0o644)
	os.WriteFile(np, nj, 0o644)
	oracle := func(out string, extra ...string) {
		args := []string{"--model", modelPath, "--arch", r.arch, "--classes", fmt.Sprint(classes),
			"--batches", bp, "--shape", fmt.Sprintf("%d,3,%d,%d", r.batch, r.size, r.size),
			"--lr", fmt.Sprint(r.lr), "--momentum", "0.9", "--wd", "1e-4", "--no-bias-decay",
			"--names", np, "--dump-after", fmt.Sprintf("1,%d", r.steps), "--out", out}
		testutil.RunOracle(t, "train_step_torch.py", append(args, extra...)...)
	}
	out := filepath.Join(dir, "torch64")
	if r.strict {
		oracle(out)
	} else {
		oracle(out, "--yardstick", "3")
	}
	relLoss := func(a, b float32) float64 { return math.Abs(float64(a-b)) / math.Abs(float64(b)) }
	want := testutil.ReadFloats(t, out+".losses.bin")
	// The first loss comes before any update: always held to 1e-5.
	if e := relLoss(losses[0], want[0]); e > 1e-5 {
		t.Errorf("step 1 loss %.7g, PyTorch %.7g: relative error %.3g > 1e-5", losses[0], want[0], e)
	}
	var yard map[string]struct{ State, Loss float64 }
	if !r.strict {
		b, err := os.ReadFile(out + ".yardstick.json")
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &yard); err != nil {
			t.Fatal(err)
		}
	}
	dumped := []int{1}
	if r.steps > 1 {
		dumped = append(dumped, r.steps)
	}
	shapes := step.StateShapes()
	var start []float32
	for _, n := range names {
		start = append(start, init[n]...)
	}
	var cmp []comparison
	for _, s := range dumped {
		ref := testutil.ReadFloats(t, fmt.Sprintf("%s.step%d.bin", out, s))
		got := snap[s]
		if len(ref) != len(got) {
			t.Fatalf("step %d: %d values from PyTorch, %d from us", s, len(ref), len(got))
		}
		if r.strict {
			off, worst, worstName := 0, 0.0, ""
			for _, n := range names {
				size := int(graphgen.S(shapes[n]...).NumElements())
				e := testutil.RelErr(got[off:off+size], ref[off:off+size])
				if e > worst {
					worst, worstName = e, n
				}
				if e > 1e-4 {
					t.Errorf("step %d: %s differs from PyTorch by %.3g relative (> 1e-4)", s, n, e)
				}
				off += size
			}
			t.Logf("step %d: worst relative error %.3g (%s) over %d tensors", s, worst, worstName, len(names))
			continue
		}
		change := func(v []float32) []float32 {
			d := make([]float32, len(v))
			for i := range v {
				d[i] = v[i] - start[i]
			}
			return d
		}
		y := yard[fmt.Sprint(s)]
		cmp = append(cmp, comparison{step: s, state: testutil.L2RelErr(change(got), change(ref)),
			loss: relLoss(losses[s-1], want[s-1]), yardState: y.State, yardLoss: y.Loss})
	}
	return cmp
}

// The acceptance configuration: resnet50d, zero-gamma, batch 4 at 64x64,
// 10 classes, label smoothing 0.1, NAG 0.9, lr 0.1, wd 1e-4, no-bias-decay.
// One step is well-conditioned: PyTorch's float32 stays within 5e-6 of its
// float64 on every tensor (scripts/oracle/conditioning.py 50 d 4 64 1 0.1 1 3).
func TestStepMatchesPyTorch(t *testing.T) {
	if cmp := runStepOracle(t, oracleRun{arch: "resnet50d", size: 64, batch: 4, zeroGamma: true, steps: 1, lr: 0.1, strict: true}); cmp != nil {
		t.Fatal("strict run returned comparisons")
	}
}

// Three consecutive steps in the same configuration. These are chaotic: the
// loss jumps from 2.75 to 15 at step 2, ReLU decisions of activations within
// rounding of zero flip, and BatchNorm's backward spreads each flip over a
// channel (by about 1/M, M the values per channel: 1/16 in layer4 here).
// PyTorch's own float32 run then differs from its float64 run by 1e-2 to 0.4
// on some tensor, and even float64 does when the input moves by one part in
// 1e7 (scripts/oracle/conditioning.py 50 d 4 64 1 0.1 3 3). So the state is
// held to what float32 can do: within 1e-3 of float64 PyTorch on the whole
// state change (L2), or no farther than 4x the worst of PyTorch's float32
// runs (one plain, three with the input nudged by 1e-7).
func TestThreeStepsMatchPyTorch(t *testing.T) {
	checkFloat32Yardstick(t, [][]comparison{
		runStepOracle(t, oracleRun{arch: "resnet50d", size: 64, batch: 4, zeroGamma: true, steps: 3, lr: 0.1})})
}

// Without zero-gamma every residual branch gets a gradient from the first
// step, which checks the whole chain of rules. With every ReLU live, flips
// happen at step 1 on about half the runs, PyTorch's float32 included
// (conditioning.py 18 d 8 64 0 0.1 1 4: 6e-6 twice, 2.6e-2 and 4.9e-2), so
// four data seeds are held to the float32 yardstick pooled over them.
func TestPlainInitStepsMatchPyTorch(t *testing.T) {
	var runs [][]comparison
	for seed := uint64(0); seed < 4; seed++ {
		runs = append(runs, runStepOracle(t, oracleRun{arch: "resnet18d", size: 64, batch: 8, steps: 2, lr: 0.1, dataSeed: seed}))
	}
	checkFloat32Yardstick(t, runs)
}

// One step at 224x224 (the slow test). Ten times more activations make ReLU
// flips likely on any run: PyTorch's float32 differs from its float64 by 5e-3
// to 3e-2 on some tensor after one step (conditioning.py 50 d 4 224 1 0.1 1 3),
// so this step is held to the float32 yardstick as well.
func TestStepMatchesPyTorchAt224(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: resnet50d at 224 in float64 PyTorch; run without -short")
	}
	checkFloat32Yardstick(t, [][]comparison{
		runStepOracle(t, oracleRun{arch: "resnet50d", size: 224, batch: 4, zeroGamma: true, steps: 1, lr: 0.1})})
}

func TestSmoothTargets(t *testing.T) {
	dst := make([]float32, 2*5)
	if err := SmoothTargets(dst, []int{1, 4}, 5, 0.1, SmoothPaper); err != nil {
		t.Fatal(err)
	}
	want := []float32{0.025, 0.9, 0.025, 0.025, 0.025, 0.025, 0.025, 0.025, 0.025, 0.9}
	for i := range want {
		if math.Abs(float64(dst[i]-want[i])) > 1e-7 {
			t.Fatalf("paper rule: %v", dst)
		}
	}
	if err := SmoothTargets(dst, []int{0, 2}, 5, 0.1, SmoothUniform); err != nil {
		t.Fatal(err)
	}
	if math.Abs(float64(dst[0]-0.92)) > 1e-7 || math.Abs(float64(dst[1]-0.02)) > 1e-7 {
		t.Fatalf("uniform rule: %v", dst)
	}
	for _, bad := range [][]int{{5}, {-1}} {
		if err := SmoothTargets(make([]float32, 5), bad, 5, 0.1, SmoothPaper); err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("label %v: %v", bad, err)
		}
	}
}
