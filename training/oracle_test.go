package training

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/ortrain/ortrain/graphgen"
	"github.com/ortrain/ortrain/internal/testutil"
	"github.com/ortrain/ortrain/models"
	"github.com/ortrain/ortrain/runtime"
)

// start is the state a whole-step oracle starts from.
type start int

const (
	// startZeroGamma is the recipe's initialization: every residual
	// block's last BatchNorm gamma at 0, running statistics at 0 and 1.
	startZeroGamma start = iota
	// startSmallGamma sets those gammas to U(0.1, 0.3), as zero-gamma
	// training has them after a while, so every residual branch gets a
	// gradient, and leaves the running statistics at 0 and 1.
	startSmallGamma
	// startWarm is startSmallGamma after warmSteps steps of our own
	// training: running statistics under way, momentum buffers non-zero.
	startWarm
)

const warmSteps = 4

func (s start) String() string {
	return [...]string{"zero-gamma", "small-gamma", "warm"}[s]
}

// oracleCase is one whole-step comparison with PyTorch.
type oracleCase struct {
	arch          string
	size, batch   int
	steps         int // compared steps
	lr            float32
	fp16, distill bool
	start         start
	// cpu checks the step the trainer runs on the CPU: blocked
	// convolutions and small planes as batch-wide products
	// (StepOptions.NchwcBlock, BatchGemm).
	cpu bool
}

func (c oracleCase) String() string {
	s := fmt.Sprintf("%s_%d_b%d_%s_%dsteps", c.arch, c.size, c.batch, c.start, c.steps)
	if c.fp16 {
		s += "_fp16"
	}
	if c.distill {
		s += "_distill"
	}
	if c.cpu {
		s += "_cpu"
	}
	return s
}

// oracleResult is our run and PyTorch's float64 and float32 runs of a case,
// with the decisions shared.
type oracleResult struct {
	names  []string
	shapes map[string][]int64
	// ours, f64, f32: state after step k (1 and the last), per dtype.
	ours, f64, f32 map[int][]float32
	// losses per step (total, then hard and soft with distillation).
	oursLoss, f64Loss, f32Loss [][]float32
	// bnNames and the first step's BatchNorm outputs.
	bnNames        []string
	oursBN         []float32
	f64BN, f32BN   []float64
	bnSizes        []int
	lastGammaCount int
}

// setSmallLastGammas draws every residual block's last BatchNorm gamma in
// state from U(0.1, 0.3) and returns how many tensors it set.
func setSmallLastGammas(state map[string][]float32, names []string, rng *rand.Rand) int {
	gammas := lastGammaNames(names)
	for _, n := range gammas {
		for i := range state[n] {
			state[n][i] = float32(0.1 + 0.2*rng.Float64())
		}
	}
	return len(gammas)
}

// lastGammaNames are the gammas of every residual block's last BatchNorm
// (bn3 of a bottleneck, bn2 of a basic block), the ones zero-gamma zeroes.
func lastGammaNames(names []string) []string {
	re := regexp.MustCompile(`^(layer\d+\.\d+)\.bn(\d)\.weight$`)
	last := map[string]string{}
	for _, n := range names {
		if m := re.FindStringSubmatch(n); m != nil && n > last[m[1]] {
			last[m[1]] = n
		}
	}
	var out []string
	for _, n := range last {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// oracleImagesEnv may name a file of normalized images, float32 (M,3,S,S)
// for the case's size S, that the oracles draw their batches from instead
// of normal noise: for measuring on real images (docs/training-graph.md).
const oracleImagesEnv = "ORTRAIN_ORACLE_IMAGES"

// fillOracleBatch draws a batch (normal images, labels smoothed by the
// paper's rule, teacher logits of spread 3) into the stepper.
func fillOracleBatch(t *testing.T, st *Stepper, rng *rand.Rand, classes int) {
	t.Helper()
	for i := range st.Images() {
		st.Images()[i] = float32(rng.NormFloat64())
	}
	if f := os.Getenv(oracleImagesEnv); f != "" {
		all := testutil.ReadFloats(t, f)
		n := len(st.Images())
		k := rng.IntN(len(all)/n) * n
		copy(st.Images(), all[k:k+n])
	}
	labels := make([]int, len(st.Targets())/classes)
	for i := range labels {
		labels[i] = rng.IntN(classes)
	}
	if err := SmoothTargets(st.Targets(), labels, classes, 0.1, SmoothPaper); err != nil {
		t.Fatal(err)
	}
	for i := range st.TeacherLogits() {
		st.TeacherLogits()[i] = float32(3 * rng.NormFloat64())
	}
}

// runOracle trains c.steps steps with our train-step graph in ONNX Runtime,
// then the same steps from the same state and batches in PyTorch, float64
// and float32, each taking our ReLU and MaxPool decisions.
func runOracle(t *testing.T, c oracleCase) *oracleResult {
	testutil.InitORT(t)
	const classes = 10
	mo := models.Options{Name: c.arch, Classes: classes, ImageSize: c.size, Batch: c.batch, Seed: 42, ZeroGamma: c.start == startZeroGamma}
	so := StepOptions{Model: mo, NoBiasDecay: true, Probes: true, FP16: c.fp16, Distill: c.distill}
	if c.cpu {
		if err := so.UseCPUKernels(runtime.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	step, err := BuildStep(so)
	if err != nil {
		t.Fatal(err)
	}
	state := step.InitialState()
	names := step.StateNames()
	res := &oracleResult{names: names, shapes: step.StateShapes(),
		ours: map[int][]float32{}, f64: map[int][]float32{}, f32: map[int][]float32{}}
	rng := rand.New(rand.NewPCG(1, 2))
	if c.start != startZeroGamma {
		res.lastGammaCount = setSmallLastGammas(state, names, rng)
	}
	st, err := NewStepper(step, state, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h := Hyper{LR: c.lr, Momentum: 0.9, WeightDecay: 1e-4, LossScale: 1024, KDTemperature: 20, KDHardWeight: 0.5}
	if c.start == startWarm {
		for s := 0; s < warmSteps; s++ {
			fillOracleBatch(t, st, rng, classes)
			if r, err := st.Run(h); err != nil || !r.Finite {
				t.Fatalf("warm-up step %d: %v (finite %v)", s+1, err, r.Finite)
			}
		}
	}
	dir := t.TempDir()
	var initVals []float32
	for _, n := range names {
		initVals = append(initVals, st.State(n)...)
	}
	testutil.WriteFloats(t, filepath.Join(dir, "init.bin"), initVals)

	var batches []map[string]string
	for s := 1; s <= c.steps; s++ {
		fillOracleBatch(t, st, rng, classes)
		b := map[string]string{"images": filepath.Join(dir, fmt.Sprintf("x%d.bin", s)), "targets": filepath.Join(dir, fmt.Sprintf("q%d.bin", s))}
		testutil.WriteFloats(t, b["images"], st.Images())
		testutil.WriteFloats(t, b["targets"], st.Targets())
		if c.distill {
			b["teacher"] = filepath.Join(dir, fmt.Sprintf("r%d.bin", s))
			testutil.WriteFloats(t, b["teacher"], st.TeacherLogits())
		}
		batches = append(batches, b)
		r, err := st.Run(h)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Finite {
			t.Fatalf("step %d: gradients not finite", s)
		}
		res.oursLoss = append(res.oursLoss, r.Losses)
		writeDecisions(t, filepath.Join(dir, fmt.Sprintf("dec%d", s)), st)
		if s == 1 {
			for i, p := range step.Probes {
				if name, ok := strings.CutPrefix(p.Name, ProbeBN); ok {
					res.bnNames = append(res.bnNames, name)
					v := st.Probe(i).Float32s()
					res.bnSizes = append(res.bnSizes, len(v))
					res.oursBN = append(res.oursBN, v...)
				}
			}
		}
		if s == 1 || s == c.steps {
			var all []float32
			for _, n := range names {
				all = append(all, st.State(n)...)
			}
			res.ours[s] = all
		}
	}
	writeJSON := func(name string, v any) string {
		p := filepath.Join(dir, name)
		j, _ := json.Marshal(v)
		if err := os.WriteFile(p, j, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	out := filepath.Join(dir, "torch")
	dtypes := []string{"float64", "float32"}
	args := []string{"--arch", c.arch, "--classes", fmt.Sprint(classes),
		"--names", writeJSON("names.json", names), "--init", filepath.Join(dir, "init.bin"),
		"--batches", writeJSON("batches.json", batches), "--shape", fmt.Sprintf("%d,3,%d,%d", c.batch, c.size, c.size),
		"--lr", fmt.Sprint(c.lr), "--momentum", "0.9", "--wd", "1e-4", "--no-bias-decay",
		"--dump-after", fmt.Sprintf("1,%d", c.steps), "--dtypes", strings.Join(dtypes, ","),
		"--bn-names", writeJSON("bn.json", res.bnNames),
		"--decisions", filepath.Join(dir, "dec%d"), "--out", out}
	if c.distill {
		args = append(args, "--kd-temperature", fmt.Sprint(h.KDTemperature), "--kd-hard-weight", fmt.Sprint(h.KDHardWeight))
	}
	testutil.RunOracle(t, "train_step_torch.py", args...)
	for _, dt := range dtypes {
		states := map[string]map[int][]float32{"float64": res.f64, "float32": res.f32}[dt]
		for s := range res.ours {
			states[s] = testutil.ReadFloats(t, fmt.Sprintf("%s.%s.step%d.bin", out, dt, s))
			if len(states[s]) != len(res.ours[s]) {
				t.Fatalf("step %d: %d values from PyTorch %s, %d from us", s, len(states[s]), dt, len(res.ours[s]))
			}
		}
		flat := testutil.ReadFloats(t, fmt.Sprintf("%s.%s.losses.bin", out, dt))
		per := len(flat) / c.steps
		var losses [][]float32
		for s := 0; s < c.steps; s++ {
			losses = append(losses, flat[s*per:(s+1)*per])
		}
		bn := testutil.ReadFloat64s(t, fmt.Sprintf("%s.%s.bn.bin", out, dt))
		if len(bn) != len(res.oursBN) {
			t.Fatalf("BatchNorm outputs: %d values from PyTorch %s, %d from us", len(bn), dt, len(res.oursBN))
		}
		if dt == "float64" {
			res.f64Loss, res.f64BN = losses, bn
		} else {
			res.f32Loss, res.f32BN = losses, bn
		}
	}
	return res
}

// relErr64 is max|got-want| / max|want| against a float64 reference.
func relErr64(got []float32, want []float64) float64 {
	var d, r float64
	for i := range got {
		d = math.Max(d, math.Abs(float64(got[i])-want[i]))
		r = math.Max(r, math.Abs(want[i]))
	}
	if r == 0 {
		return d
	}
	return d / r
}

func float64s(xs []float32) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = float64(x)
	}
	return out
}

// writeDecisions saves the step's ReLU and MaxPool probe outputs in the
// layout scripts/oracle/train_step_torch.py --decisions reads.
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
		switch {
		case strings.HasPrefix(p.Name, "probe/relu/"):
			name = fmt.Sprintf("relu_%d.bin", len(shapes["relu"]))
			shapes["relu"] = append(shapes["relu"], p.Shape.Ints())
			b = make([]byte, len(tt.Bools()))
			for j, v := range tt.Bools() {
				if v {
					b[j] = 1
				}
			}
		case strings.HasPrefix(p.Name, "probe/maxpool/"):
			name = fmt.Sprintf("maxpool_%d.bin", len(shapes["maxpool"]))
			shapes["maxpool"] = append(shapes["maxpool"], p.Shape.Ints())
			for _, v := range tt.Int64s() {
				b = binary.LittleEndian.AppendUint64(b, uint64(v))
			}
		default:
			continue
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

// Tolerances of the whole-step oracles (docs/training-graph.md, "How it is
// checked"). With the decisions shared, a step differs from the float64
// one only by the rounding of continuous operations, and PyTorch's own
// float32 run on the same tensors shows how much of that each tensor's
// conditioning allows:
//   - a float32 step's tensor may be off by oracleFloor plus oracleFactor
//     times PyTorch float32's distance (two float32 programs round apart
//     at random; the largest ratio seen is 2.2), and the first step's
//     BatchNorm outputs by bnFloor plus as much;
//   - a float16 step's by fp16Floor plus that distance scaled by the ratio
//     of the formats' rounding units, 2^-11 / 2^-24 (ONNX Runtime's CPU
//     provider computes much of the float16 step in float32: it lands at a
//     tenth of that).
//
// A wrong rule is off by far more: a dropped term moves a gradient by its
// own size, and a BatchNorm gradient term off by 0.1% fails.
const (
	oracleFloor  = 1e-5
	oracleFactor = 8
	fp16Floor    = 1e-4
	fp16Factor   = 1 << 13
	bnFloor      = 1e-6
)

// checkOracle asserts the tolerances above on every state tensor after the
// compared steps, every loss, and (float32 steps) every BatchNorm output of
// the first step, and logs the worst cases.
func checkOracle(t *testing.T, c oracleCase, r *oracleResult) {
	t.Helper()
	bound := func(ptErr float64) float64 {
		if c.fp16 {
			return fp16Floor + fp16Factor*ptErr
		}
		return oracleFloor + oracleFactor*ptErr
	}
	for s := 1; s <= c.steps; s++ {
		ours, ref := r.ours[s], r.f64[s]
		if ours == nil {
			continue
		}
		off := 0
		var worst, worstPt, worstShare float64
		var worstName string
		for _, n := range r.names {
			size := int(graphgen.S(r.shapes[n]...).NumElements())
			ref64 := float64s(ref[off : off+size])
			e, ep := relErr64(ours[off:off+size], ref64), relErr64(r.f32[s][off:off+size], ref64)
			if e > bound(ep) {
				t.Errorf("step %d: %s is %.3g from float64 (PyTorch float32: %.3g), over %.3g", s, n, e, ep, bound(ep))
			}
			if e > worst {
				worst, worstName, worstPt = e, n, ep
			}
			worstShare = math.Max(worstShare, e/bound(ep))
			off += size
		}
		t.Logf("step %d: worst of %d tensors %.3g (%s; PyTorch float32 %.3g); at most %.0f%% of a bound",
			s, len(r.names), worst, worstName, worstPt, 100*worstShare)
	}
	for s := range r.oursLoss {
		for i, l := range r.oursLoss[s] {
			want := float64(r.f64Loss[s][i])
			e := math.Abs(float64(l)-want) / math.Abs(want)
			tol := bound(math.Abs(float64(r.f32Loss[s][i])-want) / math.Abs(want))
			if e > tol {
				t.Errorf("step %d loss %d: %.8g, float64 %.8g: %.3g relative, over %.3g", s+1, i, l, want, e, tol)
			}
		}
	}
	if c.fp16 {
		return
	}
	worst, worstName := bnPrecision(r, func(name string, e, ep float64) {
		if e > bnFloor+oracleFactor*ep {
			t.Errorf("BatchNorm %s output: %.3g from float64, PyTorch float32 %.3g", name, e, ep)
		}
	})
	t.Logf("BatchNorm outputs: worst %.2f times PyTorch float32's distance from float64 (%s)", worst, worstName)
}

// bnPrecision calls f with each BatchNorm output's distance from float64,
// ours and PyTorch float32's, and returns the largest ratio of the two.
func bnPrecision(r *oracleResult, f func(name string, ours, pt32 float64)) (float64, string) {
	off, worst, worstName := 0, 0.0, ""
	for i, n := range r.bnNames {
		sz := r.bnSizes[i]
		ref := r.f64BN[off : off+sz]
		e := relErr64(r.oursBN[off:off+sz], ref)
		var d, m float64
		for j := range ref {
			d = math.Max(d, math.Abs(r.f32BN[off+j]-ref[j]))
			m = math.Max(m, math.Abs(ref[j]))
		}
		f(n, e, d/m)
		if e/(d/m) > worst {
			worst, worstName = e/(d/m), n
		}
		off += sz
	}
	return worst, worstName
}

// The whole step against PyTorch, every variant of ResNet-18 and
// ResNet-50 in float32 and float16, from the recipe's zero-gamma start,
// from small non-zero last gammas with running statistics at 0 and 1, and
// after warm-up steps (running statistics under
// way, momentum buffers non-zero), with and without distillation; two
// steps each, so the second starts from momentum the first built.
func TestStepOracle(t *testing.T) {
	cases := []oracleCase{
		{arch: "resnet18", start: startSmallGamma},
		{arch: "resnet18", start: startWarm, fp16: true, distill: true},
		{arch: "resnet18b", start: startWarm, distill: true},
		{arch: "resnet18b", start: startSmallGamma, fp16: true},
		{arch: "resnet18c", start: startZeroGamma},
		{arch: "resnet18c", start: startWarm, fp16: true},
		{arch: "resnet18d", start: startZeroGamma, distill: true},
		{arch: "resnet18d", start: startZeroGamma, fp16: true, distill: true},
		{arch: "resnet50", start: startSmallGamma, distill: true},
		{arch: "resnet50", start: startWarm, fp16: true},
		{arch: "resnet50b", start: startWarm},
		{arch: "resnet50b", start: startSmallGamma, fp16: true, distill: true},
		{arch: "resnet50c", start: startZeroGamma, distill: true},
		{arch: "resnet50c", start: startWarm, fp16: true, distill: true},
		{arch: "resnet50d", start: startWarm, distill: true},
		{arch: "resnet50d", start: startSmallGamma, fp16: true},
		// The recipe's start over three steps.
		{arch: "resnet50d", start: startZeroGamma, steps: 3},
		// The CPU step (blocked convolutions, batch-wide products on the
		// small planes), where a comparison with the portable step would
		// see ReLU masks flip (TestLoweredStepMatchesPortable).
		{arch: "resnet18", start: startSmallGamma, cpu: true},
		{arch: "resnet50", start: startWarm, distill: true, cpu: true},
		{arch: "resnet50d", start: startSmallGamma, cpu: true},
	}
	for _, c := range cases {
		if c.size == 0 {
			// Batch 4 for ResNet-50, whose float64 step in PyTorch is the
			// suite's slowest part (2.7 s per step at 64x64); it still has
			// 16 values per channel on layer4's 2x2 planes.
			c.size, c.batch, c.lr = 64, 8, 0.1
			if strings.HasPrefix(c.arch, "resnet50") {
				c.batch = 4
			}
		}
		if c.steps == 0 {
			c.steps = 2
		}
		t.Run(c.String(), func(t *testing.T) { checkOracle(t, c, runOracle(t, c)) })
	}
}

// One step at 224x224, the size the recipe trains at (the slow case).
func TestStepOracleAt224(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: resnet50d at 224 in float64 PyTorch; run without -short")
	}
	c := oracleCase{arch: "resnet50d", size: 224, batch: 4, steps: 1, lr: 0.1, start: startSmallGamma}
	checkOracle(t, c, runOracle(t, c))
}

// The forward's precision at the first step: each BatchNorm output of
// ResNet-18-D, batch 16 at 64x64, against float64, from the recipe's
// zero-gamma start (every block passes its input on through a ReLU, and
// the average-pool shortcuts' convolutions see inputs of large mean) and
// from small last gammas. With the running mean as the shift this was 6.3
// and 4.1 times PyTorch float32's distance (docs/training-graph.md).
func TestBatchNormForwardPrecision(t *testing.T) {
	for _, s := range []start{startZeroGamma, startSmallGamma} {
		c := oracleCase{arch: "resnet18d", size: 64, batch: 16, steps: 1, lr: 0.1, start: s}
		t.Run(c.String(), func(t *testing.T) { checkOracle(t, c, runOracle(t, c)) })
	}
}
