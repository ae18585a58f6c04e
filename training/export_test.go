package training

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ortrain/ortrain/internal/testutil"
	"github.com/ortrain/ortrain/models"
	"github.com/ortrain/ortrain/runtime"
	"github.com/ortrain/ortrain/training/data"
)

// A trained state exported as an inference model gives PyTorch's eval-mode
// logits for the same state (loaded by name), and the BatchNorm-folded export
// gives the same logits with fewer nodes; both pass the ONNX checker.
func TestExport(t *testing.T) {
	testutil.InitORT(t)
	mo := models.Options{Name: "resnet18d", Classes: 10, ImageSize: 64, Batch: 4, Seed: 9}
	st := newStepper(t, StepOptions{Model: mo, NoBiasDecay: true})
	h := Hyper{LR: 0.05, Momentum: 0.9, WeightDecay: 1e-4}
	for s := uint64(0); s < 3; s++ {
		fillBatch(st, s, 10)
		if _, err := st.Run(h); err != nil {
			t.Fatal(err)
		}
	}
	state := map[string][]float32{}
	for _, n := range st.Step.StateNames() {
		state[n] = append([]float32{}, st.State(n)...)
	}
	dir := t.TempDir()
	x := make([]float32, 2*3*64*64)
	for i := range x {
		x[i] = float32(i%251)/125 - 1
	}
	var logits [][]float32
	names := []string{"plain", "folded"}
	classNames := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	for i, fold := range []bool{false, true} {
		emo := mo
		emo.Batch = 0
		m, info, err := Export(state, ExportOptions{Model: emo, FoldBN: fold, ClassNames: classNames})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, names[i]+".onnx")
		if err := m.Graph.WriteFile(p, info); err != nil {
			t.Fatal(err)
		}
		sess, err := runtime.NewSessionFromFile(p, nil, nil, runtime.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got := sess.Metadata[models.MetaClasses]; got != `["a","b","c","d","e","f","g","h","i","j"]` {
			t.Errorf("class names metadata %q", got)
		}
		in, _ := runtime.NewFloat32([]int64{2, 3, 64, 64}, x)
		out, err := sess.Run([]*runtime.Tensor{in}, nil)
		if err != nil {
			t.Fatal(err)
		}
		logits = append(logits, append([]float32{}, out[0].Float32s()...))
		out[0].Destroy()
		in.Destroy()
		sess.Destroy()
		bn := 0
		for _, n := range m.Graph.Nodes {
			if n.Op == "BatchNormalization" {
				bn++
			}
		}
		if fold != (bn == 0) {
			t.Errorf("fold=%v: %d BatchNormalization nodes", fold, bn)
		}
	}
	if e := testutil.RelErr(logits[1], logits[0]); e > 1e-5 {
		t.Errorf("folded export differs from plain by %.3g", e)
	}
	xp, yp := filepath.Join(dir, "x.bin"), filepath.Join(dir, "y.bin")
	testutil.WriteFloats(t, xp, x)
	testutil.RunOracle(t, "resnet_torch.py", "--model", filepath.Join(dir, "plain.onnx"), "--arch", "resnet18d",
		"--classes", "10", "--input", xp, "--shape", "2,3,64,64", "--out", yp, "--double")
	if e := testutil.RelErr(logits[0], testutil.ReadFloats(t, yp)); e > 1e-4 {
		t.Errorf("exported model differs from PyTorch eval mode by %.3g", e)
	}
	out := testutil.RunOracle(t, "onnx_check.py", filepath.Join(dir, "plain.onnx"), filepath.Join(dir, "folded.onnx"))
	if strings.Count(out, "ok ") != 2 {
		t.Errorf("checker: %s", out)
	}

	delete(state, "layer2.1.bn1.running_var")
	state["fc.bias"] = state["fc.bias"][:3]
	_, _, err := Export(state, ExportOptions{Model: mo})
	if err == nil || !strings.Contains(err.Error(), "layer2.1.bn1.running_var") || !strings.Contains(err.Error(), "fc.bias (has 3 values") {
		t.Errorf("incomplete state: %v", err)
	}
}

// The model's input contract and the pipeline's normalization are written
// in two packages that must not import each other; they must agree.
func TestNormalizationAgrees(t *testing.T) {
	if models.Mean != data.Mean || models.Std != data.Std {
		t.Fatalf("models %v/%v, data %v/%v", models.Mean, models.Std, data.Mean, data.Std)
	}
	if models.CropPct != data.DefaultCropPct || models.Interpolation != string(data.Bilinear) {
		t.Fatalf("validation defaults: models crop %g %s, data %g %s", models.CropPct, models.Interpolation, data.DefaultCropPct, data.Bilinear)
	}
}
