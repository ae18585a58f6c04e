package training

import (
	"fmt"

	"github.com/ortrain/ortrain/graphgen"

	"github.com/ortrain/ortrain/runtime"
)

// Hyper are the scalar inputs of one step. LossScale is read only by FP16
// steps, the KD fields only by distillation steps.
type Hyper struct {
	LR, Momentum, WeightDecay float32
	LossScale                 float32
	KDTemperature             float32
	KDHardWeight              float32
}

func (h Hyper) value(name string) float32 {
	switch name {
	case InLR:
		return h.LR
	case InMomentum:
		return h.Momentum
	case InWeightDecay:
		return h.WeightDecay
	case InLossScale:
		return h.LossScale
	case InKDTemperature:
		return h.KDTemperature
	case InKDHardWeight:
		return h.KDHardWeight
	}
	return 0
}

// StepResult is what one step reports.
type StepResult struct {
	// Losses in the order of Step.Losses: total, then hard and soft.
	Losses []float32
	// Finite is false when some gradient was not finite; the step was
	// skipped and the state did not change.
	Finite bool
}

// Stepper runs a train step in ONNX Runtime and owns the training state.
// The state lives in two sets of tensors: one is read by a step, the other
// written, and they swap after each step, so nothing is copied.
type Stepper struct {
	Step *Step
	sess *runtime.Session

	images, targets, teacher *runtime.Tensor
	scalars                  []*runtime.Tensor
	state                    *buffers
	losses                   []*runtime.Tensor
	logits, finite           *runtime.Tensor
	probes                   []*runtime.Tensor
}

// StateNames lists every state tensor: parameters, then their momentum
// buffers, then the running statistics.
func (s *Step) StateNames() []string {
	var names []string
	for _, p := range s.Params {
		names = append(names, p.Name)
	}
	for _, p := range s.Params {
		names = append(names, MomentumName(p.Name))
	}
	for _, st := range s.Stats {
		names = append(names, st.Name)
	}
	return names
}

// StateShapes maps each state tensor to its shape.
func (s *Step) StateShapes() map[string][]int64 {
	m := map[string][]int64{}
	for _, p := range s.Params {
		m[p.Name] = p.Shape
		m[MomentumName(p.Name)] = p.Shape
	}
	for _, st := range s.Stats {
		m[st.Name] = st.Shape
	}
	return m
}

// InitialState is the model's initialization: parameters and running
// statistics as the models package drew them (but the frozen ones, which
// are the graph's), zero momentum buffers.
func (s *Step) InitialState() map[string][]float32 {
	out := map[string][]float32{}
	for _, p := range s.Model.Params {
		if _, frozen := s.Options.Frozen[p.Name]; !frozen {
			out[p.Name] = append([]float32{}, p.Tensor.Float32...)
		}
	}
	for _, p := range s.Params {
		out[MomentumName(p.Name)] = make([]float32, len(out[p.Name]))
	}
	return out
}

// NewStepper loads the step graph into ONNX Runtime and sets the state.
func NewStepper(s *Step, state map[string][]float32, opts runtime.Options) (st *Stepper, err error) {
	model, err := s.Graph.Marshal(s.ModelInfo())
	if err != nil {
		return nil, err
	}
	st = &Stepper{Step: s}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	inNames, err := st.allocInputs()
	if err != nil {
		return nil, err
	}
	if err := st.SetState(state); err != nil {
		return nil, err
	}
	outNames, err := st.allocOutputs()
	if err != nil {
		return nil, err
	}
	// Without memory-pattern planning ONNX Runtime reuses buffers as they
	// free up: a ResNet-50 step at batch 16 peaks at 2.4 GB instead of 4.0
	// GB, at the same speed (docs/results/bench/history.md).
	opts.DisableMemPattern = true
	if st.sess, err = runtime.NewSession(model, inNames, outNames, opts); err != nil {
		return nil, fmt.Errorf("train step: %w", err)
	}
	return st, nil
}

// allocInputs makes the input tensors (batch, scalars, both state sets)
// and returns the input names in their order.
func (st *Stepper) allocInputs() ([]string, error) {
	s, o := st.Step, st.Step.Options
	n, k := int64(o.Model.Batch), int64(s.Model.Classes)
	size := int64(s.Model.ImageSize)
	var err error
	if st.images, err = runtime.NewFloat32([]int64{n, 3, size, size}, nil); err != nil {
		return nil, err
	}
	if st.targets, err = runtime.NewFloat32([]int64{n, k}, nil); err != nil {
		return nil, err
	}
	names := []string{InImages, InTargets}
	if o.Distill {
		if st.teacher, err = runtime.NewFloat32([]int64{n, k}, nil); err != nil {
			return nil, err
		}
		names = append(names, InTeacherLogits)
	}
	for _, name := range s.Scalars {
		t, err := runtime.NewFloat32([]int64{1}, nil)
		if err != nil {
			return nil, err
		}
		st.scalars = append(st.scalars, t)
		names = append(names, name)
	}
	if st.state, err = newBuffers(s.StateNames(), s.StateShapes(), false); err != nil {
		return nil, err
	}
	names = append(names, st.state.names...)
	return names, nil
}

// allocOutputs makes the output tensors (losses, logits, all_finite,
// probes; the next state goes into the other state set) and returns the
// output names in their order.
func (st *Stepper) allocOutputs() ([]string, error) {
	s := st.Step
	names := append([]string{}, s.Losses...)
	for range s.Losses {
		t, err := runtime.NewFloat32([]int64{1}, nil)
		if err != nil {
			return nil, err
		}
		st.losses = append(st.losses, t)
	}
	var err error
	if st.logits, err = runtime.NewFloat32([]int64{int64(s.Options.Model.Batch), int64(s.Model.Classes)}, nil); err != nil {
		return nil, err
	}
	if st.finite, err = runtime.NewBool([]int64{1}); err != nil {
		return nil, err
	}
	names = append(names, OutLogits, OutAllFinite)
	for _, name := range st.state.names {
		names = append(names, NewName(name))
	}
	for _, p := range s.Probes {
		var t *runtime.Tensor
		switch p.DType {
		case graphgen.Bool:
			t, err = runtime.NewBool(p.Shape.Ints())
		case graphgen.Float:
			t, err = runtime.NewFloat32(p.Shape.Ints(), nil)
		default:
			t, err = runtime.NewInt64(p.Shape.Ints(), nil)
		}
		if err != nil {
			return nil, err
		}
		st.probes = append(st.probes, t)
		names = append(names, p.Name)
	}
	return names, nil
}

// Images is the live input batch (N,3,H,W) the next Run reads.
func (st *Stepper) Images() []float32 { return st.images.Float32s() }

// Targets is the live soft-target batch (N,K).
func (st *Stepper) Targets() []float32 { return st.targets.Float32s() }

// TeacherLogits is the live teacher-logits batch (N,K), nil without distillation.
func (st *Stepper) TeacherLogits() []float32 {
	if st.teacher == nil {
		return nil
	}
	return st.teacher.Float32s()
}

// Probe is the probe output i of the last Run (StepOptions.Probes).
func (st *Stepper) Probe(i int) *runtime.Tensor { return st.probes[i] }

// Logits are the student logits of the last Run.
func (st *Stepper) Logits() []float32 { return st.logits.Float32s() }

// Run performs one step on the current batch.
func (st *Stepper) Run(h Hyper) (StepResult, error) {
	for i, name := range st.Step.Scalars {
		st.scalars[i].Float32s()[0] = h.value(name)
	}
	if st.Step.Options.FP16 && h.LossScale <= 0 {
		return StepResult{}, fmt.Errorf("train step: loss scale must be positive, got %g", h.LossScale)
	}
	in := []*runtime.Tensor{st.images, st.targets}
	if st.teacher != nil {
		in = append(in, st.teacher)
	}
	in = append(in, st.scalars...)
	in = append(in, st.state.current()...)
	out := append([]*runtime.Tensor{}, st.losses...)
	out = append(out, st.logits, st.finite)
	out = append(out, st.state.next()...)
	out = append(out, st.probes...)
	if _, err := st.sess.Run(in, out); err != nil {
		return StepResult{}, fmt.Errorf("train step: %w", err)
	}
	res := StepResult{Finite: st.finite.Bools()[0]}
	if res.Finite {
		st.state.swap() // commit the new state; a skipped step keeps the old
	}
	for _, l := range st.losses {
		res.Losses = append(res.Losses, l.Float32s()[0])
	}
	return res, nil
}

// State returns the live current value of a state tensor (valid until the
// next Run), or nil for an unknown name.
func (st *Stepper) State(name string) []float32 { return st.state.get(name) }

// StateTensor is the live current tensor of a state entry (valid until the
// next Run), for sessions that read the state without copying it (the
// evaluation graph).
func (st *Stepper) StateTensor(name string) *runtime.Tensor { return st.state.tensor(name) }

// Snapshot copies the whole current state.
func (st *Stepper) Snapshot() map[string][]float32 { return st.state.snapshot() }

// SetState copies values into the current state; every state tensor must
// be given, with its exact size. A bad state leaves the current one intact.
func (st *Stepper) SetState(state map[string][]float32) error { return st.state.set(state) }

// Close releases the session and every tensor.
func (st *Stepper) Close() {
	if st == nil {
		return
	}
	st.sess.Destroy()
	for _, t := range append(append(append([]*runtime.Tensor{st.images, st.targets, st.teacher, st.logits, st.finite}, st.scalars...), st.losses...), st.probes...) {
		t.Destroy()
	}
	st.state.destroy()
}
