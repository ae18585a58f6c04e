package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"strings"

	"github.com/ortrain/ortrain/internal/bench"
	"github.com/ortrain/ortrain/models"
	"github.com/ortrain/ortrain/training"
)

func cmdBenchStep(args []string, stdout, stderr io.Writer) error {
	const synopsis = "bench-step [--model resnet50] [--batch 16] [--image-size 224] [--iters 10] [--fp16]"
	fs, help := flagSet("bench-step")
	model := fs.String("model", "resnet50", "model name (see graphgen --list)")
	batch := fs.Int("batch", 16, "batch size")
	size := fs.Int("image-size", 224, "input height and width")
	classes := fs.Int("classes", 1000, "number of classes")
	iters := fs.Int("iters", 10, "timed steps")
	warmup := fs.Int("warmup", 2, "untimed steps first")
	fp16 := fs.Bool("fp16", false, "mixed-precision step")
	profile := fs.String("profile", "", "write an ONNX Runtime profile with this file-name prefix")
	noArena := fs.Bool("no-arena", false, "turn off ONNX Runtime's CPU memory arena")
	plainConv := fs.Bool("plain-conv", false, "on the CPU, keep ONNX Runtime's plain convolutions: the portable step graph, without its blocked (NCHWc) 3x3 kernels")
	turnIn := fs.String("turn-in", "", "lockstep with another process (benchmarks): before each step, wait for a byte on this FIFO")
	turnOut := fs.String("turn-out", "", "lockstep: after each step, write a byte to this FIFO")
	rt := addRuntimeFlags(fs)
	if err := parse(fs, help, args, synopsis, stdout); err != nil {
		return err
	}
	switch {
	case *iters < 1 || *warmup < 0:
		return usageError{fmt.Errorf("--iters must be positive and --warmup not negative")}
	case (*turnIn == "") != (*turnOut == ""):
		return usageError{fmt.Errorf("--turn-in and --turn-out go together")}
	}
	turns, err := bench.OpenTurns(*turnIn, *turnOut)
	if err != nil {
		return fmt.Errorf("--turn-in/--turn-out: %w", err)
	}
	defer turns.Close()
	opts, err := rt.options()
	if err != nil {
		return err
	}
	opts.ProfilePrefix = *profile
	opts.DisableCPUArena = *noArena
	so := training.StepOptions{
		Model: models.Options{Name: *model, Classes: *classes, ImageSize: *size, Batch: *batch, ZeroGamma: true},
		FP16:  *fp16, NoBiasDecay: true,
	}
	if opts.Provider.CPU() && !*plainConv && !*fp16 {
		var perr error
		if so.NchwcBlock, perr = training.NchwcBlock(opts); perr != nil {
			fmt.Fprintf(stderr, "bench-step: plain convolutions (%v)\n", perr)
		}
	}
	step, err := training.BuildStep(so)
	if err != nil {
		return usageError{err}
	}
	st, err := training.NewStepper(step, step.InitialState(), opts)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := fillRandomBatch(st, *classes); err != nil {
		return err
	}
	h := training.Hyper{LR: 0.01, Momentum: 0.9, WeightDecay: 1e-4, LossScale: 1024}
	times, err := bench.Times(*warmup, *iters, turns, func() error { _, err := st.Run(h); return err })
	if err != nil {
		return err
	}
	total, median, _ := bench.Stats(times)
	kind := "fp32"
	if *fp16 {
		kind = "fp16"
	}
	if so.NchwcBlock > 0 {
		kind += fmt.Sprintf(", blocked 3x3 convolutions (NCHWc, block %d)", so.NchwcBlock)
	}
	fmt.Fprintf(stdout, "ortrain train step (ONNX Runtime %s, %s): %s batch %d at %d, %d steps: %.2f steps/s, %.2f img/s, median %.0f ms/step, peak RSS %s\n",
		strings.TrimSpace(rtVersion()), kind, *model, *batch, *size, len(times), float64(len(times))/total,
		float64(*batch*len(times))/total, median*1e3, bench.PeakRSS())
	return nil
}

// fillRandomBatch puts a seeded random batch (normal images, smoothed
// labels) into the stepper.
func fillRandomBatch(st *training.Stepper, classes int) error {
	r := rand.New(rand.NewPCG(1, 1))
	for i := range st.Images() {
		st.Images()[i] = float32(r.NormFloat64())
	}
	labels := make([]int, len(st.Targets())/classes)
	for i := range labels {
		labels[i] = r.IntN(classes)
	}
	return training.SmoothTargets(st.Targets(), labels, classes, 0.1, training.SmoothPaper)
}
