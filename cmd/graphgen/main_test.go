package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ortrain/ortrain/internal/testutil"
	"github.com/ortrain/ortrain/runtime"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func oneLineError(t *testing.T, stderr, want string) {
	t.Helper()
	if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "graphgen: ") || !strings.Contains(stderr, want) {
		t.Errorf("want one line with %q, got %q", want, stderr)
	}
}

func TestBadInput(t *testing.T) {
	code, _, stderr := runCLI("resnet51")
	if code == 0 {
		t.Error("unknown model accepted")
	}
	oneLineError(t, stderr, "known: resnet18")

	code, _, stderr = runCLI("resnet50", "--bogus")
	if code == 0 {
		t.Error("unknown flag accepted")
	}
	oneLineError(t, stderr, "bogus")

	code, _, stderr = runCLI("resnet18", "--batch", "zero")
	if code == 0 {
		t.Error("bad batch accepted")
	}
	oneLineError(t, stderr, "--batch")

	code, _, stderr = runCLI("resnet18", "--opset", "9")
	if code == 0 {
		t.Error("opset 9 accepted")
	}
	oneLineError(t, stderr, "opset")

	dir := t.TempDir()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	code, _, stderr = runCLI("resnet18", "-o", filepath.Join(dir, "sub", "m.onnx"))
	if code == 0 {
		t.Error("unwritable output accepted")
	}
	oneLineError(t, stderr, "m.onnx")
}

func TestWritesModel(t *testing.T) {
	code, stdout, stderr := runCLI("resnet18d", "--classes", "10", "--image-size", "64", "--batch", "2", "--summary")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	// resnet18 (11,689,512) with a 10-class head (-513,000 + 5,130) and the deep stem (+19,232).
	if len(stdout) < 1e6 || !strings.Contains(stderr, "11,200,874") {
		t.Errorf("model %d bytes, summary %q", len(stdout), stderr)
	}
	path := filepath.Join(t.TempDir(), "m.onnx")
	if code, _, stderr := runCLI("resnet18d", "--classes", "10", "--image-size", "64", "--batch", "2", "-o", path); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	b, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(b, []byte(stdout)) {
		t.Errorf("-o wrote %d bytes, stdout had %d (same seed must give the same bytes)", len(b), len(stdout))
	}
	code, stdout, _ = runCLI("--list")
	if code != 0 || strings.Count(stdout, "\n") != 20 || !strings.Contains(stdout, "resnet152d") {
		t.Errorf("--list: %q", stdout)
	}
}

// The train-step graph written with --init passes the ONNX checker (full
// check, opset 17) and runs in ONNX Runtime from the file alone: parameters
// and statistics come from the defaults, momentum buffers are fed as zeros.
func TestTrainStepFile(t *testing.T) {
	testutil.InitORT(t)
	path := filepath.Join(t.TempDir(), "step.onnx")
	if code, _, stderr := runCLI("train-step", "resnet18d", "--batch", "2", "--classes", "5", "--image-size", "64", "--init", "-o", path); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if out := testutil.RunOracle(t, "onnx_check.py", path); !strings.Contains(out, "ok ") {
		t.Errorf("checker: %s", out)
	}
	sess, err := runtime.NewSessionFromFile(path, nil, []string{"loss", "all_finite"}, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()
	var in []*runtime.Tensor
	for _, info := range sess.Inputs {
		n := int64(1)
		for _, d := range info.Shape {
			n *= d
		}
		data := make([]float32, n)
		switch info.Name {
		case "images":
			for i := range data {
				data[i] = float32(i%7) - 3
			}
		case "targets":
			for i := range data {
				data[i] = 0.2
			}
		case "lr":
			data[0] = 0.1
		case "momentum":
			data[0] = 0.9
		default:
			if !strings.HasPrefix(info.Name, "momentum_buffer/") && info.Name != "weight_decay" {
				t.Fatalf("input %s has no default", info.Name)
			}
		}
		x, err := runtime.NewFloat32(info.Shape, data)
		if err != nil {
			t.Fatal(err)
		}
		defer x.Destroy()
		in = append(in, x)
	}
	out, err := sess.Run(in, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l := out[0].Float32s()[0]; !(l > 0 && l < 100) || !out[1].Bools()[0] {
		t.Errorf("loss %g finite %v", l, out[1].Bools()[0])
	}
	code, _, stderr := runCLI("train-step", "resnet18", "--classes", "5")
	if code != 2 || !strings.Contains(stderr, "--batch") {
		t.Errorf("missing --batch: exit %d %q", code, stderr)
	}
}
