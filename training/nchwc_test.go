package training

import (
	"math"
	"testing"

	"github.com/ortrain/ortrain/graphgen"
	"github.com/ortrain/ortrain/internal/testutil"
	"github.com/ortrain/ortrain/models"
	"github.com/ortrain/ortrain/runtime"
)

// The step with blocked convolutions (what the trainer runs on the CPU)
// lands where the portable step does: one step of resnet50d, whose deep
// stem and first stage have 3x3 convolutions on planes of 32x32 and 16x16
// at 64x64, from the same state and batch, every parameter, momentum
// buffer and running statistic within 1e-4 relative, the loss within 1e-5.
// Both run the same arithmetic in another order.
func TestBlockedStepMatchesPortable(t *testing.T) {
	testutil.InitORT(t)
	block, err := NchwcBlock(runtime.Options{})
	if err != nil || (block != 8 && block != 16) {
		t.Fatalf("NchwcBlock = %d, %v; want 8 or 16 on x86-64 (ONNX Runtime picks 16 with AVX-512, else 8)", block, err)
	}
	mo := models.Options{Name: "resnet50d", Classes: 10, ImageSize: 64, Batch: 4, Seed: 3, ZeroGamma: true}
	plain := newStepper(t, StepOptions{Model: mo, NoBiasDecay: true})
	blocked := newStepper(t, StepOptions{Model: mo, NoBiasDecay: true, NchwcBlock: block})
	lowered := 0
	for _, n := range blocked.Step.Graph.Nodes {
		if n.Op == "Conv" && n.Domain == graphgen.NchwcDomain {
			lowered++
		}
	}
	// deep stem's second and third, layer1's three, and their input
	// gradients (the stem's second's input gradient included)
	if lowered < 10 {
		t.Fatalf("%d blocked convolutions in the step, want at least 10", lowered)
	}
	fillBatch(plain, 1, 10)
	fillBatch(blocked, 1, 10)
	h := Hyper{LR: 0.1, Momentum: 0.9, WeightDecay: 1e-4}
	rp, err := plain.Run(h)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := blocked.Run(h)
	if err != nil {
		t.Fatal(err)
	}
	if e := math.Abs(float64(rb.Losses[0]-rp.Losses[0])) / float64(rp.Losses[0]); e > 1e-5 || !rb.Finite {
		t.Errorf("loss blocked %g, portable %g (finite %v)", rb.Losses[0], rp.Losses[0], rb.Finite)
	}
	worst := 0.0
	for _, name := range plain.Step.StateNames() {
		e := testutil.RelErr(blocked.State(name), plain.State(name))
		if e > 1e-4 {
			t.Errorf("%s: blocked step differs from the portable one by %.3g relative (> 1e-4)", name, e)
		}
		worst = math.Max(worst, e)
	}
	t.Logf("%d blocked convolutions (block %d); state within %.3g of the portable step", lowered, block, worst)
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
