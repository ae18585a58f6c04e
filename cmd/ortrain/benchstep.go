package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"time"

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
	case *batch < 2 || *batch > 1<<16:
		return usageError{fmt.Errorf("--batch must be between 2 and 65536, got %d", *batch)}
	case *iters < 1 || *warmup < 0:
		return usageError{fmt.Errorf("--iters must be positive and --warmup not negative")}
	case *classes < 1 || *classes > models.MaxClasses:
		return usageError{fmt.Errorf("--classes must be between 1 and %d, got %d", models.MaxClasses, *classes)}
	case *size < 32 || *size > models.MaxImageSize:
		return usageError{fmt.Errorf("--image-size must be between 32 and %d, got %d", models.MaxImageSize, *size)}
	case (*turnIn == "") != (*turnOut == ""):
		return usageError{fmt.Errorf("--turn-in and --turn-out go together")}
	}
	turns, err := openTurns(*turnIn, *turnOut)
	if err != nil {
		return err
	}
	defer turns.close()
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
	r := rand.New(rand.NewPCG(1, 1))
	for i := range st.Images() {
		st.Images()[i] = float32(r.NormFloat64())
	}
	labels := make([]int, *batch)
	for i := range labels {
		labels[i] = r.IntN(*classes)
	}
	if err := training.SmoothTargets(st.Targets(), labels, *classes, 0.1, training.SmoothPaper); err != nil {
		return err
	}
	h := training.Hyper{LR: 0.01, Momentum: 0.9, WeightDecay: 1e-4, LossScale: 1024}
	var times []float64
	for i := 0; i < *warmup+*iters; i++ {
		if err := turns.wait(); err != nil {
			return err
		}
		start := time.Now()
		if _, err := st.Run(h); err != nil {
			return err
		}
		if i >= *warmup {
			times = append(times, time.Since(start).Seconds())
		}
		if err := turns.pass(); err != nil {
			return err
		}
	}
	sort.Float64s(times)
	var total float64
	for _, t := range times {
		total += t
	}
	kind := "fp32"
	if *fp16 {
		kind = "fp16"
	}
	if so.NchwcBlock > 0 {
		kind += fmt.Sprintf(", blocked 3x3 convolutions (NCHWc, block %d)", so.NchwcBlock)
	}
	fmt.Fprintf(stdout, "ortrain train step (ONNX Runtime %s, %s): %s batch %d at %d, %d steps: %.2f steps/s, %.2f img/s, median %.0f ms/step, peak RSS %s\n",
		strings.TrimSpace(rtVersion()), kind, *model, *batch, *size, len(times), float64(len(times))/total,
		float64(*batch*len(times))/total, times[len(times)/2]*1e3, peakRSS())
	return nil
}

// turns runs the steps in lockstep with another process (the benchmark's
// peer) through two FIFOs, so that both measure their steps alternately,
// step by step, under the same state of the machine, whose speed drifts
// (scripts/bench_train.sh ... lockstep; docs/benchmarks.md says why its
// sequential mode is the one reported). The zero value does nothing.
type turns struct{ in, out *os.File }

func openTurns(in, out string) (turns, error) {
	if in == "" {
		return turns{}, nil
	}
	// The benchmark script holds both FIFOs open for reading and writing,
	// so neither open blocks.
	fin, err := os.Open(in)
	if err != nil {
		return turns{}, fmt.Errorf("--turn-in: %w", err)
	}
	fout, err := os.OpenFile(out, os.O_WRONLY, 0)
	if err != nil {
		fin.Close()
		return turns{}, fmt.Errorf("--turn-out: %w", err)
	}
	return turns{fin, fout}, nil
}

func (t turns) wait() error {
	if t.in == nil {
		return nil
	}
	var b [1]byte
	if _, err := io.ReadFull(t.in, b[:]); err != nil {
		return fmt.Errorf("wait for turn on %s: %w", t.in.Name(), err)
	}
	return nil
}

// turnGap is how long a process idles after its step before passing the
// turn: ONNX Runtime's idle intra-op threads spin a while before blocking,
// as PyTorch's OpenMP threads do, and would otherwise take a core from the
// other process's step. With the gap, a waiting ortrain process used 0.01
// to 0.02 s of CPU per 1.5 s turn of its partner (sampled from
// /proc/PID/stat, 2026-11-27), a waiting PyTorch process none. The peer
// script waits as long.
const turnGap = 100 * time.Millisecond

func (t turns) pass() error {
	if t.out == nil {
		return nil
	}
	time.Sleep(turnGap)
	if _, err := t.out.Write([]byte{'.'}); err != nil {
		return fmt.Errorf("pass turn on %s: %w", t.out.Name(), err)
	}
	return nil
}

func (t turns) close() {
	if t.in != nil {
		t.in.Close()
		t.out.Close()
	}
}

// peakRSS reads the process's high-water resident set size.
func peakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
