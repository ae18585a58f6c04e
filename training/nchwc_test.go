package training

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/ortrain/ortrain/graphgen"
	"github.com/ortrain/ortrain/internal/testutil"
	"github.com/ortrain/ortrain/models"
	"github.com/ortrain/ortrain/runtime"
)

// The step the trainer runs on the CPU (blocked convolutions, and small
// planes as batch-wide products) lands where the portable step does: one
// step from the same state and batch, every parameter, momentum buffer and
// running statistic within 1e-4 relative, the loss within 1e-5. Both run
// the same arithmetic in another order. resnet18 starts from small last
// gammas, so every convolution has a gradient; resnet50d from zero-gamma,
// because from small gammas the two steps flip ReLU masks whose inputs
// lie within float32 rounding of 0 (0.16 relative apart after one step),
// which no order of summation avoids: TestStepOracle's cpu cases check
// that step against PyTorch with the masks shared.
func TestLoweredStepMatchesPortable(t *testing.T) {
	testutil.InitORT(t)
	block, err := NchwcBlock(runtime.Options{})
	if err != nil || (block != 8 && block != 16) {
		t.Fatalf("NchwcBlock = %d, %v; want 8 or 16 on x86-64 (ONNX Runtime picks 16 with AVX-512, else 8)", block, err)
	}
	for _, c := range []struct {
		model      string
		smallGamma bool
		blocked    int // at least
		gemms      int
	}{
		// Blocked: the deep stem's second and third, layer1's three, and
		// their input gradients (the stem's second's input gradient
		// included). Products: the 3x3s of layer 3 (on 4x4, one strided)
		// and layer 4 (on 2x2, one strided), and layer 4's 1x1s but
		// layer4.0's first (on 4x4), the shortcut included.
		{"resnet50d", false, 10, 15},
		// Products: the 3x3s of layers 3 and 4, and layer 4's shortcut.
		{"resnet18", true, 4, 9},
	} {
		t.Run(c.model, func(t *testing.T) {
			mo := models.Options{Name: c.model, Classes: 10, ImageSize: 64, Batch: 4, Seed: 3, ZeroGamma: true}
			stepper := newStepper
			if c.smallGamma {
				stepper = smallGammaStepper
			}
			plain := stepper(t, StepOptions{Model: mo, NoBiasDecay: true})
			lowered := stepper(t, StepOptions{Model: mo, NoBiasDecay: true, NchwcBlock: block, BatchGemm: true})
			blocked := 0
			rewritten := map[string]bool{} // ConvsAsGemm's scopes, one per convolution
			for _, n := range lowered.Step.Graph.Nodes {
				if n.Op == "Conv" && n.Domain == graphgen.NchwcDomain {
					blocked++
				}
				if strings.HasPrefix(n.Name, "gemm/") {
					rewritten[n.Name[:strings.LastIndex(n.Name, "/")]] = true
				}
			}
			gemms := len(rewritten)
			if blocked < c.blocked || gemms != c.gemms {
				t.Errorf("%d blocked convolutions and %d batch-wide products in the step, want at least %d and %d", blocked, gemms, c.blocked, c.gemms)
			}
			fillBatch(plain, 1, 10)
			fillBatch(lowered, 1, 10)
			h := Hyper{LR: 0.1, Momentum: 0.9, WeightDecay: 1e-4}
			rp, err := plain.Run(h)
			if err != nil {
				t.Fatal(err)
			}
			rl, err := lowered.Run(h)
			if err != nil {
				t.Fatal(err)
			}
			if e := math.Abs(float64(rl.Losses[0]-rp.Losses[0])) / float64(rp.Losses[0]); e > 1e-5 || !rl.Finite {
				t.Errorf("loss lowered %g, portable %g (finite %v)", rl.Losses[0], rp.Losses[0], rl.Finite)
			}
			worst := 0.0
			for _, name := range plain.Step.StateNames() {
				e := testutil.RelErr(lowered.State(name), plain.State(name))
				if e > 1e-4 {
					t.Errorf("%s: lowered step differs from the portable one by %.3g relative (> 1e-4)", name, e)
				}
				worst = math.Max(worst, e)
			}
			t.Logf("%d blocked convolutions (block %d), %d batch-wide products; state within %.3g of the portable step", blocked, block, gemms, worst)
		})
	}
}

// smallGammaStepper is a stepper of o's step from its initial state with
// every residual block's last BatchNorm gamma drawn from U(0.1, 0.3).
func smallGammaStepper(t *testing.T, o StepOptions) *Stepper {
	t.Helper()
	step, err := BuildStep(o)
	if err != nil {
		t.Fatal(err)
	}
	state := step.InitialState()
	setSmallLastGammas(state, step.StateNames(), rand.New(rand.NewPCG(1, 2)))
	st, err := NewStepper(step, state, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// The probe tells the two block sizes apart: the one it returns gives the
// Conv's values, the other candidate does not (wrong values or a failed
// run), so a wrong block size cannot be chosen.
func TestNchwcProbeRejectsOtherBlock(t *testing.T) {
	testutil.InitORT(t)
	block, err := NchwcBlock(runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	other := 24 - block // 16 <-> 8
	if ok, err := nchwcMatches(block, 1); !ok || err != nil {
		t.Fatalf("block %d: matches %v, %v; want a match", block, ok, err)
	}
	if ok, err := nchwcMatches(other, 1); ok {
		t.Fatalf("block %d matches too (err %v); the probe cannot tell the sizes apart", other, err)
	}
}
