package models_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	onnx "github.com/owulveryck/onnx-go"
	"github.com/owulveryck/onnx-go/backend/x/gorgonnx"
	"gorgonia.org/tensor"

	"github.com/ortrain/ortrain/graphgen"
	"github.com/ortrain/ortrain/internal/testutil"
	"github.com/ortrain/ortrain/models"
	"github.com/ortrain/ortrain/runtime"
)

func randInput(seed uint64, n int) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

// runORT runs a model on one input and returns the logits and their shape.
func runORT(t *testing.T, model []byte, shape []int64, x []float32) ([]float32, []int64) {
	t.Helper()
	sess, err := runtime.NewSession(model, nil, nil, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()
	in, err := runtime.NewFloat32(shape, x)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Destroy()
	out, err := sess.Run([]*runtime.Tensor{in}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer out[0].Destroy()
	return append([]float32{}, out[0].Float32s()...), out[0].Shape()
}

func marshal(t *testing.T, m *models.Model) []byte {
	t.Helper()
	b, err := m.Graph.Marshal(graphgen.ModelInfo{Doc: m.Graph.Doc, Metadata: m.Metadata()})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Every model at opset 17 passes onnx.checker full_check and runs in ONNX
// Runtime at batch 2 with finite logits of shape (2, classes).
func TestEveryModelChecksAndRuns(t *testing.T) {
	testutil.InitORT(t)
	dir := t.TempDir()
	var paths []string
	x := randInput(1, 2*3*224*224)
	for _, name := range models.Names() {
		m, err := models.Build(models.Options{Name: name, Seed: 7})
		if err != nil {
			t.Fatal(err)
		}
		b := marshal(t, m)
		p := filepath.Join(dir, name+".onnx")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
		y, shape := runORT(t, b, []int64{2, 3, 224, 224}, x)
		if fmt.Sprint(shape) != "[2 1000]" {
			t.Errorf("%s: logits shape %v, want [2 1000]", name, shape)
		}
		if !testutil.AllFinite(y) {
			t.Errorf("%s: logits not finite", name)
		}
	}
	out := testutil.RunOracle(t, "onnx_check.py", paths...)
	if got := strings.Count(out, "ok "); got != len(paths) {
		t.Errorf("checker passed %d of %d models:\n%s", got, len(paths), out)
	}
}

// Newer opsets change the form of reductions; a model at the newest opset we
// offer must still load and agree with opset 17.
func TestNewestOpsetRuns(t *testing.T) {
	testutil.InitORT(t)
	x := randInput(2, 2*3*64*64)
	var ref []float32
	for _, opset := range []int64{graphgen.DefaultOpset, graphgen.MaxOpset} {
		m, err := models.Build(models.Options{Name: "resnet18d", Classes: 10, ImageSize: 64, Opset: opset})
		if err != nil {
			t.Fatal(err)
		}
		y, _ := runORT(t, marshal(t, m), []int64{2, 3, 64, 64}, x)
		if ref == nil {
			ref = y
		} else if e := testutil.RelErr(y, ref); e > 1e-6 {
			t.Errorf("opset %d differs from opset 17 by %g", opset, e)
		}
	}
}

// randomizeBN gives every BatchNorm tensor a distinct random value, so that a
// swapped or misnamed statistic changes the logits.
func randomizeBN(m *models.Model, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 3))
	for _, p := range m.Params {
		d := p.Tensor.Float32
		for i := range d {
			switch p.Kind {
			case models.BNGamma:
				d[i] = float32(0.5 + r.Float64())
			case models.BNBeta, models.BNMean, models.FCBias:
				d[i] = float32(0.2 * r.NormFloat64())
			case models.BNVar:
				d[i] = float32(0.5 + r.Float64())
			}
		}
	}
}

// Same weights (travelling by name), same input: our logits equal PyTorch's
// (torchvision's resnet50 for resnet50/resnet50b, a timm-style module for the
// others) to 1e-4 relative.
func TestLogitsMatchPyTorch(t *testing.T) {
	testutil.InitORT(t)
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		size int
	}{{"resnet50", 224}, {"resnet50b", 224}, {"resnet50d", 224}, {"resnet18c", 96}, {"resnet34d", 97}} {
		m, err := models.Build(models.Options{Name: c.name, Classes: 10, ImageSize: c.size, Seed: 11})
		if err != nil {
			t.Fatal(err)
		}
		randomizeBN(m, 5)
		b := marshal(t, m)
		mp := filepath.Join(dir, c.name+".onnx")
		if err := os.WriteFile(mp, b, 0o644); err != nil {
			t.Fatal(err)
		}
		s := int64(c.size)
		shape := []int64{2, 3, s, s}
		x := randInput(9, int(2*3*s*s))
		got, _ := runORT(t, b, shape, x)
		in, out := filepath.Join(dir, "x.bin"), filepath.Join(dir, "y.bin")
		testutil.WriteFloats(t, in, x)
		testutil.RunOracle(t, "resnet_torch.py", "--model", mp, "--arch", c.name, "--classes", "10",
			"--input", in, "--shape", fmt.Sprintf("2,3,%d,%d", s, s), "--out", out, "--double")
		want := testutil.ReadFloats(t, out)
		if e := testutil.RelErr(got, want); e > 1e-4 {
			t.Errorf("%s at %d: logits differ from PyTorch by %.3g relative (> 1e-4)", c.name, c.size, e)
		} else {
			t.Logf("%s at %d: relative error %.2g", c.name, c.size, e)
		}
	}
}

// A second runtime, onnx-go (Gorgonia backend), runs our resnet50 and agrees
// with ONNX Runtime.
func TestOnnxGoAgrees(t *testing.T) {
	testutil.InitORT(t)
	m, err := models.Build(models.Options{Name: "resnet50", Classes: 10, ImageSize: 64, Batch: 1, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	randomizeBN(m, 4)
	b := marshal(t, m)
	x := randInput(5, 3*64*64)
	want, _ := runORT(t, b, []int64{1, 3, 64, 64}, x)

	backend := gorgonnx.NewGraph()
	model := onnx.NewModel(backend)
	if err := model.UnmarshalBinary(b); err != nil {
		t.Fatalf("onnx-go: %v", err)
	}
	if err := model.SetInput(0, tensor.New(tensor.WithShape(1, 3, 64, 64), tensor.WithBacking(append([]float32{}, x...)))); err != nil {
		t.Fatal(err)
	}
	if err := backend.Run(); err != nil {
		t.Fatalf("onnx-go run: %v", err)
	}
	outs, err := model.GetOutputTensors()
	if err != nil {
		t.Fatal(err)
	}
	got, ok := outs[0].Data().([]float32)
	if !ok {
		t.Fatalf("onnx-go output is %T", outs[0].Data())
	}
	if e := testutil.RelErr(got, want); e > 1e-4 {
		t.Errorf("onnx-go and ONNX Runtime differ by %.3g relative (> 1e-4)", e)
	} else {
		t.Logf("onnx-go vs ONNX Runtime: relative error %.2g", e)
	}
}
