package training

import (
	"fmt"
	"strings"

	"github.com/ortrain/ortrain/graphgen"
	"github.com/ortrain/ortrain/models"
)

// stepBuilder holds what the phases of BuildStep share: the graph, the
// state's inputs, and what the forward's BatchNorms leave for the running
// statistics.
type stepBuilder struct {
	o       StepOptions
	g       *graphgen.Graph
	m       *models.Model
	s       *Step
	compute graphgen.DType
	inputs  map[string]*graphgen.Value // parameters and statistics by name
	bns     []bnRecord
	// scalars by name (lr, momentum, ...), and the batch's inputs.
	scalar           map[string]*graphgen.Value
	targets, teacher *graphgen.Value
}

// bnRecord is what the training BatchNorm hook leaves for the running
// statistics update.
type bnRecord struct {
	mean, variance    *graphgen.Value // batch statistics (biased variance)
	runMean, runVar   *graphgen.Value // inputs
	count             int64           // elements per channel
	meanName, varName string
	name              string          // the BatchNorm's, such as layer1.0.bn1
	out               *graphgen.Value // its float32 output
}

func newStepBuilder(o StepOptions) (*stepBuilder, error) {
	if o.Model.Batch < 1 {
		return nil, fmt.Errorf("a fixed batch size is required")
	}
	if o.Model.Batch < 2 {
		return nil, fmt.Errorf("batch %d is too small for batch statistics", o.Model.Batch)
	}
	if o.BNMomentum == 0 {
		o.BNMomentum = 0.1
	}
	b := &stepBuilder{o: o, compute: graphgen.Float, inputs: map[string]*graphgen.Value{}, scalar: map[string]*graphgen.Value{}}
	if o.FP16 {
		b.compute = graphgen.Float16
	}
	return b, nil
}

// forward builds the network with every parameter and statistic an input
// and BatchNorm on batch statistics (the models package's hooks).
func (b *stepBuilder) forward() error {
	mo := b.o.Model
	mo.ComputeType = b.compute
	s := &Step{Options: b.o}
	mo.Param = func(g *graphgen.Graph, name string, kind models.ParamKind, t *graphgen.Tensor) *graphgen.Value {
		if v, ok := b.o.Frozen[name]; ok {
			return b.frozen(g, name, kind, t, v)
		}
		v := g.Input(name, graphgen.Float, t.Shape())
		b.inputs[name] = v
		st := StateTensor{Name: name, Kind: kind, Shape: append([]int64{}, t.Dims...)}
		if !kind.Trainable() {
			s.Stats = append(s.Stats, st)
			return v
		}
		st.Decayed = kind.Decayed() || !b.o.NoBiasDecay
		s.Params = append(s.Params, st)
		if kind == models.BNGamma || kind == models.BNBeta {
			return v // BatchNorm runs in float32
		}
		return g.Cast(v, b.compute)
	}
	mo.BatchNorm = b.batchNorm
	m, err := models.Build(mo)
	if err != nil {
		return err
	}
	b.m, b.g, b.s = m, m.Graph, s
	s.Graph, s.Model = m.Graph, m
	if err := b.o.rewriteForward(b.g); err != nil {
		return err
	}
	b.g.Name = m.Name + "_train_step"
	b.g.Doc = fmt.Sprintf("Train step of %s: forward (batch statistics), loss, backward and Nesterov SGD; inputs are the state and a batch, outputs the next state.", m.Name)
	return nil
}

// frozen makes a frozen tensor (StepOptions.Frozen) a constant of the
// graph, in the compute type where the network computes with it.
func (b *stepBuilder) frozen(g *graphgen.Graph, name string, kind models.ParamKind, t *graphgen.Tensor, v []float32) *graphgen.Value {
	if int64(len(v)) != t.NumElements() {
		g.Failf("frozen %s: %d values, the model wants %d", name, len(v), t.NumElements())
		return g.Initializer(name, t)
	}
	ft := graphgen.FloatTensor(t.Dims, append([]float32{}, v...))
	switch kind {
	case models.BNGamma, models.BNBeta, models.BNMean, models.BNVar:
		return g.Initializer(name, ft) // BatchNorm runs in float32
	}
	return g.Initializer(name, models.CastTensor(ft, b.compute))
}

// batchNorm is BatchNorm on the batch's statistics, in float32, recorded
// for the running statistics; or, when its running statistics are frozen,
// BatchNorm in inference mode on them.
func (b *stepBuilder) batchNorm(g *graphgen.Graph, name string, x, scale, bias, mean, variance *graphgen.Value, eps float32) *graphgen.Value {
	x32 := g.Cast(x, graphgen.Float)
	if _, ok := b.o.Frozen[name+".running_mean"]; ok {
		return g.Cast(g.BatchNorm(x32, scale, bias, mean, variance, eps), x.DType)
	}
	// The shift of the one-pass batch statistics: the first image's mean
	// is near the batch mean from the first step on, which keeps the
	// variance precise. In float32 it is estimated from the Conv's input,
	// so that LowerBatchStats can move it into the Conv's bias, where it
	// costs no pass (FirstImageConvMean). In mixed precision the Cast
	// between stops that fold and the estimate would only cost memory
	// (10% more peak RSS on ResNet-50: bench-step --fp16), so the shift is
	// the first image's own mean. The running mean serves where there is
	// neither.
	var shift *graphgen.Value
	if x.DType == graphgen.Float {
		shift = g.FirstImageConvMean(x)
	} else if x.Shape.Static() && x.Shape.Rank() == 4 {
		shift = g.ReduceMean(g.Slice(x32, []int64{0}, []int64{1}, []int64{0}), []int64{0, 2, 3}, false)
	}
	if shift == nil {
		shift = mean
	}
	y, bm, bv := g.BatchNormBatchStats(x32, scale, bias, shift, eps)
	count := int64(0)
	if x.Shape.Static() {
		count = x.Shape.NumElements() / x.Shape[1].Size
	}
	b.bns = append(b.bns, bnRecord{mean: bm, variance: bv, runMean: mean, runVar: variance, count: count,
		meanName: name + ".running_mean", varName: name + ".running_var", name: name, out: y})
	return g.Cast(y, x.DType)
}

// batchInputs declares the soft targets, the teacher's logits and the
// scalars: with optimizer the optimizer's (lr, momentum, weight decay),
// and the loss scale and distillation's as the options need them. Scalars
// are 1-element tensors of shape (1): they broadcast like rank-0 ones, and
// every runtime binds them as ordinary tensors.
func (b *stepBuilder) batchInputs(optimizer bool) {
	g, f32 := b.g, graphgen.Float
	n, k := int64(b.o.Model.Batch), int64(b.m.Classes)
	b.targets = g.Input(InTargets, f32, graphgen.S(n, k))
	if b.o.Distill {
		b.teacher = g.Input(InTeacherLogits, f32, graphgen.S(n, k))
	}
	var names []string
	if optimizer {
		names = append(names, InLR, InMomentum, InWeightDecay)
	}
	if b.o.FP16 {
		names = append(names, InLossScale)
	}
	if b.o.Distill {
		names = append(names, InKDTemperature, InKDHardWeight)
	}
	b.declareScalars(names)
}

// declareScalars adds the named scalar inputs, in order.
func (b *stepBuilder) declareScalars(names []string) {
	for _, name := range names {
		b.scalar[name] = b.g.Input(name, graphgen.Float, graphgen.S(1))
	}
	b.s.Scalars = append(b.s.Scalars, names...)
}

// loss is the total loss in float32 and its parts (hard, then soft with
// distillation): soft-target cross-entropy, and with distillation
// kd_hard_weight * hard + (1 - kd_hard_weight) * soft.
func (b *stepBuilder) loss() (total *graphgen.Value, parts []*graphgen.Value) {
	g := b.g
	g.SetScope("loss")
	hard := CrossEntropy(g, b.m.Logits, b.targets)
	if !b.o.Distill {
		return hard, []*graphgen.Value{hard}
	}
	soft := DistillationLoss(g, b.m.Logits, b.teacher, b.scalar[InKDTemperature])
	w := b.scalar[InKDHardWeight]
	total = g.Add(g.Mul(w, hard), g.Mul(g.Sub(g.Scalar(graphgen.Float, 1), w), soft))
	return total, []*graphgen.Value{hard, soft}
}

// backward differentiates the total loss with respect to every trainable
// parameter. With FP16 the backward starts from the loss scale, and with
// unscale the gradients are divided by it in float32.
func (b *stepBuilder) backward(total *graphgen.Value, unscale bool) ([]*graphgen.Value, error) {
	g := b.g
	seed := g.Const(graphgen.FloatTensor([]int64{1}, []float32{1}))
	if b.o.FP16 {
		seed = b.scalar[InLossScale]
	}
	wrt := make([]*graphgen.Value, len(b.s.Params))
	for i, p := range b.s.Params {
		wrt[i] = b.inputs[p.Name]
	}
	grads, err := g.Gradients(total, wrt, seed)
	if err != nil {
		return nil, err
	}
	if b.o.FP16 && unscale {
		g.SetScope("optimizer")
		for i := range grads {
			grads[i] = g.Div(grads[i], b.scalar[InLossScale])
		}
	}
	return grads, nil
}

// allFinite is true when no gradient holds a NaN or an infinity: one sum
// of each, then one check of the sum of sums.
func (b *stepBuilder) allFinite(grads []*graphgen.Value) *graphgen.Value {
	g := b.g
	g.SetScope("optimizer")
	sums := make([]*graphgen.Value, len(grads))
	for i, d := range grads {
		sums[i] = g.ReduceSum(d, nil, false)
	}
	total := g.Sum(sums...)
	return g.Reshape(g.Not(g.Or(g.IsNaN(total), g.IsInf(total))), 1)
}

// runningStats updates the BatchNorm running statistics, PyTorch's
// convention: momentum BNMomentum and the unbiased batch variance.
func (b *stepBuilder) runningStats() ([]*graphgen.Value, error) {
	g, f32 := b.g, graphgen.Float
	g.SetScope("running_stats")
	mom := b.o.BNMomentum
	keep := g.Scalar(f32, float64(1-mom))
	var outs []*graphgen.Value
	for _, r := range b.bns {
		if r.count < 2 {
			return nil, fmt.Errorf("BatchNorm %s sees %d values per channel; need at least 2", r.meanName, r.count)
		}
		rm := g.Add(g.Mul(keep, r.runMean), g.Mul(g.Scalar(f32, float64(mom)), r.mean))
		unbias := float64(mom) * float64(r.count) / float64(r.count-1)
		rv := g.Add(g.Mul(keep, r.runVar), g.Mul(g.Scalar(f32, unbias), r.variance))
		g.RenameOutput(rm, NewName(r.meanName))
		g.RenameOutput(rv, NewName(r.varName))
		outs = append(outs, rm, rv)
	}
	return outs, nil
}

// outputs declares the graph's outputs in the contract's order: the losses
// (total, then with distillation hard and soft), the logits, all_finite
// (when given), then the next state.
func (b *stepBuilder) outputs(total *graphgen.Value, parts []*graphgen.Value, finite *graphgen.Value, state []*graphgen.Value) {
	g := b.g
	g.RenameOutput(total, OutLoss)
	losses := []*graphgen.Value{total}
	b.s.Losses = []string{OutLoss}
	if b.o.Distill {
		g.RenameOutput(parts[0], OutLossHard)
		g.RenameOutput(parts[1], OutLossSoft)
		losses = append(losses, parts...)
		b.s.Losses = append(b.s.Losses, OutLossHard, OutLossSoft)
	}
	// The model already made logits a graph output; put it after the losses.
	g.Outputs = nil
	g.Output(losses...)
	g.Output(b.m.Logits)
	if finite != nil { // the split step's gradient graph has none
		g.RenameOutput(finite, OutAllFinite)
		g.Output(finite)
	}
	g.Output(state...)
}

// probes adds the forward's decisions and BatchNorm outputs as outputs
// (StepOptions.Probes).
func (b *stepBuilder) probes() {
	g := b.g
	g.SetScope("probe")
	relus, pools := 0, 0
	for _, n := range append([]*graphgen.Node{}, g.Nodes...) {
		switch {
		case n.Op == "Relu" && !strings.HasPrefix(n.Name, "grad/"):
			p := g.Greater(n.Outputs[0], g.Scalar(n.Outputs[0].DType, 0))
			g.RenameOutput(p, fmt.Sprintf("probe/relu/%d", relus))
			b.s.Probes = append(b.s.Probes, p)
			relus++
		case n.Op == "MaxPool" && len(n.Outputs) == 2:
			p := g.Identity(n.Outputs[1])
			g.RenameOutput(p, fmt.Sprintf("probe/maxpool/%d", pools))
			b.s.Probes = append(b.s.Probes, p)
			pools++
		}
	}
	for _, r := range b.bns {
		p := g.Identity(r.out)
		g.RenameOutput(p, ProbeBN+r.name)
		b.s.Probes = append(b.s.Probes, p)
	}
	g.Output(b.s.Probes...)
}

// lower rewrites the finished graph for ONNX Runtime's CPU kernels: each
// BatchNorm's shift folded into the bias of the Conv before it, BatchNorm
// affine maps as depthwise convs that fuse with the ReLU (or residual Add
// and ReLU) after them, and with NchwcBlock the blocked convolutions.
// Every output is declared and differentiation is done, so the rewrites
// change no result beyond float32 rounding.
func (b *stepBuilder) lower() error {
	if err := b.g.LowerBatchStats(); err != nil {
		return err
	}
	if b.o.NchwcBlock > 0 {
		if err := b.g.LowerNchwc(b.o.NchwcBlock); err != nil {
			return err
		}
	}
	return b.g.Validate()
}
