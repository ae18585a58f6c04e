// Package dims counts the values of a tensor shape that came from outside
// the program (a file, a caller), refusing negative dimensions and counts
// beyond a bound before anyone allocates them. It imports nothing of ours.
package dims

import "fmt"

// Count is the number of values of shape (1 for a scalar), or an error
// when a dimension is negative or the count exceeds limit.
func Count(shape []int64, limit int64) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("shape %v has a negative dimension", shape)
		}
		if d > 0 && n > limit/d {
			return 0, fmt.Errorf("shape %v has more than %d elements", shape, limit)
		}
		n *= d
	}
	return n, nil
}
