package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/ortrain/ortrain/graphgen"
	"github.com/ortrain/ortrain/models"
	"github.com/ortrain/ortrain/training"
)

// trainStep writes the train-step graph of a model: `graphgen train-step
// resnet50d --batch 32 -o step.onnx`.
func trainStep(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("graphgen train-step", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	output := fs.StringP("output", "o", "", "write the graph to this file (default: standard output)")
	classes := fs.Int("classes", 1000, "number of classes")
	imageSize := fs.Int("image-size", 224, "input height and width")
	batch := fs.Int("batch", 0, "batch size (required: the step is built for a fixed batch)")
	opset := fs.Int64("opset", graphgen.DefaultOpset, fmt.Sprintf("ONNX opset (%d to %d)", graphgen.MinOpset, graphgen.MaxOpset))
	seed := fs.Uint64("seed", 0, "seed of the initialization written with --init")
	zeroGamma := fs.Bool("zero-gamma", false, "zero gamma of the last BatchNorm of each block (with --init)")
	fp16 := fs.Bool("fp16", false, "mixed precision: float16 forward and backward, float32 master weights, a loss_scale input")
	distill := fs.Bool("distill", false, "add the teacher_logits input and the distillation term")
	noBiasDecay := fs.Bool("no-bias-decay", false, "no weight decay on biases and BatchNorm gamma/beta")
	init := fs.Bool("init", false, "store the initial parameters and running statistics as defaults of their inputs")
	split := fs.Bool("split", false, "write the split step instead (gradient accumulation, data parallelism): -o F.onnx writes F.grad.onnx and F.update.onnx")
	help := fs.BoolP("help", "h", false, "show this help")
	if err := fs.Parse(args); err != nil {
		return usageError{fmt.Errorf("%w (see graphgen train-step --help)", err)}
	}
	if *help {
		fmt.Fprintf(stdout, `Usage: graphgen train-step MODEL --batch N [flags] > step.onnx

Writes one ONNX graph that performs a whole training step: forward with batch
statistics, soft-target cross-entropy (plus distillation with --distill),
backward, and Nesterov SGD; it returns the next parameters, momentum buffers
and running statistics. Inputs: images, targets, [teacher_logits], the scalars
lr, momentum, weight_decay, [loss_scale], [kd_temperature, kd_hard_weight]
(shape (1)), every parameter, momentum_buffer/<parameter> and running
statistic. Outputs: loss, [loss_hard, loss_soft], logits, all_finite, and
new/<input> for every state input. See docs/training-graph.md.

Flags:
%s`, fs.FlagUsages())
		return pflag.ErrHelp
	}
	if fs.NArg() != 1 {
		return usageError{fmt.Errorf("expected one model name, got %d arguments", fs.NArg())}
	}
	if _, _, err := models.ParseName(fs.Arg(0)); err != nil {
		return usageError{err}
	}
	if *batch < 2 {
		return usageError{fmt.Errorf("--batch must be at least 2 (batch statistics), got %d", *batch)}
	}
	if err := checkSizes(*classes, *imageSize, *opset); err != nil {
		return err
	}
	if err := refuseTerminal(*output, stdout); err != nil {
		return err
	}
	so := training.StepOptions{
		Model: models.Options{Name: fs.Arg(0), Classes: *classes, ImageSize: *imageSize, Batch: *batch,
			Opset: *opset, Seed: *seed, ZeroGamma: *zeroGamma},
		Distill: *distill, NoBiasDecay: *noBiasDecay, FP16: *fp16,
	}
	if *split {
		return writeSplitStep(so, *output, stdout)
	}
	step, err := training.BuildStep(so)
	if err != nil {
		return usageError{err}
	}
	if *init {
		step.SetDefaults()
	}
	info := step.ModelInfo()
	info.Metadata = append(info.Metadata, [2]string{"ortrain.batch", strconv.Itoa(*batch)})
	return writeGraph(step.Graph, info, *output, stdout)
}

// writeSplitStep writes the split step's two graphs beside output:
// F.onnx names F.grad.onnx and F.update.onnx.
func writeSplitStep(so training.StepOptions, output string, stdout io.Writer) error {
	if output == "" || output == "-" {
		return usageError{fmt.Errorf("--split writes two files: give -o FILE.onnx")}
	}
	gs, us, err := training.BuildSplitStep(so)
	if err != nil {
		return usageError{err}
	}
	base := strings.TrimSuffix(output, ".onnx")
	batch := [2]string{"ortrain.batch", strconv.Itoa(so.Model.Batch)}
	for _, f := range []struct {
		g    *graphgen.Graph
		path string
	}{{gs.Graph, base + ".grad.onnx"}, {us.Graph, base + ".update.onnx"}} {
		info := graphgen.ModelInfo{Doc: f.g.Doc, Metadata: [][2]string{{"ortrain.graph", f.g.Name}, batch}}
		if err := writeGraph(f.g, info, f.path, stdout); err != nil {
			return err
		}
	}
	return nil
}
