package training

import "fmt"

// Smoothing says how label smoothing spreads eps over the classes.
type Smoothing int

const (
	// SmoothPaper is the paper's rule: 1-eps on the true class and
	// eps/(K-1) on each other class.
	SmoothPaper Smoothing = iota
	// SmoothUniform is PyTorch's and timm's: (1-eps) + eps/K on the true
	// class and eps/K on each other class.
	SmoothUniform
)

// ParseSmoothing reads "paper" or "uniform".
func ParseSmoothing(s string) (Smoothing, error) {
	switch s {
	case "paper":
		return SmoothPaper, nil
	case "uniform", "pytorch":
		return SmoothUniform, nil
	}
	return 0, fmt.Errorf("unknown label-smoothing rule %q (paper or uniform)", s)
}

// SmoothTargets writes one row of soft targets per label into dst (N,K).
func SmoothTargets(dst []float32, labels []int, k int, eps float32, rule Smoothing) error {
	if len(dst) != len(labels)*k {
		return fmt.Errorf("targets: %d values for %d labels of %d classes", len(dst), len(labels), k)
	}
	if eps < 0 || eps >= 1 {
		return fmt.Errorf("targets: label smoothing %g is not in [0, 1)", eps)
	}
	on, off := 1-eps, float32(0)
	if k > 1 {
		off = eps / float32(k-1)
	}
	if rule == SmoothUniform {
		on, off = 1-eps+eps/float32(k), eps/float32(k)
	}
	for i, l := range labels {
		if l < 0 || l >= k {
			return fmt.Errorf("targets: label %d out of range [0, %d)", l, k)
		}
		row := dst[i*k : (i+1)*k]
		for j := range row {
			row[j] = off
		}
		row[l] = on
	}
	return nil
}
