package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/plot/plotter"

	"github.com/ortrain/ortrain/training"
)

func TestCompare(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for run, top1 := range map[string][]float64{a: {0.2, 0.5, 0.4}, b: {0.3, 0.35}} {
		if err := os.MkdirAll(run, 0o755); err != nil {
			t.Fatal(err)
		}
		var hist []training.EpochRecord
		for i, v := range top1 {
			hist = append(hist, training.EpochRecord{Epoch: i + 1, ValTop1: v, ValTop5: v + 0.3, TrainLoss: 2 - v, LR: 0.1})
		}
		if err := training.WriteMetrics(run, hist); err != nil {
			t.Fatal(err)
		}
	}
	png := filepath.Join(dir, "curves.png")
	code, out, errOut := runCLI("compare", "-o", png, "first="+a, b)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("want a header and 2 rows, got %q", out)
	}
	// Final 40.00, best 50.00 at epoch 2 for the first; the label replaces the folder name.
	if f := strings.Fields(lines[1]); f[0] != "first" || f[1] != "3" || f[2] != "40.00" || f[3] != "70.00" || f[4] != "50.00" || f[6] != "2)" {
		t.Errorf("row 1: %q", lines[1])
	}
	if f := strings.Fields(lines[2]); f[0] != "b" || f[2] != "35.00" || f[4] != "35.00" {
		t.Errorf("row 2: %q", lines[2])
	}
	if p, err := os.ReadFile(png); err != nil || !bytes.HasPrefix(p, []byte("\x89PNG")) {
		t.Errorf("plot: %v", err)
	}

	// Runs sharing a label: their rows, then a row of means, before the
	// next group; one mean curve. Unlabelled runs are never grouped, even
	// with the same folder name.
	a2 := filepath.Join(dir, "again", "a")
	if err := os.MkdirAll(a2, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := training.WriteMetrics(a2, []training.EpochRecord{{Epoch: 1, ValTop1: 0.1, ValTop5: 0.5}, {Epoch: 2, ValTop1: 0.3, ValTop5: 0.6},
		{Epoch: 3, ValTop1: 0.2, ValTop5: 0.8}}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI("compare", "-o", png, "s="+a, b, "s="+a2)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[3], "s (mean of 2)") || !strings.HasPrefix(lines[4], "b ") {
		t.Fatalf("want a header, s's 2 rows and their mean, then b, got %q", out)
	}
	code, out, errOut = runCLI("compare", a, a2)
	if code != 0 || strings.Contains(out, "mean") {
		t.Fatalf("two unlabelled runs named a: exit %d, %q %s", code, out, errOut)
	}
	// Final top-1 40 and 20, top-5 70 and 80, best 50 and 30.
	if f := strings.Fields(lines[3]); f[4] != "3" || f[5] != "30.00" || f[6] != "75.00" || f[7] != "40.00" {
		t.Errorf("mean row: %q", lines[3])
	}
	code, _, errOut = runCLI("compare", "s="+a, "s="+b)
	wantOneLine(t, code, errOut, "different epochs")
	code, _, errOut = runCLI("compare", a, "x="+a)
	wantOneLine(t, code, errOut, "given twice")
	if got := meanCurve([]plotter.XYs{{{X: 1, Y: 20}, {X: 2, Y: 50}, {X: 3, Y: 40}}, {{X: 1, Y: 30}, {X: 2, Y: 35}}}); len(got) != 3 ||
		got[0].Y != 25 || got[1].Y != 42.5 || got[2].Y != 40 {
		t.Errorf("mean curve %v", got)
	}

	code, _, errOut = runCLI("compare", a, dir)
	wantOneLine(t, code, errOut, "no metrics.jsonl")
	code, _, errOut = runCLI("compare", filepath.Join(dir, "missing"))
	wantOneLine(t, code, errOut, "not a run folder")
	code, _, errOut = runCLI("compare", "--metric", "speed", a)
	wantOneLine(t, code, errOut, "unknown --metric")
	if code != 2 {
		t.Errorf("unknown metric: exit %d, want 2", code)
	}
	code, _, errOut = runCLI("compare")
	wantOneLine(t, code, errOut, "no run folders")
}
