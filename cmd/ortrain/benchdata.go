package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/ortrain/ortrain/training/data"
)

func cmdBenchData(args []string, stdout, stderr io.Writer) error {
	const synopsis = "bench-data --data DIR [--image-size 224] [--workers 1] [--images 1000]"
	fs, help := flagSet("bench-data")
	dir := fs.String("data", "", "image folder (DIR/train/<class>/* if DIR/train exists)")
	size := fs.Int("image-size", 224, "crop size")
	workers := fs.Int("workers", 1, "decoding goroutines")
	n := fs.Int("images", 1000, "images to process")
	eval := fs.Bool("eval", false, "the validation transform instead of the training one")
	if err := parse(fs, help, args, synopsis, stdout); err != nil {
		return err
	}
	ds, err := openTrainOrFolder(*dir)
	if err != nil {
		return err
	}
	if *n < 1 || *workers < 1 || *size < 1 {
		return usageError{fmt.Errorf("--images, --workers and --image-size must be positive")}
	}
	if len(ds.Samples) > *n {
		ds.Samples = ds.Samples[:*n]
	}
	const batch = 32
	l := &data.Loader{Data: ds, Batch: batch, Size: *size, Train: !*eval, Aug: data.NewTrainTransform(*size), Workers: *workers, Seed: 1}
	if len(ds.Samples) < batch {
		return fmt.Errorf("%s: need at least %d images", *dir, batch)
	}
	start := time.Now()
	ch, err := l.Epoch(context.Background(), 0, 0)
	if err != nil {
		return err
	}
	images := 0
	for b := range ch {
		if b.Err != nil {
			return b.Err
		}
		images += b.N
		b.Release()
	}
	el := time.Since(start).Seconds()
	kind := "train"
	if *eval {
		kind = "eval"
	}
	fmt.Fprintf(stdout, "ortrain data pipeline (%s transform at %d, %s): %d images, %d workers: %.1f img/s, %.1f img/s per worker\n",
		kind, *size, data.JPEGDecoder, images, *workers, float64(images)/el, float64(images)/el/float64(*workers))
	return nil
}
