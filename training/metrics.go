package training

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/ortrain/ortrain/internal/atomicfile"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// EpochRecord is one line of metrics.jsonl and metrics.csv.
type EpochRecord struct {
	Epoch      int     `json:"epoch"`
	Step       int     `json:"step"`
	LR         float64 `json:"lr"`
	TrainLoss  float64 `json:"train_loss"`
	TrainHard  float64 `json:"train_loss_hard,omitempty"`
	TrainSoft  float64 `json:"train_loss_soft,omitempty"`
	TrainTop1  float64 `json:"train_top1"` // on the augmented batches (not meaningful with mixup)
	ValTop1    float64 `json:"val_top1"`
	ValTop5    float64 `json:"val_top5"`
	ValLoss    float64 `json:"val_loss"`
	ImagesPerS float64 `json:"train_img_per_s"`
	TeacherMS  float64 `json:"teacher_ms_per_batch,omitempty"`
	// AllReduceMS is the milliseconds per step spent summing gradients
	// over the processes of a data-parallel job.
	AllReduceMS float64 `json:"allreduce_ms_per_step,omitempty"`
	Skipped     int     `json:"skipped_steps"`
	Unreadable  int     `json:"unreadable_images"`
	LossScale   float64 `json:"loss_scale,omitempty"`
	Seconds     float64 `json:"epoch_seconds"`
	// Where the epoch's seconds went: waiting for the next prepared batch
	// (decoding and augmenting that fell behind the steps, and with a
	// teacher but no --teacher-overlap its forward), in the steps (the
	// mean of both over the processes of a data-parallel job), and
	// evaluating (this process's); the rest is checkpoints, metrics and
	// plots.
	DataWaitSeconds float64 `json:"data_wait_seconds"`
	StepSeconds     float64 `json:"step_seconds"`
	EvalSeconds     float64 `json:"eval_seconds"`
}

// ReadMetrics reads metrics.jsonl of a run folder (empty when absent).
func ReadMetrics(dir string) ([]EpochRecord, error) {
	b, err := os.ReadFile(filepath.Join(dir, "metrics.jsonl"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []EpochRecord
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var r EpochRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("metrics.jsonl: %w", err)
		}
		out = append(out, r)
	}
	return out, nil
}

// WriteMetrics rewrites metrics.jsonl, metrics.csv and the plots (loss.png,
// accuracy.png, lr.png) from the history.
func WriteMetrics(dir string, hist []EpochRecord) error {
	var jl, csv bytes.Buffer
	csv.WriteString("epoch,step,lr,train_loss,train_loss_hard,train_loss_soft,train_top1,val_top1,val_top5,val_loss,train_img_per_s,teacher_ms_per_batch,skipped_steps,unreadable_images,loss_scale,epoch_seconds,data_wait_seconds,step_seconds,eval_seconds\n")
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }
	for _, r := range hist {
		b, _ := json.Marshal(r)
		jl.Write(b)
		jl.WriteByte('\n')
		fmt.Fprintf(&csv, "%d,%d,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%d,%d,%s,%s,%s,%s,%s\n", r.Epoch, r.Step, f(r.LR), f(r.TrainLoss), f(r.TrainHard), f(r.TrainSoft),
			f(r.TrainTop1), f(r.ValTop1), f(r.ValTop5), f(r.ValLoss), f(r.ImagesPerS), f(r.TeacherMS), r.Skipped, r.Unreadable, f(r.LossScale), f(r.Seconds),
			f(r.DataWaitSeconds), f(r.StepSeconds), f(r.EvalSeconds))
	}
	if err := atomicfile.Write(filepath.Join(dir, "metrics.jsonl"), jl.Bytes()); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, "metrics.csv"), csv.Bytes()); err != nil {
		return err
	}
	series := func(get func(EpochRecord) float64) plotter.XYs {
		xy := make(plotter.XYs, len(hist))
		for i, r := range hist {
			xy[i].X, xy[i].Y = float64(r.Epoch), get(r)
		}
		return xy
	}
	plots := []struct {
		file, title, y string
		legendTop      bool // loss and lr fall: their upper right is free; accuracy rises
		lines          []Curve
	}{
		{"loss.png", "Loss", "loss", true, []Curve{
			{"train", series(func(r EpochRecord) float64 { return r.TrainLoss })},
			{"val", series(func(r EpochRecord) float64 { return r.ValLoss })}}},
		{"accuracy.png", "Validation accuracy", "accuracy (%)", false, []Curve{
			{"top-1", series(func(r EpochRecord) float64 { return 100 * r.ValTop1 })},
			{"top-5", series(func(r EpochRecord) float64 { return 100 * r.ValTop5 })}}},
		{"lr.png", "Learning rate (end of epoch)", "lr", true, []Curve{
			{"lr", series(func(r EpochRecord) float64 { return r.LR })}}},
	}
	for _, pl := range plots {
		if err := WritePlot(filepath.Join(dir, pl.file), pl.title, pl.y, pl.legendTop, pl.lines); err != nil {
			return err
		}
	}
	return nil
}

// Curve is one line of a plot: a label and its points (x = epoch).
type Curve struct {
	Label  string
	Points plotter.XYs
}

// legendInside is the most curves whose legend goes inside the plot; with
// more, it would cover curves, so it gets a panel to the right.
const legendInside = 6

// WritePlot draws the curves into a PNG file (written atomically), one
// style per curve, with a legend at the top right (legendTop) or the bottom
// right, or beside the plot when there are more than legendInside curves.
func WritePlot(path, title, ylabel string, legendTop bool, curves []Curve) error {
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = title, "epoch", ylabel
	p.Legend.Top = legendTop
	legend, beside := &p.Legend, len(curves) > legendInside
	if beside {
		l := plot.NewLegend()
		l.Top, l.Left = true, true
		legend = &l
	}
	p.Add(plotter.NewGrid())
	dashes := [][]vg.Length{nil, {vg.Points(4), vg.Points(2)}, {vg.Points(1), vg.Points(2)}, {vg.Points(6), vg.Points(2), vg.Points(1), vg.Points(2)}}
	for i, c := range curves {
		l, pts, err := plotter.NewLinePoints(c.Points)
		if err != nil {
			return fmt.Errorf("plot %s: %w", path, err)
		}
		nc := len(plotutil.DefaultColors)
		l.Color = plotutil.Color(i % nc)
		pts.Color = l.Color
		pts.Shape = plotutil.Shape(i)
		l.Dashes = dashes[(i/nc)%len(dashes)]
		p.Add(l, pts)
		legend.Add(c.Label, l, pts)
	}
	width, panel := 6*vg.Inch, vg.Length(0)
	if beside {
		for _, c := range curves {
			panel = max(panel, legend.TextStyle.Rectangle(c.Label).Max.X)
		}
		panel += legend.ThumbnailWidth + 3*legend.TextStyle.Rectangle("  ").Max.X
		width += panel
	}
	img, err := draw.NewFormattedCanvas(width, 4*vg.Inch, "png")
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	dc := draw.New(img)
	p.Draw(draw.Crop(dc, 0, -panel, 0, 0))
	if beside {
		// Top-aligned with the plot's title.
		legend.Draw(draw.Crop(dc, width-panel, 0, 0, -legend.TextStyle.Rectangle(" ").Max.Y))
	}
	var b bytes.Buffer
	if _, err := img.WriteTo(&b); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return atomicfile.Write(path, b.Bytes())
}
