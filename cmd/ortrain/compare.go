package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gonum.org/v1/plot/plotter"

	"github.com/ortrain/ortrain/training"
)

// compareMetric is a per-epoch value `ortrain compare` can plot.
type compareMetric struct {
	title string
	get   func(training.EpochRecord) float64
}

// compareMetrics are the metrics by name (read-only).
var compareMetrics = map[string]compareMetric{
	"val_top1":   {"Validation top-1 (%)", func(r training.EpochRecord) float64 { return 100 * r.ValTop1 }},
	"val_top5":   {"Validation top-5 (%)", func(r training.EpochRecord) float64 { return 100 * r.ValTop5 }},
	"val_loss":   {"Validation loss", func(r training.EpochRecord) float64 { return r.ValLoss }},
	"train_loss": {"Training loss", func(r training.EpochRecord) float64 { return r.TrainLoss }},
	"lr":         {"Learning rate (end of epoch)", func(r training.EpochRecord) float64 { return r.LR }},
}

// cmdCompare prints the final and best accuracy of several runs side by side
// and, with -o, plots one metric of all of them per epoch: what TensorBoard's
// run comparison gives GluonCV and timm users. Runs given the same LABEL
// (seeds of one setting) also get a line with their means, and one curve,
// their mean per epoch.
func cmdCompare(args []string, stdout, stderr io.Writer) error {
	const synopsis = "compare [--metric val_top1] [-o curves.png] RUN... (a run folder, or LABEL=FOLDER; runs sharing a LABEL are averaged)"
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
	keys, groups, err := readRuns(fs.Args(), m)
	if err != nil {
		return err
	}
	table, curves := summarizeRuns(keys, groups)
	io.WriteString(stdout, table)
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

// comparedRun is one run folder's last and best epochs and its curve.
type comparedRun struct {
	label      string
	last, best training.EpochRecord
	xy         plotter.XYs
}

// readRuns reads the run folders (FOLDER or LABEL=FOLDER) into groups by
// label; a run without one is its own group (keyed by its folder), even if
// another folder has the same name. keys are in order of first appearance.
func readRuns(args []string, m compareMetric) (keys []string, groups map[string][]comparedRun, err error) {
	groups = map[string][]comparedRun{}
	seen := map[string]bool{}
	for _, a := range args {
		label, dir := filepath.Base(filepath.Clean(a)), a
		key := "\x00" + filepath.Clean(a)
		if l, d, ok := strings.Cut(a, "="); ok && l != "" {
			label, dir, key = l, d, l
		}
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, nil, fmt.Errorf("%s: not a run folder", dir)
		}
		if abs, err := filepath.Abs(dir); err == nil {
			if seen[abs] {
				return nil, nil, usageError{fmt.Errorf("%s: given twice", dir)}
			}
			seen[abs] = true
		}
		hist, err := training.ReadMetrics(dir)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", dir, err)
		}
		if len(hist) == 0 {
			return nil, nil, fmt.Errorf("%s: no metrics.jsonl with an epoch in it (not a run folder, or no epoch finished)", dir)
		}
		r := comparedRun{label: label, last: hist[len(hist)-1], best: hist[0], xy: make(plotter.XYs, len(hist))}
		for i, h := range hist {
			if h.ValTop1 > r.best.ValTop1 {
				r.best = h
			}
			r.xy[i].X, r.xy[i].Y = float64(h.Epoch), m.get(h)
		}
		g, ok := groups[key]
		switch {
		case !ok:
			keys = append(keys, key)
		case g[0].last.Epoch != r.last.Epoch:
			return nil, nil, usageError{fmt.Errorf("label %s: its runs end at different epochs (%d and %d); only runs of the same length are averaged", label, g[0].last.Epoch, r.last.Epoch)}
		}
		groups[key] = append(g, r)
	}
	return keys, groups, nil
}

// summarizeRuns is the table of every run (and each group's mean) and the
// curves to plot, a group's as the mean of its runs'.
func summarizeRuns(keys []string, groups map[string][]comparedRun) (string, []training.Curve) {
	var curves []training.Curve
	var table strings.Builder
	fmt.Fprintf(&table, "%-28s %6s %9s %9s %16s\n", "run", "epochs", "top-1 %", "top-5 %", "best top-1 %")
	for _, key := range keys {
		rs := groups[key]
		for _, r := range rs {
			fmt.Fprintf(&table, "%-28s %6d %9.2f %9.2f %9.2f (ep %d)\n", r.label, r.last.Epoch, 100*r.last.ValTop1, 100*r.last.ValTop5, 100*r.best.ValTop1, r.best.Epoch)
		}
		if len(rs) == 1 {
			curves = append(curves, training.Curve{Label: rs[0].label, Points: rs[0].xy})
			continue
		}
		var top1, top5, best float64
		var xys []plotter.XYs
		for _, r := range rs {
			top1 += r.last.ValTop1 / float64(len(rs))
			top5 += r.last.ValTop5 / float64(len(rs))
			best += r.best.ValTop1 / float64(len(rs))
			xys = append(xys, r.xy)
		}
		name := fmt.Sprintf("%s (mean of %d)", rs[0].label, len(rs))
		fmt.Fprintf(&table, "%-28s %6d %9.2f %9.2f %9.2f\n", name, rs[0].last.Epoch, 100*top1, 100*top5, 100*best)
		curves = append(curves, training.Curve{Label: name, Points: meanCurve(xys)})
	}
	return table.String(), curves
}

// meanCurve averages curves point by point: at each epoch (x), the mean
// over the curves that have it.
func meanCurve(curves []plotter.XYs) plotter.XYs {
	sum, n := map[float64]float64{}, map[float64]int{}
	var xs []float64
	for _, c := range curves {
		for _, p := range c {
			if n[p.X] == 0 {
				xs = append(xs, p.X)
			}
			sum[p.X] += p.Y
			n[p.X]++
		}
	}
	sort.Float64s(xs)
	out := make(plotter.XYs, len(xs))
	for i, x := range xs {
		out[i].X, out[i].Y = x, sum[x]/float64(n[x])
	}
	return out
}
