package distill

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ortrain/ortrain/graphgen"
	"github.com/ortrain/ortrain/internal/testutil"
	"github.com/ortrain/ortrain/models"
	"github.com/ortrain/ortrain/runtime"
)

func writeModel(t *testing.T, o models.Options) string {
	t.Helper()
	m, err := models.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), o.Name+".onnx")
	if err := m.Graph.WriteFile(p, graphgen.ModelInfo{Metadata: m.Metadata()}); err != nil {
		t.Fatal(err)
	}
	return p
}

// A teacher that does not fit the student is refused on load, in one line
// that names what differs.
func TestTeacherChecks(t *testing.T) {
	testutil.InitORT(t)
	want := Expect{Classes: 5, Batch: 4, ImageSize: 32}
	good := writeModel(t, models.Options{Name: "resnet18", Classes: 5, ImageSize: 32})
	tc, err := Load(good, want, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tc.Close()
	type refusal struct{ path, msg string }
	cases := map[string]refusal{
		"classes":     {writeModel(t, models.Options{Name: "resnet18", Classes: 7, ImageSize: 32}), "has 7 classes, the student 5"},
		"size":        {writeModel(t, models.Options{Name: "resnet18", Classes: 5, ImageSize: 48}), "the student's images are 32x32"},
		"fixed batch": {writeModel(t, models.Options{Name: "resnet18", Classes: 5, ImageSize: 32, Batch: 8}), "batches of 8"},
	}
	g := graphgen.New("flat", graphgen.DefaultOpset)
	x := g.Input("x", graphgen.Float, graphgen.Shape{graphgen.Sym("N"), graphgen.D(3 * 32 * 32)})
	w := g.Initializer("w", graphgen.FloatTensor([]int64{5, 3 * 32 * 32}, make([]float32, 5*3*32*32)))
	g.Output(g.Gemm(x, w, nil, false, true))
	flat := filepath.Join(t.TempDir(), "flat.onnx")
	if err := g.WriteFile(flat, graphgen.ModelInfo{}); err != nil {
		t.Fatal(err)
	}
	cases["rank"] = refusal{flat, "has rank 2"}
	// Symbolic H and W, but weights for 48x48 only: refused by a trial forward.
	g2 := graphgen.New("flex", graphgen.DefaultOpset)
	xf := g2.Input("x", graphgen.Float, graphgen.Shape{graphgen.Sym("N"), graphgen.D(3), graphgen.Sym("H"), graphgen.Sym("W")})
	wf := g2.Initializer("w", graphgen.FloatTensor([]int64{3 * 48 * 48, 5}, make([]float32, 3*48*48*5)))
	g2.Output(g2.MatMul(g2.Flatten(xf, 1), wf))
	flex := filepath.Join(t.TempDir(), "flex.onnx")
	if err := g2.WriteFile(flex, graphgen.ModelInfo{}); err != nil {
		t.Fatal(err)
	}
	cases["runs at another size only"] = refusal{flex, "does not run on the student's batch (4,3,32,32)"}
	// Two outputs: which one holds the logits is not ours to guess.
	m, err := models.Build(models.Options{Name: "resnet18", Classes: 5, ImageSize: 32})
	if err != nil {
		t.Fatal(err)
	}
	m.Graph.Output(m.Graph.Relu(m.Graph.Outputs[0]))
	two := filepath.Join(t.TempDir(), "two.onnx")
	if err := m.Graph.WriteFile(two, graphgen.ModelInfo{}); err != nil {
		t.Fatal(err)
	}
	cases["two outputs"] = refusal{two, "has 2 outputs"}
	for name, c := range cases {
		_, err := Load(c.path, want, runtime.Options{})
		if err == nil || !strings.Contains(err.Error(), c.msg) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: want a one-line error with %q, got %v", name, c.msg, err)
		}
	}
	if _, err := Load(filepath.Join(t.TempDir(), "none.onnx"), want, runtime.Options{}); err == nil {
		t.Error("missing teacher loaded")
	}
}

// The teacher gives the logits its model computes, for any ONNX classifier:
// one of ours, and torchvision's resnet18 exported by torch.onnx.
func TestTeacherLogits(t *testing.T) {
	testutil.InitORT(t)
	foreign := filepath.Join(t.TempDir(), "tv.onnx")
	testutil.RunOracle(t, "export_torchvision.py", "resnet18", "5", "32", foreign)
	ours := writeModel(t, models.Options{Name: "resnet18d", Classes: 5, ImageSize: 32, Seed: 2})
	const n = 4
	images := make([]float32, n*3*32*32)
	for i := range images {
		images[i] = float32(i%29)/29 - 0.5
	}
	for _, p := range []string{ours, foreign} {
		tc, err := Load(p, Expect{Classes: 5, Batch: n, ImageSize: 32}, runtime.Options{})
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		dst := make([]float32, n*5)
		if err := tc.Logits(images, n, dst); err != nil {
			t.Fatal(err)
		}
		// Again with the same buffers (tensors reused), same result.
		again := make([]float32, n*5)
		copy(again, dst)
		if err := tc.Logits(images, n, dst); err != nil {
			t.Fatal(err)
		}
		sess, err := runtime.NewSessionFromFile(p, nil, nil, runtime.Options{})
		if err != nil {
			t.Fatal(err)
		}
		in, _ := runtime.NewFloat32([]int64{n, 3, 32, 32}, images)
		outs, err := sess.Run([]*runtime.Tensor{in}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if e := testutil.RelErr(dst, outs[0].Float32s()); e != 0 || testutil.RelErr(again, dst) != 0 {
			t.Errorf("%s: teacher logits differ from the model's (%g)", filepath.Base(p), e)
		}
		outs[0].Destroy()
		in.Destroy()
		sess.Destroy()
		tc.Close()
	}
}

// A teacher whose metadata states another normalization than the
// student's gets the student's images renormalized: the same classifier
// written for mean and std 127.5 (an affine map before it) gives the
// original's logits, and says so in its Note.
func TestTeacherRenormalizes(t *testing.T) {
	testutil.InitORT(t)
	const k, size = 4, 8
	mean2 := [3]float32{127.5, 127.5, 127.5}
	write := func(name string, renorm bool, meta [][2]string) string {
		g := graphgen.New(name, graphgen.DefaultOpset)
		x := g.Input("images", graphgen.Float, graphgen.Shape{graphgen.Sym("N"), graphgen.D(3), graphgen.D(size), graphgen.D(size)})
		if renorm { // x_seed = x*(127.5/seedStd) + (127.5-seedMean)/seedStd
			a, b := make([]float32, 3), make([]float32, 3)
			for c := 0; c < 3; c++ {
				a[c] = mean2[c] / models.Std[c]
				b[c] = (mean2[c] - models.Mean[c]) / models.Std[c]
			}
			x = g.Add(g.Mul(x, g.Const(graphgen.FloatTensor([]int64{1, 3, 1, 1}, a))), g.Const(graphgen.FloatTensor([]int64{1, 3, 1, 1}, b)))
		}
		w := make([]float32, k*3)
		for i := range w {
			w[i] = float32(i%5) - 2
		}
		g.Output(g.Gemm(g.Flatten(g.GlobalAveragePool(x), 1), g.Const(graphgen.FloatTensor([]int64{k, 3}, w)), nil, false, true))
		p := filepath.Join(t.TempDir(), name+".onnx")
		if err := g.WriteFile(p, graphgen.ModelInfo{Metadata: meta}); err != nil {
			t.Fatal(err)
		}
		return p
	}
	other := models.Preprocessing{Mean: mean2, Std: mean2, CropPct: 0.875, Interpolation: "bilinear"}
	e := Expect{Classes: k, Batch: 2, ImageSize: size}
	images := make([]float32, 2*3*size*size)
	for i := range images {
		images[i] = float32(i%7)*0.3 - 1
	}
	logits := func(path string) ([]float32, string) {
		tc, err := Load(path, e, runtime.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		out := make([]float32, 2*k)
		if err := tc.Logits(images, 2, out); err != nil {
			t.Fatal(err)
		}
		return out, tc.Note
	}
	want, note := logits(write("base", false, models.DefaultPreprocessing().Metadata()))
	if note != "" {
		t.Errorf("teacher with the student's normalization: note %q", note)
	}
	got, note := logits(write("renorm", true, other.Metadata()))
	if e := testutil.RelErr(got, want); e > 1e-5 || !strings.Contains(note, "mean 127.5,127.5,127.5, std 127.5,127.5,127.5") {
		t.Errorf("renormalized teacher: logits %v, want %v (%.3g); note %q", got, want, e, note)
	}
	if bare, _ := logits(write("bare", true, nil)); testutil.RelErr(bare, want) < 1e-2 {
		t.Errorf("without metadata the teacher cannot be renormalized, yet its logits %v equal %v", bare, want)
	}
}
