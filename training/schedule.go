package training

import (
	"fmt"
	"math"
)

// Schedule gives the learning rate of every batch (global batch index, from
// 0): linear warmup, then step or cosine decay.
type Schedule struct {
	// Base is the peak learning rate (after linear scaling, see ScaleLR).
	Base float64
	// Mode is "step" or "cosine".
	Mode string
	// Warmup batches: batch i (from 1) of the first m gets i*Base/m, as the
	// paper writes, so the first batch trains at Base/m and batch m at Base.
	Warmup int
	// Total batches of the run.
	Total int
	// Step mode: the learning rate is multiplied by Factor at each
	// milestone (a batch index, e.g. epoch 30 times batches per epoch).
	Milestones []int
	Factor     float64
}

// ScaleLR is the linear scaling rule: lr = base * batch / 256.
func ScaleLR(base float64, batch int) float64 { return base * float64(batch) / 256 }

// Validate checks the schedule.
func (s Schedule) Validate() error {
	switch {
	case s.Base <= 0 || math.IsInf(s.Base, 0) || math.IsNaN(s.Base):
		return fmt.Errorf("learning rate must be positive, got %g", s.Base)
	case s.Mode != "step" && s.Mode != "cosine":
		return fmt.Errorf("unknown lr mode %q (step or cosine)", s.Mode)
	case s.Total < 1:
		return fmt.Errorf("a run needs at least one batch")
	case s.Warmup < 0 || s.Warmup > s.Total:
		return fmt.Errorf("warmup of %d batches does not fit a run of %d", s.Warmup, s.Total)
	case s.Mode == "step" && (s.Factor <= 0 || s.Factor > 1):
		return fmt.Errorf("step factor must be in (0, 1], got %g", s.Factor)
	}
	return nil
}

// LR is the learning rate of batch t (0-based).
func (s Schedule) LR(t int) float64 {
	if t < s.Warmup {
		return s.Base * float64(t+1) / float64(s.Warmup)
	}
	switch s.Mode {
	case "cosine":
		// lr = Base (1 + cos(pi u / (T-1))) / 2 over the T batches after
		// warmup, u from 0: Base at the first, 0 at the last, as the issue
		// asks ("to 0 by the last batch").
		n := s.Total - s.Warmup
		if n <= 1 {
			return s.Base
		}
		u := t - s.Warmup
		return s.Base * (1 + math.Cos(math.Pi*float64(u)/float64(n-1))) / 2
	default:
		lr := s.Base
		for _, m := range s.Milestones {
			if t >= m {
				lr *= s.Factor
			}
		}
		return lr
	}
}
