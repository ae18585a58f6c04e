package training

import (
	"fmt"

	"github.com/ortrain/ortrain/graphgen"
)

// The train step in two graphs, for gradient accumulation and data
// parallelism (docs/training-graph.md, "The split step"):
//
//   - GradStep runs forward, loss and backward on one micro-batch and adds
//     its gradients and BatchNorm batch statistics to accumulators;
//   - UpdateStep takes the accumulators summed over the micro-batches of
//     a step (and over the processes), scales them once, and applies
//     Nesterov SGD and the running-statistics update.
//
// With one micro-batch a step computes what BuildStep's fused graph does.

// Scalar inputs of UpdateStep.
const (
	// InGradScale multiplies the summed gradients: 1/(micro-batches x loss
	// scale), so that the update sees the gradient of the global batch's
	// mean loss.
	InGradScale = "grad_scale"
	// InStatScale multiplies the summed batch statistics: 1/micro-batches.
	InStatScale = "stat_scale"
)

// AccumName is the name of an accumulator: of a parameter's gradient, or
// of a BatchNorm batch statistic (BatchMeanName, BatchVarName).
func AccumName(name string) string { return "accum/" + name }

// BatchMeanName and BatchVarName name a BatchNorm's batch mean and biased
// batch variance, such as layer1.0.bn1.batch_mean.
func BatchMeanName(bn string) string { return bn + ".batch_mean" }
func BatchVarName(bn string) string  { return bn + ".batch_var" }

// GradStep is the gradient half of the split step.
type GradStep struct {
	Options StepOptions
	Graph   *graphgen.Graph
	Classes int
	// Params and Stats are read as in Step (Stats only for a BatchNorm
	// without a Conv before it, whose running mean is its shift).
	Params, Stats []StateTensor
	// Accums are the accumulators, each an input (AccumName) and an output
	// (NewName of it) that adds this micro-batch's value: one per
	// parameter, then a batch mean and a batch variance per BatchNorm.
	Accums  []StateTensor
	Scalars []string // loss scale and distillation's, as the options need
	Losses  []string
}

// UpdateStep is the update half of the split step.
type UpdateStep struct {
	Graph *graphgen.Graph
	// Params have a momentum buffer each; inputs and outputs as in Step,
	// and all_finite, which is false when a summed gradient is not finite
	// (the new state is then not valid, as in Step).
	Params, Stats []StateTensor
	Accums        []StateTensor // read, as GradStep's
	Scalars       []string      // lr, momentum, weight decay, grad_scale, stat_scale
}

// BuildSplitStep builds the two graphs of the split step.
func BuildSplitStep(o StepOptions) (*GradStep, *UpdateStep, error) {
	if o.Probes {
		return nil, nil, fmt.Errorf("split step: probes are for the fused step")
	}
	b, err := newStepBuilder(o)
	if err != nil {
		return nil, nil, fmt.Errorf("split step: %w", err)
	}
	if err := b.forward(); err != nil {
		return nil, nil, fmt.Errorf("split step: %w", err)
	}
	b.g.Name = b.m.Name + "_grad_step"
	b.g.Doc = fmt.Sprintf("Gradient half of the split train step of %s: forward (batch statistics), loss and backward on one micro-batch, added to accumulators.", b.m.Name)
	b.batchInputs(false)
	total, parts := b.loss()
	grads, err := b.backward(total, false)
	if err != nil {
		return nil, nil, fmt.Errorf("split step: %w", err)
	}
	gs := &GradStep{Options: b.o, Graph: b.g, Classes: b.m.Classes, Params: b.s.Params, Stats: b.s.Stats, Scalars: b.s.Scalars}
	accums := b.accumulate(gs, grads)
	b.outputs(total, parts, nil, accums)
	gs.Losses = b.s.Losses
	if err := b.lower(); err != nil {
		return nil, nil, fmt.Errorf("split step: %w", err)
	}
	us, err := b.buildUpdate(gs)
	if err != nil {
		return nil, nil, fmt.Errorf("split step: %w", err)
	}
	return gs, us, nil
}

// accumulate adds each gradient and BatchNorm batch statistic to its
// accumulator input, and returns the sums, named as outputs.
func (b *stepBuilder) accumulate(gs *GradStep, grads []*graphgen.Value) []*graphgen.Value {
	g, f32 := b.g, graphgen.Float
	g.SetScope("accumulate")
	var outs []*graphgen.Value
	add := func(name string, shape []int64, v *graphgen.Value) {
		acc := g.Input(AccumName(name), f32, graphgen.S(shape...))
		sum := g.Add(acc, v)
		g.RenameOutput(sum, NewName(AccumName(name)))
		outs = append(outs, sum)
		gs.Accums = append(gs.Accums, StateTensor{Name: AccumName(name), Shape: shape})
	}
	for i, p := range b.s.Params {
		add(p.Name, p.Shape, grads[i])
	}
	for _, r := range b.bns {
		c := r.mean.Shape.Ints()
		add(BatchMeanName(r.name), c, r.mean)
		add(BatchVarName(r.name), c, r.variance)
	}
	return outs
}

// buildUpdate builds the update graph for the parameters, statistics and
// accumulators of the gradient graph b built.
func (b *stepBuilder) buildUpdate(gs *GradStep) (*UpdateStep, error) {
	f32 := graphgen.Float
	g := graphgen.New(b.m.Name+"_update", b.g.Opset)
	g.Doc = fmt.Sprintf("Update half of the split train step of %s: Nesterov SGD on the summed gradients, running statistics from the summed batch statistics.", b.m.Name)
	u := &stepBuilder{o: b.o, g: g, m: b.m, compute: f32, inputs: map[string]*graphgen.Value{}, scalar: map[string]*graphgen.Value{},
		s: &Step{Options: b.o, Params: b.s.Params, Stats: b.s.Stats}}
	for _, p := range append(append([]StateTensor{}, b.s.Params...), b.s.Stats...) {
		u.inputs[p.Name] = g.Input(p.Name, f32, graphgen.S(p.Shape...))
	}
	u.declareScalars([]string{InLR, InMomentum, InWeightDecay, InGradScale, InStatScale})
	scaled := func(name string, shape []int64, scale string) *graphgen.Value {
		return g.Mul(g.Input(AccumName(name), f32, graphgen.S(shape...)), u.scalar[scale])
	}
	grads := make([]*graphgen.Value, len(b.s.Params))
	for i, p := range b.s.Params {
		grads[i] = scaled(p.Name, p.Shape, InGradScale)
	}
	for _, r := range b.bns {
		c := r.mean.Shape.Ints()
		u.bns = append(u.bns, bnRecord{mean: scaled(BatchMeanName(r.name), c, InStatScale), variance: scaled(BatchVarName(r.name), c, InStatScale),
			runMean: u.inputs[r.meanName], runVar: u.inputs[r.varName], count: r.count, meanName: r.meanName, varName: r.varName, name: r.name})
	}
	finite := u.allFinite(grads)
	state := u.optimizer(grads)
	stats, err := u.runningStats()
	if err != nil {
		return nil, err
	}
	g.RenameOutput(finite, OutAllFinite)
	g.Output(finite)
	g.Output(state...)
	g.Output(stats...)
	if err := g.Validate(); err != nil {
		return nil, err
	}
	return &UpdateStep{Graph: g, Params: b.s.Params, Stats: b.s.Stats, Accums: gs.Accums, Scalars: u.s.Scalars}, nil
}
