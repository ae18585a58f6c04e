package weights

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/ortrain/ortrain/internal/dims"
)

// maxElements bounds one tensor: 2^31 values (8 GB of float32), far above
// any ResNet's largest (a 100,000-class head of 2048 inputs is 2^27.6).
const maxElements = math.MaxInt32

// checkedElements is the number of values of a shape read from a file,
// refusing negative dimensions and counts beyond maxElements before
// anything is allocated.
func checkedElements(shape []int64) (int64, error) { return dims.Count(shape, maxElements) }

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
