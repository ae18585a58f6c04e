package training

import (
	"bytes"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"gonum.org/v1/plot/plotter"
)

// TestWritePlotLegendPanel: up to legendInside curves keep the legend inside
// a 6-inch plot; more get a panel beside it, so the image is wider.
func TestWritePlotLegendPanel(t *testing.T) {
	dir := t.TempDir()
	width := func(n int) int {
		var curves []Curve
		for i := range n {
			curves = append(curves, Curve{Label: fmt.Sprintf("run %d (mean of 2)", i), Points: plotter.XYs{{X: 1, Y: float64(i)}, {X: 2, Y: float64(2 * i)}}})
		}
		path := filepath.Join(dir, fmt.Sprintf("%d.png", n))
		if err := WritePlot(path, "title", "y", false, curves); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := png.DecodeConfig(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%d curves: %v", n, err)
		}
		return cfg.Width
	}
	in, out := width(legendInside), width(legendInside+1)
	if in != 6*96 && in != 6*72 {
		t.Errorf("%d curves: width %d px, want 6 inches", legendInside, in)
	}
	if out <= in {
		t.Errorf("%d curves: width %d px, want more than %d (legend panel)", legendInside+1, out, in)
	}
}
