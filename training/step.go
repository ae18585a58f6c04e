package training

import (
	"fmt"

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
	// convolutions with this block size (graphgen.LowerNchwc; faster,
	// BenchmarkKernelNchwcConv). It must be
	// the block size of the ONNX Runtime that runs the step: take it from
	// NchwcBlock. 0 (the default) keeps the portable graph of standard
	// operators that every provider runs and that `graphgen train-step`
	// writes.
	NchwcBlock int64
	// BatchGemm, for ONNX Runtime's CPU provider too: the float32
	// convolutions on small output planes (3x3 kernels up to 4x4, 1x1 up
	// to 2x2, strided ones up to 7x7) become one matrix product over the whole
	// batch, and their gradients follow (graphgen.ConvsAsGemm; up to 2.9
	// times faster with their gradients, BenchmarkKernelConvGemm).
	// Standard operators, the same values up to float32 rounding.
	BatchGemm bool
	// Frozen are parameters and running statistics held fixed, by name,
	// with their values: they enter the graph as constants (initializers),
	// so the step computes no gradient for them, carries no momentum and
	// updates nothing; a BatchNorm whose running statistics are frozen runs
	// in inference mode on them (fine-tuning's --freeze-bn and
	// --freeze-backbone).
	Frozen map[string][]float32
}

// rewriteForward applies the rewrites that precede differentiation to a
// forward graph (the step's, or the trainer's evaluation graph, so that
// its convolutions are the step's): strided pointwise convolutions read an
// explicit subsample, whose gradient is cheaper than theirs
// (SubsamplePointwise), and with BatchGemm the small planes become
// batch-wide products (ConvsAsGemm).
func (o StepOptions) rewriteForward(g *graphgen.Graph) error {
	if err := g.SubsamplePointwise(); err != nil {
		return err
	}
	if o.BatchGemm {
		if _, err := g.ConvsAsGemm(); err != nil {
			return err
		}
	}
	return nil
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

// BuildStep builds the train-step graph: one ONNX graph that takes the
// state and a batch, and returns the losses, the logits, the next state and
// whether every gradient was finite. The next state is valid only when
// all_finite is true; otherwise a runner keeps the current one (the step is
// skipped), as Stepper does.
func BuildStep(o StepOptions) (*Step, error) {
	b, err := newStepBuilder(o)
	if err != nil {
		return nil, fmt.Errorf("train step: %w", err)
	}
	if err := b.forward(); err != nil {
		return nil, fmt.Errorf("train step: %w", err)
	}
	b.batchInputs(true)
	total, losses := b.loss()
	grads, err := b.backward(total, true)
	if err != nil {
		return nil, fmt.Errorf("train step: %w", err)
	}
	finite := b.allFinite(grads)
	state := b.optimizer(grads)
	stats, err := b.runningStats()
	if err != nil {
		return nil, fmt.Errorf("train step: %w", err)
	}
	b.outputs(total, losses, finite, append(state, stats...))
	if o.Probes {
		b.probes()
	}
	if err := b.lower(); err != nil {
		return nil, fmt.Errorf("train step: %w", err)
	}
	return b.s, nil
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
		if in, ok := byName[p.Name]; ok { // frozen ones are constants already
			s.Graph.SetDefault(in, p.Tensor)
		}
	}
}

// ModelInfo is the doc string and metadata the step graph is written with.
func (s *Step) ModelInfo() graphgen.ModelInfo {
	return graphgen.ModelInfo{Doc: s.Graph.Doc, Metadata: append(s.Model.Metadata(), [2]string{"ortrain.graph", "train_step"})}
}
