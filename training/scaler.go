package training

import "fmt"

// LossScaler adjusts the FP16 loss scale dynamically, as PyTorch's
// GradScaler does: a step whose gradients overflow is skipped (the step
// graph leaves the state unchanged) and halves the scale; after Interval
// consecutive clean steps the scale doubles. Its fields are plain values so
// that a checkpoint can hold them and a resumed run continues exactly.
type LossScaler struct {
	Scale    float32 // current loss scale
	Interval int     // clean steps before growing (PyTorch: 2000)
	Clean    int     // clean steps since the last change
	Skipped  int     // steps skipped for overflow, in total
	Min, Max float32 // bounds of the scale
}

// NewLossScaler starts at PyTorch's defaults: scale 65536, growth every
// 2000 clean steps, bounds 1 and 2^24.
func NewLossScaler() *LossScaler {
	return &LossScaler{Scale: 65536, Interval: 2000, Min: 1, Max: 1 << 24}
}

// Update records a step's outcome and adjusts the scale. It returns an error
// when the scale would fall below Min: the gradients are then not finite at
// any scale, which means the run diverged.
func (s *LossScaler) Update(finite bool) error {
	if finite {
		s.Clean++
		if s.Clean >= s.Interval {
			s.Clean = 0
			if s.Scale*2 <= s.Max {
				s.Scale *= 2
			}
		}
		return nil
	}
	s.Skipped++
	s.Clean = 0
	if s.Scale/2 < s.Min {
		return fmt.Errorf("gradients are not finite even at loss scale %g: the run diverged (lower the learning rate)", s.Scale)
	}
	s.Scale /= 2
	return nil
}
