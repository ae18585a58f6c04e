package main

import (
	"fmt"
	"io"
	"math/rand/v2"

	"github.com/ortrain/ortrain/classifier"
	"github.com/ortrain/ortrain/internal/bench"
	"github.com/ortrain/ortrain/runtime"
)

// maxBenchElements bounds the random input bench allocates (1 GiB).
const maxBenchElements = 1 << 28

func cmdBench(args []string, stdout, stderr io.Writer) error {
	const synopsis = "bench --model MODEL.onnx [--batch 16] [--iters 20]"
	fs, help := flagSet("bench")
	model := fs.String("model", "", "ONNX image classifier (one float32 input N,3,H,W)")
	batch := fs.Int("batch", 16, "batch size (for a model with a dynamic batch dimension)")
	iters := fs.Int("iters", 20, "timed runs")
	warmup := fs.Int("warmup", 3, "untimed runs first")
	label := fs.String("label", "", "name printed in the result line (default: the model path)")
	rt := addRuntimeFlags(fs)
	if err := parse(fs, help, args, synopsis, stdout); err != nil {
		return err
	}
	if *batch < 1 || *iters < 1 || *warmup < 0 {
		return usageError{fmt.Errorf("--batch and --iters must be positive, --warmup not negative")}
	}
	sess, err := rt.open(*model, stderr)
	if err != nil {
		return err
	}
	defer sess.Destroy()
	if _, err := classifier.Inspect(sess, *model); err != nil {
		return err
	}
	shape := append([]int64{}, sess.Inputs[0].Shape...)
	if shape[0] < 0 {
		shape[0] = int64(*batch)
	}
	for i, d := range shape[1:] {
		if d < 0 {
			return fmt.Errorf("%s: input dimension %d is dynamic; only the batch may be", *model, i+1)
		}
	}
	n := int64(1)
	for _, d := range shape {
		if d == 0 || n > maxBenchElements/d {
			return fmt.Errorf("%s: input shape %v is empty or too large to benchmark (limit %d values)", *model, shape, maxBenchElements)
		}
		n *= d
	}
	data := make([]float32, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = float32(r.NormFloat64())
	}
	in, err := runtime.NewFloat32(shape, data)
	if err != nil {
		return err
	}
	defer in.Destroy()
	times, err := bench.Times(*warmup, *iters, bench.Turns{}, func() error {
		outs, err := sess.Run([]*runtime.Tensor{in}, nil)
		for _, o := range outs {
			o.Destroy()
		}
		return err
	})
	if err != nil {
		return err
	}
	total, med, fastest := bench.Stats(times)
	name := *label
	if name == "" {
		name = *model
	}
	fmt.Fprintf(stdout, "%s: batch %d, %d runs: %.1f img/s (mean), median %.1f ms per batch, min %.1f ms\n",
		name, shape[0], len(times), float64(shape[0])*float64(len(times))/total, med*1e3, fastest*1e3)
	return nil
}
