package training

import (
	"fmt"

	"github.com/ortrain/ortrain/runtime"
)

// buffers are named tensors in two sets: a run reads one set and writes
// the other, and they swap when the run's result is kept, so nothing is
// copied. The training state lives in them (Stepper, SplitStepper), and the
// split step's accumulators, each set of which is backed by one slice
// (Data), so that it can be all-reduced in one call.
type buffers struct {
	names []string
	index map[string]int
	sets  [2][]*runtime.Tensor
	data  [2][]float32 // with contiguous: every tensor of a set over one slice
	cur   int
}

// newBuffers makes the two sets of tensors of the given shapes; with
// contiguous each set is backed by one slice.
func newBuffers(names []string, shapes map[string][]int64, contiguous bool) (*buffers, error) {
	b := &buffers{names: names, index: map[string]int{}}
	sizes := make([]int, len(names))
	total := 0
	for i, n := range names {
		b.index[n] = i
		sizes[i] = 1
		for _, d := range shapes[n] {
			sizes[i] *= int(d)
		}
		total += sizes[i]
	}
	for j := 0; j < 2; j++ {
		if contiguous {
			b.data[j] = make([]float32, total)
		}
		off := 0
		for i, n := range names {
			var data []float32
			if contiguous {
				data = b.data[j][off : off+sizes[i] : off+sizes[i]]
			}
			t, err := runtime.NewFloat32(shapes[n], data)
			if err != nil {
				b.destroy()
				return nil, err
			}
			b.sets[j] = append(b.sets[j], t)
			off += sizes[i]
		}
	}
	return b, nil
}

// current and next are the set a run reads and the set it writes.
func (b *buffers) current() []*runtime.Tensor { return b.sets[b.cur] }
func (b *buffers) next() []*runtime.Tensor    { return b.sets[1-b.cur] }

// swap keeps the written set: it becomes the current one.
func (b *buffers) swap() { b.cur = 1 - b.cur }

// Data is the current set's backing slice (contiguous buffers only).
func (b *buffers) Data() []float32 { return b.data[b.cur] }

// get is the current value of a tensor (valid until the next swap), nil
// for an unknown name.
func (b *buffers) get(name string) []float32 {
	if t := b.tensor(name); t != nil {
		return t.Float32s()
	}
	return nil
}

func (b *buffers) tensor(name string) *runtime.Tensor {
	i, ok := b.index[name]
	if !ok {
		return nil
	}
	return b.sets[b.cur][i]
}

// snapshot copies the current set.
func (b *buffers) snapshot() map[string][]float32 {
	out := make(map[string][]float32, len(b.names))
	for _, n := range b.names {
		out[n] = append([]float32{}, b.get(n)...)
	}
	return out
}

// set copies values into the current set; every tensor must be given,
// with its exact size. A bad state leaves the current one intact.
func (b *buffers) set(state map[string][]float32) error {
	for i, name := range b.names {
		src, ok := state[name]
		if !ok {
			return fmt.Errorf("state: %s is missing", name)
		}
		if want := len(b.sets[b.cur][i].Float32s()); len(src) != want {
			return fmt.Errorf("state: %s has %d values, want %d", name, len(src), want)
		}
	}
	for name := range state {
		if _, ok := b.index[name]; !ok {
			return fmt.Errorf("state: unknown tensor %s", name)
		}
	}
	for i, name := range b.names {
		copy(b.sets[b.cur][i].Float32s(), state[name])
	}
	return nil
}

func (b *buffers) destroy() {
	if b == nil {
		return
	}
	for _, set := range b.sets {
		for _, t := range set {
			t.Destroy()
		}
	}
}
