package training

import (
	"fmt"
	"strings"

	"github.com/ortrain/ortrain/graphgen"
	"github.com/ortrain/ortrain/models"
)

// StepOptions configure the train-step graph.
type StepOptions struct {
	// Model names the network and its shape; Batch must be set (the step is
	// built for a fixed batch, and the trainer drops a last partial batch,
	// as timm does).
	Model models.Options
	// Distill adds the teacher-logits input and the distillation term.
	Distill bool
	// NoBiasDecay applies weight decay only to conv and FC weights, not to
	// biases nor BatchNorm gamma and beta.
	NoBiasDecay bool
	// FP16 computes forward and backward in float16 from float32 master
	// weights (BatchNorm statistics, softmax and the loss stay float32), and
	// adds the loss-scale input.
	FP16 bool
	// BNMomentum is PyTorch's BatchNorm momentum: running = (1-m)*running +
	// m*batch (default 0.1).
	BNMomentum float32
	// Probes adds the forward's discrete decisions as outputs, for
	// verification: "probe/relu/<i>" (bool, output > 0) for every ReLU and
	// "probe/maxpool/<i>" (int64 flat indices) for every MaxPool, in
	// execution order. A reference implementation fed these makes the same
	// decisions, so it can be compared strictly (see docs/training-graph.md).
	// After them come "probe/bn/<name>", each BatchNorm's float32 output
	// (ProbeBN), which measure the forward's precision.
	Probes bool
	// NchwcBlock, when above 0, builds the step for ONNX Runtime's CPU
	// provider alone: its 3x3 convolutions on planes of 7x7 and more, and
	// a 7x7 stem on the images, run as ONNX Runtime's blocked (NCHWc)
	// convolutions with this block size (graphgen.LowerNchwc), 20 to 33%
	// faster each on the Intel machine of docs/benchmarks.md. It must be
	// the block size of the ONNX Runtime that runs the step: take it from
	// NchwcBlock. 0 (the default) keeps the portable graph of standard
	// operators that every provider runs and that `graphgen train-step`
	// writes.
	NchwcBlock int64
}

// Names of the step's non-parameter inputs and outputs.
const (
	InImages        = "images"
	InTargets       = "targets"
	InTeacherLogits = "teacher_logits"
	InLR            = "lr"
	InMomentum      = "momentum"
	InWeightDecay   = "weight_decay"
	InLossScale     = "loss_scale"
	InKDTemperature = "kd_temperature"
	InKDHardWeight  = "kd_hard_weight"

	OutLoss      = "loss"
	OutLossHard  = "loss_hard"
	OutLossSoft  = "loss_soft"
	OutLogits    = "logits"
	OutAllFinite = "all_finite"
)

// ProbeBN prefixes the name of a BatchNorm output probe (StepOptions.Probes).
const ProbeBN = "probe/bn/"

// MomentumName is the name of a parameter's momentum buffer input.
func MomentumName(param string) string { return "momentum_buffer/" + param }

// NewName is the name of the output holding the next value of an input
// (a parameter, a momentum buffer or a running statistic).
func NewName(input string) string { return "new/" + input }

// StateTensor is one tensor of the training state the step carries.
type StateTensor struct {
	Name    string
	Kind    models.ParamKind
	Shape   []int64
	Decayed bool // weight decay applies (trainable parameters only)
}

// Step is a built train-step graph and the contract to feed it.
type Step struct {
	Options StepOptions
	Graph   *graphgen.Graph
	Model   *models.Model
	// Params are the trainable parameters, each with a momentum buffer;
	// Stats the BatchNorm running means and variances. Inputs are named by
	// Name (and MomentumName), outputs by NewName.
	Params []StateTensor
	Stats  []StateTensor
	// Scalars are the scalar inputs, in order.
	Scalars []string
	// Losses are the loss outputs: total, then hard (and soft with Distill).
	Losses []string
	// Probes are the probe outputs (with StepOptions.Probes), in order.
	Probes []*graphgen.Value
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

// BuildStep builds the train-step graph: one ONNX graph that takes the
// state and a batch, and returns the losses, the logits, the next state and
// whether every gradient was finite. The next state is valid only when
// all_finite is true; otherwise a runner keeps the current one (the step is
// skipped), as Stepper does.
func BuildStep(o StepOptions) (*Step, error) {
	if o.Model.Batch < 1 {
		return nil, fmt.Errorf("train step: a fixed batch size is required")
	}
	if o.Model.Batch < 2 {
		return nil, fmt.Errorf("train step: batch %d is too small for batch statistics", o.Model.Batch)
	}
	if o.BNMomentum == 0 {
		o.BNMomentum = 0.1
	}
	compute := graphgen.Float
	if o.FP16 {
		compute = graphgen.Float16
	}
	mo := o.Model
	mo.ComputeType = compute
	inputs := map[string]*graphgen.Value{}
	var params, stats []StateTensor
	var bns []bnRecord
	mo.Param = func(g *graphgen.Graph, name string, kind models.ParamKind, t *graphgen.Tensor) *graphgen.Value {
		v := g.Input(name, graphgen.Float, t.Shape())
		inputs[name] = v
		st := StateTensor{Name: name, Kind: kind, Shape: append([]int64{}, t.Dims...)}
		if !kind.Trainable() {
			stats = append(stats, st)
			return v
		}
		st.Decayed = kind.Decayed() || !o.NoBiasDecay
		params = append(params, st)
		if kind == models.BNGamma || kind == models.BNBeta {
			return v // BatchNorm runs in float32
		}
		return g.Cast(v, compute)
	}
	mo.BatchNorm = func(g *graphgen.Graph, name string, x, scale, bias, mean, variance *graphgen.Value, eps float32) *graphgen.Value {
		x32 := g.Cast(x, graphgen.Float)
		// The shift of the one-pass batch statistics: the first image's
		// mean, estimated from the Conv's input, is near the batch mean
		// from the first step on, which keeps the variance precise, and
		// LowerBatchStats moves it into the Conv's bias, where it costs no
		// pass (see FirstImageConvMean). The running mean serves where
		// there is no such Conv.
		shift := g.FirstImageConvMean(x)
		if shift == nil {
			shift = mean
		}
		y, bm, bv := g.BatchNormBatchStats(x32, scale, bias, shift, eps)
		count := int64(0)
		if x.Shape.Static() {
			count = x.Shape.NumElements() / x.Shape[1].Size
		}
		bns = append(bns, bnRecord{mean: bm, variance: bv, runMean: mean, runVar: variance, count: count,
			meanName: name + ".running_mean", varName: name + ".running_var", name: name, out: y})
		return g.Cast(y, x.DType)
	}
	m, err := models.Build(mo)
	if err != nil {
		return nil, fmt.Errorf("train step: %w", err)
	}
	g := m.Graph
	// Strided pointwise convolutions read an explicit subsample, whose
	// gradient is cheaper than theirs (see SubsamplePointwise).
	if err := g.SubsamplePointwise(); err != nil {
		return nil, fmt.Errorf("train step: %w", err)
	}
	g.Name = m.Name + "_train_step"
	g.Doc = fmt.Sprintf("Train step of %s: forward (batch statistics), loss, backward and Nesterov SGD; inputs are the state and a batch, outputs the next state.", m.Name)
	f32 := graphgen.Float
	n, k := int64(mo.Batch), int64(m.Classes)
	targets := g.Input(InTargets, f32, graphgen.S(n, k))
	var teacher *graphgen.Value
	if o.Distill {
		teacher = g.Input(InTeacherLogits, f32, graphgen.S(n, k))
	}
	// Scalars are 1-element tensors of shape (1): they broadcast like rank-0
	// ones, and every runtime binds them as ordinary tensors.
	scalar := func(name string) *graphgen.Value { return g.Input(name, f32, graphgen.S(1)) }
	lr, mom, wd := scalar(InLR), scalar(InMomentum), scalar(InWeightDecay)
	s := &Step{Options: o, Graph: g, Model: m, Params: params, Stats: stats,
		Scalars: []string{InLR, InMomentum, InWeightDecay}}
	var lossScale, temp, hardW *graphgen.Value
	if o.FP16 {
		lossScale = scalar(InLossScale)
		s.Scalars = append(s.Scalars, InLossScale)
	}
	if o.Distill {
		temp, hardW = scalar(InKDTemperature), scalar(InKDHardWeight)
		s.Scalars = append(s.Scalars, InKDTemperature, InKDHardWeight)
	}

	// Loss, in float32: soft-target cross-entropy, plus distillation.
	g.SetScope("loss")
	z := m.Logits
	hard := CrossEntropy(g, z, targets)
	total := hard
	losses := []*graphgen.Value{hard}
	var soft *graphgen.Value
	if o.Distill {
		soft = DistillationLoss(g, z, teacher, temp)
		one := g.Scalar(f32, 1)
		total = g.Add(g.Mul(hardW, hard), g.Mul(g.Sub(one, hardW), soft))
		losses = append(losses, soft)
	}

	// Backward. With FP16 the seed is the loss scale, and gradients are
	// unscaled in float32 below.
	seed := g.Const(graphgen.FloatTensor([]int64{1}, []float32{1}))
	if o.FP16 {
		seed = lossScale
	}
	wrt := make([]*graphgen.Value, len(params))
	for i, p := range params {
		wrt[i] = inputs[p.Name]
	}
	grads, err := g.Gradients(total, wrt, seed)
	if err != nil {
		return nil, fmt.Errorf("train step: %w", err)
	}

	// Optimizer: PyTorch's SGD(nesterov=True). The step also reports
	// whether every gradient is finite; when one is not, the new/* outputs
	// are not a valid state and the runner keeps its inputs (Stepper does,
	// so a skipped step leaves the state bit for bit as it was). Gating
	// inside the graph would cost a Where per tensor, and ONNX Runtime's
	// Where with a one-element condition takes 2.5 to 3 times as long as
	// an Add of the same tensors (BenchmarkKernelBroadcast).
	g.SetScope("optimizer")
	var sums []*graphgen.Value
	for i := range grads {
		if o.FP16 {
			grads[i] = g.Div(grads[i], lossScale)
		}
		sums = append(sums, g.ReduceSum(grads[i], nil, false))
	}
	gsum := g.Sum(sums...)
	finite := g.Reshape(g.Not(g.Or(g.IsNaN(gsum), g.IsInf(gsum))), 1)
	var outs []*graphgen.Value
	for i, p := range params {
		w := inputs[p.Name]
		buf := g.Input(MomentumName(p.Name), f32, graphgen.S(p.Shape...))
		d := grads[i]
		if p.Decayed {
			d = g.Add(d, g.Mul(wd, w))
		}
		newBuf := g.Add(g.Mul(mom, buf), d)
		update := g.Add(d, g.Mul(mom, newBuf))
		newW := g.Sub(w, g.Mul(lr, update))
		g.RenameOutput(newW, NewName(p.Name))
		g.RenameOutput(newBuf, NewName(MomentumName(p.Name)))
		outs = append(outs, newW, newBuf)
	}

	// BatchNorm running statistics, PyTorch's convention: momentum 0.1 and
	// the unbiased batch variance.
	g.SetScope("running_stats")
	keep := g.Scalar(f32, float64(1-o.BNMomentum))
	for _, b := range bns {
		if b.count < 2 {
			return nil, fmt.Errorf("train step: BatchNorm %s sees %d values per channel; need at least 2", b.meanName, b.count)
		}
		rm := g.Add(g.Mul(keep, b.runMean), g.Mul(g.Scalar(f32, float64(o.BNMomentum)), b.mean))
		unbias := float64(o.BNMomentum) * float64(b.count) / float64(b.count-1)
		rv := g.Add(g.Mul(keep, b.runVar), g.Mul(g.Scalar(f32, unbias), b.variance))
		g.RenameOutput(rm, NewName(b.meanName))
		g.RenameOutput(rv, NewName(b.varName))
		outs = append(outs, rm, rv)
	}

	g.RenameOutput(total, OutLoss)
	s.Losses = []string{OutLoss}
	head := []*graphgen.Value{total}
	if o.Distill {
		g.RenameOutput(hard, OutLossHard)
		g.RenameOutput(soft, OutLossSoft)
		head = append(head, hard, soft)
		s.Losses = append(s.Losses, OutLossHard, OutLossSoft)
	}
	g.RenameOutput(finite, OutAllFinite)
	head = append(head, finite)
	// The model already made logits a graph output; put it after the losses.
	g.Outputs = nil
	g.Output(head[:len(s.Losses)]...)
	g.Output(m.Logits)
	g.Output(head[len(s.Losses):]...)
	g.Output(outs...)
	if o.Probes {
		g.SetScope("probe")
		relus, pools := 0, 0
		for _, n := range append([]*graphgen.Node{}, g.Nodes...) {
			switch {
			case n.Op == "Relu" && !strings.HasPrefix(n.Name, "grad/"):
				p := g.Greater(n.Outputs[0], g.Scalar(n.Outputs[0].DType, 0))
				g.RenameOutput(p, fmt.Sprintf("probe/relu/%d", relus))
				s.Probes = append(s.Probes, p)
				relus++
			case n.Op == "MaxPool" && len(n.Outputs) == 2:
				p := g.Identity(n.Outputs[1])
				g.RenameOutput(p, fmt.Sprintf("probe/maxpool/%d", pools))
				s.Probes = append(s.Probes, p)
				pools++
			}
		}
		for _, b := range bns {
			p := g.Identity(b.out)
			g.RenameOutput(p, ProbeBN+b.name)
			s.Probes = append(s.Probes, p)
		}
		g.Output(s.Probes...)
	}
	// For ONNX Runtime's CPU kernels: each BatchNorm's shift (the first
	// image's estimated mean) folded into the bias of the Conv before it, BatchNorm affine
	// maps as depthwise convs that fuse with the ReLU (or residual Add and
	// ReLU) after them. Every output is declared, and
	// differentiation is done, so the rewrite changes no result beyond
	// float32 rounding.
	if err := g.LowerBatchStats(); err != nil {
		return nil, fmt.Errorf("train step: %w", err)
	}
	if o.NchwcBlock > 0 {
		if err := g.LowerNchwc(o.NchwcBlock); err != nil {
			return nil, fmt.Errorf("train step: %w", err)
		}
	}
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("train step: %w", err)
	}
	return s, nil
}

// CrossEntropy is the batch mean of -sum_k q_k log softmax(z)_k for soft
// targets q (N,K) and logits z (N,K), shape (1).
func CrossEntropy(g *graphgen.Graph, z, q *graphgen.Value) *graphgen.Value {
	n := z.Shape[0].Size
	s := g.Reshape(g.ReduceSum(g.Mul(q, g.LogSoftmax(z, 1)), nil, true), 1)
	return g.Mul(s, g.Scalar(z.DType, -1/float64(n)))
}

// DistillationLoss is the paper's soft term, T^2 * CE(softmax(r/T),
// softmax(z/T)), averaged over the batch, for student logits z, teacher
// logits r and a scalar temperature T. No gradient reaches the teacher.
func DistillationLoss(g *graphgen.Graph, z, r, temp *graphgen.Value) *graphgen.Value {
	p := g.Softmax(g.Div(r, temp), 1)
	ce := CrossEntropy(g, g.Div(z, temp), p)
	return g.Mul(ce, g.Mul(temp, temp))
}

// SetDefaults stores the initial parameters and running statistics as
// default values of their inputs (momentum buffers are fed as zeros), so the
// graph file alone holds everything a first step needs.
func (s *Step) SetDefaults() {
	byName := map[string]*graphgen.Value{}
	for _, in := range s.Graph.Inputs {
		byName[in.Name] = in
	}
	for _, p := range s.Model.Params {
		s.Graph.SetDefault(byName[p.Name], p.Tensor)
	}
}

// ModelInfo is the doc string and metadata the step graph is written with.
func (s *Step) ModelInfo() graphgen.ModelInfo {
	return graphgen.ModelInfo{Doc: s.Graph.Doc, Metadata: append(s.Model.Metadata(), [2]string{"ortrain.graph", "train_step"})}
}
