package training

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestSampleBeta(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, c := range [][2]float64{{0.2, 0.2}, {1, 1}, {2, 5}} {
		const n = 40000
		var s, s2 float64
		for i := 0; i < n; i++ {
			x := SampleBeta(r, c[0], c[1])
			if x < 0 || x > 1 {
				t.Fatalf("Beta%v sample %g", c, x)
			}
			s += x
			s2 += x * x
		}
		a, b := c[0], c[1]
		mean, variance := s/n, s2/n-(s/n)*(s/n)
		wantMean, wantVar := a/(a+b), a*b/((a+b)*(a+b)*(a+b+1))
		if math.Abs(mean-wantMean) > 4*math.Sqrt(wantVar/n) || math.Abs(variance-wantVar)/wantVar > 0.05 {
			t.Errorf("Beta%v: mean %.4f var %.4f, want %.4f %.4f", c, mean, variance, wantMean, wantVar)
		}
	}
}

func TestMixup(t *testing.T) {
	images := []float32{1, 1, 2, 2, 3, 3}
	targets := []float32{1, 0, 0, 1, 1, 0}
	if err := Mixup(images, targets, 3, 2, 0.75); err != nil {
		t.Fatal(err)
	}
	want := []float32{1.5, 1.5, 2, 2, 2.5, 2.5}
	wantT := []float32{1, 0, 0, 1, 1, 0} // samples 0 and 2 share a class
	for i := range want {
		if math.Abs(float64(images[i]-want[i])) > 1e-6 || math.Abs(float64(targets[i]-wantT[i])) > 1e-6 {
			t.Fatalf("mixed %v %v", images, targets)
		}
	}
	tg := []float32{1, 0, 0, 1}
	im := []float32{0, 4}
	Mixup(im, tg, 2, 2, 0.25)
	if tg[0] != 0.25 || tg[1] != 0.75 || im[0] != 3 || im[1] != 1 {
		t.Errorf("two samples: %v %v", im, tg)
	}
	if Mixup(im, tg, 3, 2, 0.5) == nil {
		t.Error("bad shapes accepted")
	}
}

// Ties rank the lower class first (as torch.topk); NaN is never right.
func TestTopKTiesAndNaN(t *testing.T) {
	constant := make([]float32, 3*5)
	if got := topKCorrect(constant, []int{0, 3, 4}, 5, 1); got != 1 {
		t.Errorf("constant logits: %d correct at top-1, want 1 (class 0 only)", got)
	}
	if got := topKCorrect(constant, []int{0, 3, 4}, 5, 4); got != 2 {
		t.Errorf("constant logits: %d correct at top-4, want 2", got)
	}
	nan := float32(math.NaN())
	if got := topKCorrect([]float32{nan, nan, 1, nan}, []int{0, 0}, 2, 1); got != 0 {
		t.Errorf("NaN logits: %d correct, want 0", got)
	}
	if got := topKCorrect([]float32{0.1, 0.9, 0.3, 0.2, 0.5, 0.4}, []int{1, 0}, 3, 1); got != 1 {
		t.Errorf("plain case: %d", got)
	}
}
