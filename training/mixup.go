package training

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Mixup mixes a batch with itself reversed, in place: image i becomes
// lam*x_i + (1-lam)*x_{n-1-i} and its target lam*y_i + (1-lam)*y_{n-1-i}
// (the pairing GluonCV and timm use). images holds n equal-sized images,
// targets n rows of k.
func Mixup(images, targets []float32, n, k int, lam float32) error {
	if n < 1 || len(images)%n != 0 || len(targets) != n*k {
		return fmt.Errorf("mixup: %d image values and %d targets do not fit %d samples of %d classes", len(images), len(targets), n, k)
	}
	per := len(images) / n
	mix := func(data []float32, size int) {
		for i := 0; i < n/2; i++ {
			j := n - 1 - i
			a, b := data[i*size:(i+1)*size], data[j*size:(j+1)*size]
			for x := range a {
				ai, bj := a[x], b[x]
				a[x] = lam*ai + (1-lam)*bj
				b[x] = lam*bj + (1-lam)*ai
			}
		}
		// An odd middle sample is paired with itself: unchanged.
	}
	mix(images, per)
	mix(targets, k)
	return nil
}

// SampleBeta draws from Beta(a, b) as X/(X+Y) with X ~ Gamma(a), Y ~ Gamma(b).
func SampleBeta(r *rand.Rand, a, b float64) float64 {
	x, y := sampleGamma(r, a), sampleGamma(r, b)
	if x+y == 0 {
		return 0.5
	}
	return x / (x + y)
}

// sampleGamma is Marsaglia and Tsang's method; shapes below 1 are boosted:
// Gamma(a) = Gamma(a+1) * U^(1/a).
func sampleGamma(r *rand.Rand, shape float64) float64 {
	if shape < 1 {
		u := r.Float64()
		for u == 0 {
			u = r.Float64()
		}
		return sampleGamma(r, shape+1) * math.Pow(u, 1/shape)
	}
	d := shape - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := r.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := r.Float64()
		if u < 1-0.0331*x*x*x*x || math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}
