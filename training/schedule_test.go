package training

import (
	"math"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-12*math.Max(1, math.Abs(b)) }

func TestSchedules(t *testing.T) {
	if got := ScaleLR(0.1, 1024); !near(got, 0.4) {
		t.Errorf("linear scaling: %g, want 0.4 for batch 1024", got)
	}
	// Paper's warmup: batch i (1-based) of m gets i*eta/m.
	s := Schedule{Base: 0.4, Mode: "step", Warmup: 5, Total: 100, Milestones: []int{30, 60, 90}, Factor: 0.1}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	for i, want := range []float64{0.08, 0.16, 0.24, 0.32, 0.4} {
		if got := s.LR(i); !near(got, want) {
			t.Errorf("warmup batch %d: %g, want %g", i+1, got, want)
		}
	}
	for t0, want := range map[int]float64{5: 0.4, 29: 0.4, 30: 0.04, 59: 0.04, 60: 0.004, 90: 0.0004, 99: 0.0004} {
		if got := s.LR(t0); !near(got, want) {
			t.Errorf("step batch %d: %g, want %g", t0, got, want)
		}
	}
	// Cosine after warmup over T = 95 batches: lr = 0.5 (1 + cos(pi u /
	// (T-1))) eta, eta at the first and 0 at the last.
	c := Schedule{Base: 0.4, Mode: "cosine", Warmup: 5, Total: 100}
	for _, u := range []int{0, 1, 47, 94} {
		want := 0.5 * (1 + math.Cos(math.Pi*float64(u)/94)) * 0.4
		if got := c.LR(5 + u); !near(got, want) {
			t.Errorf("cosine u=%d: %g, want %g", u, got, want)
		}
	}
	if got := c.LR(99); math.Abs(got) > 1e-15 {
		t.Errorf("last cosine batch %g, want 0", got)
	}
	for _, bad := range []Schedule{{Base: 0, Mode: "step", Total: 1, Factor: 0.1}, {Base: 0.1, Mode: "poly", Total: 1},
		{Base: 0.1, Mode: "cosine", Total: 5, Warmup: 6}, {Base: 0.1, Mode: "step", Total: 5, Factor: 2}} {
		if bad.Validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
