package training

import (
	"fmt"

	"github.com/ortrain/ortrain/graphgen"
	"github.com/ortrain/ortrain/runtime"
)

// SplitStepper runs the split step in ONNX Runtime: Accumulate runs the
// gradient graph on one micro-batch, adding into the accumulators; Apply
// runs the update graph on their sums. Between the two a data-parallel
// trainer all-reduces Sums. It owns the training state, as Stepper does.
type SplitStepper struct {
	Grad   *GradStep
	Update *UpdateStep
	gsess  *runtime.Session
	usess  *runtime.Session

	images, targets, teacher *runtime.Tensor
	gscalars, uscalars       []*runtime.Tensor
	state                    *buffers // parameters, momentum buffers, running statistics
	acc                      *buffers // accumulators, each set on one slice
	losses                   []*runtime.Tensor
	logits, finite           *runtime.Tensor
	// gradIn and updateIn index, in state.current(), the tensors each
	// graph reads besides the accumulators.
	gradIn, updateIn []int
}

// NewSplitStepper loads both graphs into ONNX Runtime and sets the state
// (the names of StateNames for the step's parameters and statistics).
func NewSplitStepper(gs *GradStep, us *UpdateStep, state map[string][]float32, opts runtime.Options) (sp *SplitStepper, err error) {
	sp = &SplitStepper{Grad: gs, Update: us}
	defer func() {
		if err != nil {
			sp.Close()
		}
	}()
	s := &Step{Params: gs.Params, Stats: gs.Stats}
	if sp.state, err = newBuffers(s.StateNames(), s.StateShapes(), false); err != nil {
		return nil, err
	}
	if err := sp.state.set(state); err != nil {
		return nil, err
	}
	accShapes := map[string][]int64{}
	var accNames []string
	for _, a := range gs.Accums {
		accNames = append(accNames, a.Name)
		accShapes[a.Name] = a.Shape
	}
	if sp.acc, err = newBuffers(accNames, accShapes, true); err != nil {
		return nil, err
	}
	gin, gout, err := sp.gradSignature()
	if err != nil {
		return nil, err
	}
	uin, uout, err := sp.updateSignature()
	if err != nil {
		return nil, err
	}
	opts.DisableMemPattern = true // as Stepper's
	gmodel, err := gs.Graph.Marshal(stepInfo(gs.Graph.Doc))
	if err != nil {
		return nil, err
	}
	if sp.gsess, err = runtime.NewSession(gmodel, gin, gout, opts); err != nil {
		return nil, fmt.Errorf("gradient step: %w", err)
	}
	umodel, err := us.Graph.Marshal(stepInfo(us.Graph.Doc))
	if err != nil {
		return nil, err
	}
	if sp.usess, err = runtime.NewSession(umodel, uin, uout, opts); err != nil {
		return nil, fmt.Errorf("update step: %w", err)
	}
	return sp, nil
}

// gradSignature makes the gradient graph's batch, scalar and output
// tensors and names its inputs and outputs in the order Accumulate binds
// them.
func (sp *SplitStepper) gradSignature() (in, out []string, err error) {
	o := sp.Grad.Options
	n, k := int64(o.Model.Batch), int64(sp.Grad.Classes)
	size := int64(o.Model.ImageSize)
	if sp.images, err = runtime.NewFloat32([]int64{n, 3, size, size}, nil); err != nil {
		return nil, nil, err
	}
	if sp.targets, err = runtime.NewFloat32([]int64{n, k}, nil); err != nil {
		return nil, nil, err
	}
	in = []string{InImages, InTargets}
	if o.Distill {
		if sp.teacher, err = runtime.NewFloat32([]int64{n, k}, nil); err != nil {
			return nil, nil, err
		}
		in = append(in, InTeacherLogits)
	}
	for _, name := range sp.Grad.Scalars {
		t, err := runtime.NewFloat32([]int64{1}, nil)
		if err != nil {
			return nil, nil, err
		}
		sp.gscalars = append(sp.gscalars, t)
		in = append(in, name)
	}
	for _, p := range append(append([]StateTensor{}, sp.Grad.Params...), sp.Grad.Stats...) {
		sp.gradIn = append(sp.gradIn, sp.state.index[p.Name])
		in = append(in, p.Name)
	}
	in = append(in, sp.acc.names...)
	out = append(out, sp.Grad.Losses...)
	for range sp.Grad.Losses {
		t, err := runtime.NewFloat32([]int64{1}, nil)
		if err != nil {
			return nil, nil, err
		}
		sp.losses = append(sp.losses, t)
	}
	if sp.logits, err = runtime.NewFloat32([]int64{n, k}, nil); err != nil {
		return nil, nil, err
	}
	out = append(out, OutLogits)
	for _, name := range sp.acc.names {
		out = append(out, NewName(name))
	}
	return in, out, nil
}

// updateSignature makes the update graph's scalar and all_finite tensors
// and names its inputs and outputs in the order Apply binds them.
func (sp *SplitStepper) updateSignature() (in, out []string, err error) {
	for _, name := range sp.Update.Scalars {
		t, err := runtime.NewFloat32([]int64{1}, nil)
		if err != nil {
			return nil, nil, err
		}
		sp.uscalars = append(sp.uscalars, t)
		in = append(in, name)
	}
	if sp.finite, err = runtime.NewBool([]int64{1}); err != nil {
		return nil, nil, err
	}
	for i, name := range sp.state.names {
		sp.updateIn = append(sp.updateIn, i)
		in = append(in, name)
	}
	in = append(in, sp.acc.names...)
	out = []string{OutAllFinite}
	for _, name := range sp.state.names {
		out = append(out, NewName(name))
	}
	return in, out, nil
}

// Images, Targets and TeacherLogits are the live micro-batch the next
// Accumulate reads; Logits its logits after it.
func (sp *SplitStepper) Images() []float32  { return sp.images.Float32s() }
func (sp *SplitStepper) Targets() []float32 { return sp.targets.Float32s() }
func (sp *SplitStepper) TeacherLogits() []float32 {
	if sp.teacher == nil {
		return nil
	}
	return sp.teacher.Float32s()
}
func (sp *SplitStepper) Logits() []float32 { return sp.logits.Float32s() }

// BeginStep empties the accumulators.
func (sp *SplitStepper) BeginStep() { clear(sp.acc.Data()) }

// Accumulate runs the gradient graph on the current micro-batch and adds
// its gradients and statistics into the accumulators; it returns the
// micro-batch's losses (total, then hard and soft with distillation).
func (sp *SplitStepper) Accumulate(h Hyper) ([]float32, error) {
	if sp.Grad.Options.FP16 && h.LossScale <= 0 {
		return nil, fmt.Errorf("gradient step: loss scale must be positive, got %g", h.LossScale)
	}
	for i, name := range sp.Grad.Scalars {
		sp.gscalars[i].Float32s()[0] = h.value(name)
	}
	in := []*runtime.Tensor{sp.images, sp.targets}
	if sp.teacher != nil {
		in = append(in, sp.teacher)
	}
	in = append(in, sp.gscalars...)
	cur := sp.state.current()
	for _, i := range sp.gradIn {
		in = append(in, cur[i])
	}
	in = append(in, sp.acc.current()...)
	out := append(append([]*runtime.Tensor{}, sp.losses...), sp.logits)
	out = append(out, sp.acc.next()...)
	if _, err := sp.gsess.Run(in, out); err != nil {
		return nil, fmt.Errorf("gradient step: %w", err)
	}
	sp.acc.swap()
	losses := make([]float32, len(sp.losses))
	for i, l := range sp.losses {
		losses[i] = l.Float32s()[0]
	}
	return losses, nil
}

// Sums are the accumulators, one slice, for an all-reduce in place.
func (sp *SplitStepper) Sums() []float32 { return sp.acc.Data() }

// Apply runs the update graph on the accumulated sums of microBatches
// micro-batches: gradients scaled by 1/(microBatches x loss scale),
// statistics by 1/microBatches. It reports whether every summed gradient
// was finite; when not, the state is kept as it was (the step is skipped).
func (sp *SplitStepper) Apply(h Hyper, microBatches int) (bool, error) {
	scale := float32(1)
	if sp.Grad.Options.FP16 {
		scale = h.LossScale
	}
	for i, name := range sp.Update.Scalars {
		v := h.value(name)
		switch name {
		case InGradScale:
			v = 1 / (float32(microBatches) * scale)
		case InStatScale:
			v = 1 / float32(microBatches)
		}
		sp.uscalars[i].Float32s()[0] = v
	}
	in := append([]*runtime.Tensor{}, sp.uscalars...)
	cur := sp.state.current()
	for _, i := range sp.updateIn {
		in = append(in, cur[i])
	}
	in = append(in, sp.acc.current()...)
	out := append([]*runtime.Tensor{sp.finite}, sp.state.next()...)
	if _, err := sp.usess.Run(in, out); err != nil {
		return false, fmt.Errorf("update step: %w", err)
	}
	finite := sp.finite.Bools()[0]
	if finite {
		sp.state.swap()
	}
	return finite, nil
}

// State, StateTensor, Snapshot and SetState are as Stepper's.
func (sp *SplitStepper) State(name string) []float32               { return sp.state.get(name) }
func (sp *SplitStepper) StateTensor(name string) *runtime.Tensor   { return sp.state.tensor(name) }
func (sp *SplitStepper) Snapshot() map[string][]float32            { return sp.state.snapshot() }
func (sp *SplitStepper) SetState(state map[string][]float32) error { return sp.state.set(state) }

// stepInfo is the doc string a split-step graph is written with.
func stepInfo(doc string) graphgen.ModelInfo { return graphgen.ModelInfo{Doc: doc} }

// Close releases the sessions and every tensor.
func (sp *SplitStepper) Close() {
	if sp == nil {
		return
	}
	sp.gsess.Destroy()
	sp.usess.Destroy()
	for _, t := range append(append(append([]*runtime.Tensor{sp.images, sp.targets, sp.teacher, sp.logits, sp.finite}, sp.gscalars...), sp.uscalars...), sp.losses...) {
		t.Destroy()
	}
	sp.state.destroy()
	sp.acc.destroy()
}
