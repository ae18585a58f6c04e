package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot/plotter"

	"github.com/ortrain/ortrain/training"
)

// compareMetrics are the per-epoch values `ortrain compare` can plot.
var compareMetrics = map[string]struct {
	title string
	get   func(training.EpochRecord) float64
}{
	"val_top1":   {"Validation top-1 (%)", func(r training.EpochRecord) float64 { return 100 * r.ValTop1 }},
	"val_top5":   {"Validation top-5 (%)", func(r training.EpochRecord) float64 { return 100 * r.ValTop5 }},
	"val_loss":   {"Validation loss", func(r training.EpochRecord) float64 { return r.ValLoss }},
	"train_loss": {"Training loss", func(r training.EpochRecord) float64 { return r.TrainLoss }},
	"lr":         {"Learning rate (end of epoch)", func(r training.EpochRecord) float64 { return r.LR }},
}

// cmdCompare prints the final and best accuracy of several runs side by side
// and, with -o, plots one metric of all of them per epoch: what TensorBoard's
// run comparison gives GluonCV and timm users.
func cmdCompare(args []string, stdout, stderr io.Writer) error {
	const synopsis = "compare [--metric val_top1] [-o curves.png] RUN... (a run folder, or LABEL=FOLDER)"
	fs, help := flagSet("compare")
	metric := fs.String("metric", "val_top1", "what to plot: val_top1, val_top5, val_loss, train_loss or lr")
	out := fs.StringP("output", "o", "", "write a PNG plot of the metric per epoch for every run")
	if err := parse(fs, help, args, synopsis, stdout); err != nil {
		return err
	}
	m, ok := compareMetrics[*metric]
	if !ok {
		return usageError{fmt.Errorf("unknown --metric %q (val_top1, val_top5, val_loss, train_loss or lr)", *metric)}
	}
	if fs.NArg() == 0 {
		return usageError{fmt.Errorf("no run folders given (usage: ortrain %s)", synopsis)}
	}
	var curves []training.Curve
	var table strings.Builder
	fmt.Fprintf(&table, "%-28s %6s %9s %9s %16s\n", "run", "epochs", "top-1 %", "top-5 %", "best top-1 %")
	for _, a := range fs.Args() {
		label, dir := filepath.Base(filepath.Clean(a)), a
		if l, d, ok := strings.Cut(a, "="); ok && l != "" {
			label, dir = l, d
		}
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return fmt.Errorf("%s: not a run folder", dir)
		}
		hist, err := training.ReadMetrics(dir)
		if err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		if len(hist) == 0 {
			return fmt.Errorf("%s: no metrics.jsonl with an epoch in it (not a run folder, or no epoch finished)", dir)
		}
		last, best := hist[len(hist)-1], hist[0]
		xy := make(plotter.XYs, len(hist))
		for i, r := range hist {
			if r.ValTop1 > best.ValTop1 {
				best = r
			}
			xy[i].X, xy[i].Y = float64(r.Epoch), m.get(r)
		}
		fmt.Fprintf(&table, "%-28s %6d %9.2f %9.2f %9.2f (ep %d)\n", label, last.Epoch, 100*last.ValTop1, 100*last.ValTop5, 100*best.ValTop1, best.Epoch)
		curves = append(curves, training.Curve{Label: label, Points: xy})
	}
	io.WriteString(stdout, table.String())
	if *out == "" {
		return nil
	}
	legendTop := *metric != "val_top1" && *metric != "val_top5"
	if err := training.WritePlot(*out, m.title, strings.ToLower(m.title), legendTop, curves); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s\n", *out)
	return nil
}
