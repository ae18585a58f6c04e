package training

import (
	"math"
	"testing"

	"github.com/ortrain/ortrain/internal/testutil"
	"github.com/ortrain/ortrain/models"
	"github.com/ortrain/ortrain/runtime"
)

func newSplitStepper(t *testing.T, o StepOptions) *SplitStepper {
	t.Helper()
	gs, us, err := BuildSplitStep(o)
	if err != nil {
		t.Fatal(err)
	}
	step, err := BuildStep(o)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := NewSplitStepper(gs, us, step.InitialState(), runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sp.Close)
	return sp
}

// fillMicroBatch draws micro-batch seed into the split stepper.
func fillMicroBatch(sp *SplitStepper, seed uint64, classes int) {
	st := &Stepper{images: sp.images, targets: sp.targets}
	fillBatch(st, seed, classes)
}

// One micro-batch per step makes the split step the fused one: two steps
// of resnet18d (the second with momentum) agree on every parameter,
// momentum buffer and running statistic to float32 rounding.
func TestSplitStepMatchesFused(t *testing.T) {
	testutil.InitORT(t)
	o := StepOptions{Model: models.Options{Name: "resnet18d", Classes: 10, ImageSize: 32, Batch: 4, Seed: 3}, NoBiasDecay: true}
	fused := newStepper(t, o)
	split := newSplitStepper(t, o)
	h := Hyper{LR: 0.1, Momentum: 0.9, WeightDecay: 1e-4}
	for s := uint64(1); s <= 2; s++ {
		fillBatch(fused, s, 10)
		fillMicroBatch(split, s, 10)
		r, err := fused.Run(h)
		if err != nil || !r.Finite {
			t.Fatalf("fused step %d: %v %v", s, r, err)
		}
		split.BeginStep()
		losses, err := split.Accumulate(h)
		if err != nil {
			t.Fatal(err)
		}
		if finite, err := split.Apply(h, 1); err != nil || !finite {
			t.Fatalf("split step %d: %v %v", s, finite, err)
		}
		if e := math.Abs(float64(losses[0]-r.Losses[0])) / float64(r.Losses[0]); e > 1e-6 {
			t.Errorf("step %d: loss %g split, %g fused", s, losses[0], r.Losses[0])
		}
	}
	var worst float64
	for _, n := range fused.Step.StateNames() {
		e := testutil.RelErr(split.State(n), fused.State(n))
		if e > 1e-5 {
			t.Errorf("%s: split step %.3g from the fused one", n, e)
		}
		worst = math.Max(worst, e)
	}
	t.Logf("split against fused after two steps: worst %.3g", worst)
}

// Two micro-batches accumulated in one stepper equal one micro-batch in
// each of two steppers whose sums are added (an all-reduce by hand): the
// two "ranks" end bit-identical, and equal to the one to float32 rounding
// of the sums' order.
func TestSplitStepAccumulation(t *testing.T) {
	testutil.InitORT(t)
	o := StepOptions{Model: models.Options{Name: "resnet18d", Classes: 10, ImageSize: 32, Batch: 4, Seed: 3}, NoBiasDecay: true}
	one := newSplitStepper(t, o)
	r0, r1 := newSplitStepper(t, o), newSplitStepper(t, o)
	h := Hyper{LR: 0.1, Momentum: 0.9, WeightDecay: 1e-4}
	for s := uint64(0); s < 2; s++ {
		one.BeginStep()
		for m := uint64(0); m < 2; m++ {
			fillMicroBatch(one, 10*s+m, 10)
			if _, err := one.Accumulate(h); err != nil {
				t.Fatal(err)
			}
		}
		for m, sp := range []*SplitStepper{r0, r1} {
			sp.BeginStep()
			fillMicroBatch(sp, 10*s+uint64(m), 10)
			if _, err := sp.Accumulate(h); err != nil {
				t.Fatal(err)
			}
		}
		a, b := r0.Sums(), r1.Sums()
		for i := range a {
			a[i] += b[i]
			b[i] = a[i]
		}
		for _, sp := range []*SplitStepper{one, r0, r1} {
			if finite, err := sp.Apply(h, 2); err != nil || !finite {
				t.Fatalf("step %d: %v %v", s, finite, err)
			}
		}
	}
	var worst float64
	for _, n := range (&Step{Params: one.Grad.Params, Stats: one.Grad.Stats}).StateNames() {
		x, y := r0.State(n), r1.State(n)
		for i := range x {
			if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
				t.Fatalf("%s[%d]: the two ranks differ (%g, %g)", n, i, x[i], y[i])
			}
		}
		e := testutil.RelErr(x, one.State(n))
		if e > 1e-5 {
			t.Errorf("%s: two ranks %.3g from one process accumulating", n, e)
		}
		worst = math.Max(worst, e)
	}
	t.Logf("two ranks against one accumulating, after two steps: worst %.3g", worst)
}

// A summed gradient that is not finite skips the update and leaves the
// state bit for bit as it was.
func TestSplitStepSkipsNonFinite(t *testing.T) {
	testutil.InitORT(t)
	o := StepOptions{Model: models.Options{Name: "resnet18d", Classes: 10, ImageSize: 32, Batch: 4, Seed: 3}, NoBiasDecay: true, FP16: true}
	sp := newSplitStepper(t, o)
	before := sp.Snapshot()
	h := Hyper{LR: 0.1, Momentum: 0.9, WeightDecay: 1e-4, LossScale: 1024}
	sp.BeginStep()
	fillMicroBatch(sp, 1, 10)
	if _, err := sp.Accumulate(h); err != nil {
		t.Fatal(err)
	}
	sp.Sums()[7] = float32(math.Inf(1))
	finite, err := sp.Apply(h, 1)
	if err != nil || finite {
		t.Fatalf("an infinite sum: finite %v, %v", finite, err)
	}
	for n, v := range before {
		for i, x := range sp.State(n) {
			if math.Float32bits(x) != math.Float32bits(v[i]) {
				t.Fatalf("%s changed in a skipped step", n)
			}
		}
	}
}
