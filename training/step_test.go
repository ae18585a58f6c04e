package training

import (
	"math"
	"strings"
	"testing"

	"github.com/ortrain/ortrain/models"
)

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
