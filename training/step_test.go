package training

import (
	"encoding/binary"
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
	dataSeed    uint64
	// decisions makes PyTorch take our ReLU and MaxPool decisions (the
	// step's probe outputs), so that rounding cannot flip one and the
	// comparison stays strict over several steps and at 224x224.
	decisions bool
}

// runStepOracle trains with our train-step graph in ONNX Runtime and with
// PyTorch in float64 from the same weights (loaded by name) and batches, and
// requires every parameter, momentum buffer and running statistic to agree
// within 1e-4 (infinity-norm relative error) after the first step and 1e-3
// after the last, and every loss within 1e-5.
func runStepOracle(t *testing.T, r oracleRun) {
	testutil.InitORT(t)
	const classes = 10
	mo := models.Options{Name: r.arch, Classes: classes, ImageSize: r.size, Batch: r.batch, Seed: 42, ZeroGamma: r.zeroGamma}
	step, err := BuildStep(StepOptions{Model: mo, NoBiasDecay: true, Probes: r.decisions})
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
		if r.decisions {
			writeDecisions(t, filepath.Join(dir, fmt.Sprintf("dec%d", s)), st)
		}
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
	out := filepath.Join(dir, "torch64")
	args := []string{"--model", modelPath, "--arch", r.arch, "--classes", fmt.Sprint(classes),
		"--batches", bp, "--shape", fmt.Sprintf("%d,3,%d,%d", r.batch, r.size, r.size),
		"--lr", fmt.Sprint(r.lr), "--momentum", "0.9", "--wd", "1e-4", "--no-bias-decay",
		"--names", np, "--dump-after", fmt.Sprintf("1,%d", r.steps), "--out", out}
	if r.decisions {
		args = append(args, "--decisions", filepath.Join(dir, "dec%d"))
	}
	testutil.RunOracle(t, "train_step_torch.py", args...)
	want := testutil.ReadFloats(t, out+".losses.bin")
	for i := range losses {
		// The bar: the loss to 1e-5 after one step; later steps
		// (whose state the test holds to 1e-3) to 1e-4, since two float32
		// programs that sum in different orders drift apart step by step,
		// fastest in the plain-init run, whose loss grows to ~27.
		tol := 1e-5
		if i > 0 {
			tol = 1e-4
		}
		if e := math.Abs(float64(losses[i]-want[i])) / math.Abs(float64(want[i])); e > tol {
			t.Errorf("step %d loss %.7g, PyTorch %.7g: relative error %.3g > %g", i+1, losses[i], want[i], e, tol)
		}
	}
	shapes := step.StateShapes()
	for s, tol := range map[int]float64{1: 1e-4, r.steps: 1e-3} {
		if s == r.steps && r.steps == 1 {
			tol = 1e-4
		}
		ref := testutil.ReadFloats(t, fmt.Sprintf("%s.step%d.bin", out, s))
		got := snap[s]
		if len(ref) != len(got) {
			t.Fatalf("step %d: %d values from PyTorch, %d from us", s, len(ref), len(got))
		}
		off, worst, worstName := 0, 0.0, ""
		for _, n := range names {
			size := int(graphgen.S(shapes[n]...).NumElements())
			e := testutil.RelErr(got[off:off+size], ref[off:off+size])
			if e > worst {
				worst, worstName = e, n
			}
			if e > tol {
				t.Errorf("step %d: %s differs from PyTorch by %.3g relative (> %g)", s, n, e, tol)
			}
			off += size
		}
		t.Logf("step %d: worst relative error %.3g (%s) over %d tensors", s, worst, worstName, len(names))
	}
}

// writeDecisions saves the step's probe outputs in the layout
// scripts/oracle/train_step_torch.py --decisions reads.
func writeDecisions(t *testing.T, dir string, st *Stepper) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shapes := map[string][][]int64{"relu": {}, "maxpool": {}}
	for i, p := range st.Step.Probes {
		tt := st.Probe(i)
		var name string
		var b []byte
		if bs := tt.Bools(); bs != nil {
			name = fmt.Sprintf("relu_%d.bin", len(shapes["relu"]))
			shapes["relu"] = append(shapes["relu"], p.Shape.Ints())
			b = make([]byte, len(bs))
			for j, v := range bs {
				if v {
					b[j] = 1
				}
			}
		} else {
			name = fmt.Sprintf("maxpool_%d.bin", len(shapes["maxpool"]))
			shapes["maxpool"] = append(shapes["maxpool"], p.Shape.Ints())
			for _, v := range tt.Int64s() {
				b = binary.LittleEndian.AppendUint64(b, uint64(v))
			}
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	j, _ := json.Marshal(shapes)
	if err := os.WriteFile(filepath.Join(dir, "shapes.json"), j, 0o644); err != nil {
		t.Fatal(err)
	}
}

// The acceptance configuration: resnet50d, zero-gamma, batch 4 at 64x64,
// 10 classes, label smoothing 0.1, NAG 0.9, lr 0.1, wd 1e-4, no-bias-decay.
// One step is well-conditioned here: PyTorch's own float32 stays within 5e-6
// of its float64 (scripts/oracle/conditioning.py 50 d 4 64 1 0.1 1 3), so it
// is compared without any help.
func TestStepMatchesPyTorch(t *testing.T) {
	runStepOracle(t, oracleRun{arch: "resnet50d", size: 64, batch: 4, zeroGamma: true, steps: 1, lr: 0.1})
}

// Three consecutive steps in the same configuration. On its own PyTorch's
// float32 run ends up to 0.2 away from its float64 run on some tensor
// (conditioning.py 50 d 4 64 1 0.1 3 3): a ReLU input within rounding of zero
// flips, and BatchNorm's backward spreads the flip over its channel. With our
// decisions fed to the float64 run, the two agree strictly.
func TestThreeStepsMatchPyTorch(t *testing.T) {
	runStepOracle(t, oracleRun{arch: "resnet50d", size: 64, batch: 4, zeroGamma: true, steps: 3, lr: 0.1, decisions: true})
}

// The original ResNet-50 (stride on the first 1x1 conv, a strided 1x1
// convolution on the shortcut, the 7x7 stem), the architecture of the
// ablation's first rows, in TestStepMatchesPyTorch's configuration: the
// paths that ResNet-D replaces.
func TestStepMatchesPyTorchOriginalResNet(t *testing.T) {
	runStepOracle(t, oracleRun{arch: "resnet50", size: 64, batch: 4, zeroGamma: true, steps: 1, lr: 0.1})
}

// Without zero-gamma every residual branch gets a gradient from the first
// step, which checks the whole chain of rules.
func TestPlainInitStepsMatchPyTorch(t *testing.T) {
	runStepOracle(t, oracleRun{arch: "resnet18d", size: 64, batch: 8, steps: 3, lr: 0.1, decisions: true})
}

// One step at 224x224 (the slow test), where ten times more activations
// make a flip likely on any float32 run (conditioning.py 50 d 4 224 1 0.1 1 3:
// PyTorch float32 5e-3 to 3e-2 away), hence our decisions for the reference.
func TestStepMatchesPyTorchAt224(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: resnet50d at 224 in float64 PyTorch; run without -short")
	}
	runStepOracle(t, oracleRun{arch: "resnet50d", size: 224, batch: 4, zeroGamma: true, steps: 1, lr: 0.1, decisions: true})
}

// Every output name of the step graph appears once.
func TestStepOutputsUnique(t *testing.T) {
	step, err := BuildStep(StepOptions{Model: models.Options{Name: "resnet18", Classes: 5, ImageSize: 32, Batch: 2}, Distill: true, Probes: true})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, o := range step.Graph.Outputs {
		if seen[o.Name] {
			t.Errorf("output %s appears twice", o.Name)
		}
		seen[o.Name] = true
	}
	if !seen[OutLogits] || !seen[OutLossSoft] || !seen["probe/relu/0"] || !seen["probe/maxpool/0"] {
		t.Errorf("outputs %v", step.Graph.Outputs[:6])
	}
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
