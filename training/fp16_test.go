package training

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ortrain/ortrain/internal/testutil"
	"github.com/ortrain/ortrain/models"
	"github.com/ortrain/ortrain/runtime"
)

// fillBatch writes a seeded random batch into a stepper.
func fillBatch(st *Stepper, seed uint64, classes int) {
	r := rand.New(rand.NewPCG(seed, 7))
	for i := range st.Images() {
		st.Images()[i] = float32(r.NormFloat64())
	}
	n := len(st.Targets()) / classes
	labels := make([]int, n)
	for i := range labels {
		labels[i] = r.IntN(classes)
	}
	SmoothTargets(st.Targets(), labels, classes, 0.1, SmoothPaper)
}

func newStepper(t *testing.T, o StepOptions) *Stepper {
	t.Helper()
	step, err := BuildStep(o)
	if err != nil {
		t.Fatal(err)
	}
	st, err := NewStepper(step, step.InitialState(), runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// A loss scale that overflows float16 gradients reports not-finite and
// leaves every parameter, momentum buffer and running statistic bit for bit
// as it was; the next step at a sane scale trains.
func TestFP16OverflowSkipsStep(t *testing.T) {
	testutil.InitORT(t)
	mo := models.Options{Name: "resnet18d", Classes: 10, ImageSize: 64, Batch: 4, Seed: 5}
	st := newStepper(t, StepOptions{Model: mo, NoBiasDecay: true, FP16: true})
	h := Hyper{LR: 0.1, Momentum: 0.9, WeightDecay: 1e-4, LossScale: 1024}
	fillBatch(st, 1, 10)
	if r, err := st.Run(h); err != nil || !r.Finite {
		t.Fatalf("first step: %v %v", r, err)
	}
	names := st.Step.StateNames()
	before := map[string][]uint32{}
	for _, n := range names {
		for _, v := range st.State(n) {
			before[n] = append(before[n], math.Float32bits(v))
		}
	}
	fillBatch(st, 2, 10)
	h.LossScale = 1e30
	r, err := st.Run(h)
	if err != nil {
		t.Fatal(err)
	}
	if r.Finite {
		t.Fatal("loss scale 1e30 did not overflow float16 gradients")
	}
	for _, n := range names {
		for i, v := range st.State(n) {
			if math.Float32bits(v) != before[n][i] {
				t.Fatalf("%s[%d] changed on a skipped step: %#x -> %#x", n, i, before[n][i], math.Float32bits(v))
			}
		}
	}
	h.LossScale = 1024
	if r, err := st.Run(h); err != nil || !r.Finite {
		t.Fatalf("step after the skip: %v %v", r, err)
	}
	if math.Float32bits(st.State(names[0])[0]) == before[names[0]][0] {
		t.Error("the step after the skip did not train")
	}
}

// An overflow in the middle of the backward pass (plain init, whose
// gradients reach a few hundred, times loss scale 1024 exceeds float16's
// 65504) is reported and skipped the same way.
func TestFP16OverflowInBackward(t *testing.T) {
	testutil.InitORT(t)
	mo := models.Options{Name: "resnet50d", Classes: 10, ImageSize: 64, Batch: 4, Seed: 3}
	st := newStepper(t, StepOptions{Model: mo, NoBiasDecay: true, FP16: true})
	fillBatch(st, 1, 10)
	before := st.Snapshot()
	r, err := st.Run(Hyper{LR: 0.1, Momentum: 0.9, WeightDecay: 1e-4, LossScale: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if r.Finite {
		t.Fatal("no overflow at loss scale 1024: the test needs another init")
	}
	for n, v := range before {
		for i, x := range st.State(n) {
			if math.Float32bits(x) != math.Float32bits(v[i]) {
				t.Fatalf("%s[%d] changed on a skipped step", n, i)
			}
		}
	}
	if r, _ := st.Run(Hyper{LR: 0.1, Momentum: 0.9, WeightDecay: 1e-4, LossScale: 1}); !r.Finite {
		t.Error("still not finite at loss scale 1")
	}
}

func TestLossScaler(t *testing.T) {
	s := NewLossScaler()
	s.Interval = 3
	for i := 0; i < 3; i++ {
		s.Update(true)
	}
	if s.Scale != 131072 || s.Clean != 0 {
		t.Fatalf("after 3 clean steps: %+v", s)
	}
	s.Update(true)
	if err := s.Update(false); err != nil || s.Scale != 65536 || s.Clean != 0 || s.Skipped != 1 {
		t.Fatalf("after an overflow: %+v %v", s, err)
	}
	s.Scale = 1
	if err := s.Update(false); err == nil {
		t.Fatal("scale below 1 accepted")
	}
	s = &LossScaler{Scale: 1 << 24, Interval: 1, Min: 1, Max: 1 << 24}
	s.Update(true)
	if s.Scale != 1<<24 {
		t.Fatalf("scale grew past Max: %g", s.Scale)
	}
}
