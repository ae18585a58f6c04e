package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/ortrain/ortrain/internal/bench"
	"github.com/ortrain/ortrain/models"
	"github.com/ortrain/ortrain/parallel"
	"github.com/ortrain/ortrain/runtime"
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
	plainConv := fs.Bool("plain-conv", false, "on the CPU, keep ONNX Runtime's plain convolutions: the portable step graph, without its blocked (NCHWc) 3x3 kernels and batch-wide products")
	batchGemm := fs.Bool("batch-gemm", true, "on the CPU, convolutions on small planes as one product over the batch (false: to measure what that gives)")
	turnIn := fs.String("turn-in", "", "lockstep with another process (benchmarks): before each step, wait for a byte on this FIFO")
	turnOut := fs.String("turn-out", "", "lockstep: after each step, write a byte to this FIFO")
	freezeBackbone := fs.Bool("freeze-backbone", false, "the step of a run with --freeze-backbone: gradients for the classifier alone")
	freezeBN := fs.Bool("freeze-bn", false, "the step of a run with --freeze-bn: BatchNorm on fixed running statistics")
	accum := fs.Int("accum-steps", 1, "micro-batches of --batch per step on each process (the split step; under mpirun it is always split)")
	rt := addRuntimeFlags(fs)
	if err := parse(fs, help, args, synopsis, stdout); err != nil {
		return err
	}
	switch {
	case *iters < 1 || *warmup < 0 || *accum < 1:
		return usageError{fmt.Errorf("--iters and --accum-steps must be positive and --warmup not negative")}
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
	if so.Frozen, err = frozenForBench(so.Model, *freezeBackbone, *freezeBN); err != nil {
		return usageError{err}
	}
	if opts.Provider.CPU() && !*plainConv && !*fp16 {
		if perr := so.UseCPUKernels(opts); perr != nil {
			fmt.Fprintf(stderr, "bench-step: plain convolutions (%v)\n", perr)
		}
		so.BatchGemm = *batchGemm
	}
	comm, err := parallel.Init()
	if err != nil {
		return err
	}
	defer comm.Close()
	var times []float64
	var reduce float64
	if comm.Size() > 1 || *accum > 1 {
		times, reduce, err = benchSplitStep(so, opts, *classes, *accum, *warmup, *iters, turns, comm)
	} else {
		times, err = benchFusedStep(so, opts, *classes, *warmup, *iters, turns)
	}
	if err != nil {
		return err
	}
	if comm.Rank() != 0 {
		return nil
	}
	total, median, _ := bench.Stats(times)
	kind := "fp32"
	if *fp16 {
		kind = "fp16"
	}
	if so.NchwcBlock > 0 {
		kind += fmt.Sprintf(", blocked 3x3 convolutions (NCHWc, block %d)", so.NchwcBlock)
	}
	if so.BatchGemm {
		kind += ", small planes as batch-wide products"
	}
	if *freezeBackbone {
		kind += ", backbone frozen"
	} else if *freezeBN {
		kind += ", BatchNorm frozen"
	}
	global := *batch * *accum * comm.Size()
	extra := ""
	if comm.Size() > 1 {
		extra = fmt.Sprintf(", %d processes x %d micro-batches, all-reduce %.1f ms/step (%.1f%%)", comm.Size(), *accum,
			1e3*reduce/float64(len(times)), 100*reduce/total)
	} else if *accum > 1 {
		extra = fmt.Sprintf(", %d micro-batches", *accum)
	}
	fmt.Fprintf(stdout, "ortrain train step (ONNX Runtime %s, %s%s): %s batch %d at %d, %d steps: %.2f steps/s, %.2f img/s, median %.0f ms/step, peak RSS %s\n",
		strings.TrimSpace(rtVersion()), kind, extra, *model, global, *size, len(times), float64(len(times))/total,
		float64(global*len(times))/total, median*1e3, bench.PeakRSS())
	return nil
}

// frozenForBench is the frozen part of a fine-tuning run's step, from the
// model's initialization (the values do not change the work).
func frozenForBench(mo models.Options, backbone, bn bool) (map[string][]float32, error) {
	if !backbone && !bn {
		return nil, nil
	}
	shapes, init, err := training.ModelState(mo)
	if err != nil {
		return nil, err
	}
	return training.FrozenState(init, shapes, backbone, bn), nil
}

// benchFusedStep times the fused step, as `ortrain train` runs it on one
// process.
func benchFusedStep(so training.StepOptions, opts runtime.Options, classes, warmup, iters int, turns bench.Turns) ([]float64, error) {
	step, err := training.BuildStep(so)
	if err != nil {
		return nil, usageError{err}
	}
	st, err := training.NewStepper(step, step.InitialState(), opts)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if err := fillRandomBatch(st.Images(), st.Targets(), classes); err != nil {
		return nil, err
	}
	h := training.Hyper{LR: 0.01, Momentum: 0.9, WeightDecay: 1e-4, LossScale: 1024}
	return bench.Times(warmup, iters, turns, func() error { _, err := st.Run(h); return err })
}

// benchSplitStep times the split step, as `ortrain train` runs it under
// MPI or with accumulation: accum micro-batches, the all-reduce of the
// sums (timed apart, the second result), the update.
func benchSplitStep(so training.StepOptions, opts runtime.Options, classes, accum, warmup, iters int, turns bench.Turns, comm parallel.Comm) ([]float64, float64, error) {
	step, err := training.BuildStep(so)
	if err != nil {
		return nil, 0, usageError{err}
	}
	gs, us, err := training.BuildSplitStep(so)
	if err != nil {
		return nil, 0, usageError{err}
	}
	sp, err := training.NewSplitStepper(gs, us, step.InitialState(), opts)
	if err != nil {
		return nil, 0, err
	}
	defer sp.Close()
	if err := fillRandomBatch(sp.Images(), sp.Targets(), classes); err != nil {
		return nil, 0, err
	}
	h := training.Hyper{LR: 0.01, Momentum: 0.9, WeightDecay: 1e-4, LossScale: 1024}
	var reduce float64
	n := 0
	times, err := bench.Times(warmup, iters, turns, func() error {
		sp.BeginStep()
		for j := 0; j < accum; j++ {
			if _, err := sp.Accumulate(h); err != nil {
				return err
			}
		}
		// The barrier first, so that the time measured is the reduction's,
		// not a wait for the slower process (the training loop has no
		// barrier: there the all-reduce absorbs that wait).
		if err := comm.Barrier(); err != nil {
			return err
		}
		start := time.Now()
		if err := comm.AllReduceSum(sp.Sums()); err != nil {
			return err
		}
		if n++; n > warmup {
			reduce += time.Since(start).Seconds()
		}
		_, err := sp.Apply(h, accum*comm.Size())
		return err
	})
	return times, reduce, err
}

// fillRandomBatch puts a seeded random batch (normal images, smoothed
// labels) into a stepper's inputs.
func fillRandomBatch(images, targets []float32, classes int) error {
	r := rand.New(rand.NewPCG(1, 1))
	for i := range images {
		images[i] = float32(r.NormFloat64())
	}
	labels := make([]int, len(targets)/classes)
	for i := range labels {
		labels[i] = r.IntN(classes)
	}
	return training.SmoothTargets(targets, labels, classes, 0.1, training.SmoothPaper)
}
