package weights

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// maxElements bounds one tensor: 2^31 values (8 GB of float32), far above
// any ResNet's largest (a 100,000-class head of 2048 inputs is 2^27.6).
const maxElements = math.MaxInt32

// checkedElements is the number of values of a shape read from a file,
// refusing negative dimensions and products beyond maxElements before
// anything is allocated.
func checkedElements(shape []int64) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", shape)
		}
		if d > 0 && n > maxElements/d {
			return 0, fmt.Errorf("shape %v holds more than %d values", shape, int64(maxElements))
		}
		n *= d
	}
	return n, nil
}

// quoted shows a name read from a file in a message: quoted (no control
// characters reach the terminal) and cut short.
func quoted(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// shortError cuts an error message from a third-party parser, which may
// quote whole values, to one short line.
func shortError(err error) error {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if len(msg) > 160 {
		msg = msg[:160] + "..."
	}
	return errors.New(msg)
}
