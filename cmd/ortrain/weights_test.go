package main

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ortrain/ortrain/internal/testutil"
	"github.com/ortrain/ortrain/training"
	"github.com/ortrain/ortrain/weights"
)

// torchLogits runs the PyTorch module of arch holding the weights file (a
// strict load) on x (n x 3 x size x size).
func torchLogits(t *testing.T, arch, weightsFile string, classes, n, size int, x []float32) []float32 {
	t.Helper()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "x.bin"), filepath.Join(dir, "y.bin")
	testutil.WriteFloats(t, in, x)
	testutil.RunOracle(t, "weights_torch.py", "logits", "--arch", arch, "--classes", strconv.Itoa(classes), "--weights", weightsFile,
		"--input", in, "--shape", strconv.Itoa(n)+",3,"+strconv.Itoa(size)+","+strconv.Itoa(size), "--out", out)
	return testutil.ReadFloats(t, out)
}

// torchWeights saves random, BatchNorm-perturbed weights of arch with
// torch.save (weights_torch.py save) and returns the file.
func torchWeights(t *testing.T, arch string, classes, seed int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), arch+".pth")
	testutil.RunOracle(t, "weights_torch.py", "save", "--arch", arch, "--classes", strconv.Itoa(classes), "--seed", strconv.Itoa(seed), "--out", p)
	return p
}

// ortLogits runs an ONNX model file in ONNX Runtime on x.
func ortLogits(t *testing.T, model string, n, size int, x []float32) []float32 {
	t.Helper()
	b, err := os.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	return testutil.RunFloat32(t, b, [][]int64{{int64(n), 3, int64(size), int64(size)}}, [][]float32{x})[0]
}

func randomImages(n, size int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	x := make([]float32, n*3*size*size)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

// Weights written by PyTorch (torch.save of torchvision's resnet50, and of
// the timm-named ResNet-50-D, with random values and BatchNorm statistics
// far from their init), and the same as a safetensors file written by the
// oracle from the format's definition: `ortrain import` makes models whose
// logits in ONNX Runtime equal PyTorch's on the same input to 1e-4.
func TestImportMatchesPyTorch(t *testing.T) {
	testutil.InitORT(t)
	const classes, n, size = 7, 2, 64
	x := randomImages(n, size, 5)
	for _, arch := range []string{"resnet50b", "resnet50d"} {
		dir := t.TempDir()
		pth, st := filepath.Join(dir, arch+".pth"), filepath.Join(dir, arch+".safetensors")
		testutil.RunOracle(t, "weights_torch.py", "save", "--arch", arch, "--classes", "7", "--seed", "3", "--out", pth, "--safetensors", st)
		want := torchLogits(t, arch, pth, classes, n, size, x)
		for _, src := range []string{pth, st} {
			model := filepath.Join(dir, filepath.Base(src)+".onnx")
			code, stdout, stderr := runCLI("import", src, "--model", arch, "--image-size", "64", "-o", model)
			if code != 0 || !strings.Contains(stdout, "7 classes") {
				t.Fatalf("import %s: exit %d\n%s%s", src, code, stdout, stderr)
			}
			got := ortLogits(t, model, n, size, x)
			if e := testutil.RelErr(got, want); !(e < 1e-4) {
				t.Errorf("%s from %s: logits differ from PyTorch's by %.2g relative", arch, filepath.Base(src), e)
			} else {
				t.Logf("%s from %s: %.2g relative", arch, filepath.Base(src), e)
			}
		}
	}
}

// Checkpoints as training scripts wrap them (timm's "state_dict", DDP's
// "module." names) and half-precision files with a non-contiguous tensor
// read as the plain state_dict does.
func TestReadWrappedStateDicts(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{}
	for _, wrap := range []string{"plain", "state_dict", "module", "fp16"} {
		files[wrap] = filepath.Join(dir, wrap+".pth")
		testutil.RunOracle(t, "weights_torch.py", "save", "--arch", "resnet18d", "--classes", "4", "--out", files[wrap], "--wrap", wrap)
	}
	plain, err := weights.Read(files["plain"])
	if err != nil {
		t.Fatal(err)
	}
	for wrap, f := range files {
		s, err := weights.Read(f)
		if err != nil {
			t.Fatalf("%s: %v", wrap, err)
		}
		if len(s) != len(plain) {
			t.Fatalf("%s: %d tensors, plain %d", wrap, len(s), len(plain))
		}
		tol := 0.0
		if wrap == "fp16" {
			tol = 1e-3 // float16's rounding
		}
		for name, p := range plain {
			if p.Int != nil {
				continue
			}
			if e := testutil.RelErr(s[name].Data, p.Data); e > tol {
				t.Errorf("%s: %s differs from the plain file's by %.2g", wrap, name, e)
			}
		}
	}
}

// A trained checkpoint exported as safetensors and as a .pth file loads
// into the PyTorch module with strict=True and gives the exported ONNX model's logits; the
// run started from PyTorch weights of another class count (--init), whose
// classifier it initialized anew.
func TestInitAndExportSafetensors(t *testing.T) {
	testutil.InitORT(t)
	dir := fashion(t, 40, 20)
	tmp := t.TempDir()
	pth := torchWeights(t, "resnet18d", 5, 2)
	out := filepath.Join(tmp, "run")
	code, stdout, stderr := runCLI("train", "--data", dir, "--out", out, "--model", "resnet18d", "--image-size", "32", "--epochs", "1",
		"--batch-size", "20", "--lr", "1e-5", "--init", pth, "--seed", "1")
	if code != 0 {
		t.Fatalf("train --init: exit %d\n%s%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "fc is initialized anew") {
		t.Errorf("no note of the new classifier: %q", stderr)
	}
	ck, err := training.ReadCheckpoint(filepath.Join(out, "checkpoints", "last.ckpt"))
	if err != nil {
		t.Fatal(err)
	}
	// Started from the weights: a small learning rate moved the stem a little.
	src, _ := weights.Read(pth)
	if e := testutil.RelErr(ck.Tensors["conv1.0.weight"], src["conv1.0.weight"].Data); e > 0.1 || e == 0 {
		t.Errorf("conv1.0.weight is %.2g relative from the --init weights, want small (independent draws differ by ~1.4) and non-zero", e)
	}

	last := filepath.Join(out, "checkpoints", "last.ckpt")
	st, pt, onnx := filepath.Join(tmp, "w.safetensors"), filepath.Join(tmp, "w.pth"), filepath.Join(tmp, "w.onnx")
	for _, args := range [][]string{{"--format", "safetensors", "-o", st}, {"-o", pt}, {"-o", onnx}} {
		if code, stdout, stderr := runCLI(append([]string{"export", "--checkpoint", last}, args...)...); code != 0 {
			t.Fatalf("export %v: exit %d\n%s%s", args, code, stdout, stderr)
		}
	}
	const n, size = 3, 32
	x := randomImages(n, size, 9)
	want := ortLogits(t, onnx, n, size, x)
	for _, f := range []string{st, pt} {
		got := torchLogits(t, "resnet18d", f, 10, n, size, x)
		if e := testutil.RelErr(got, want); !(e < 1e-4) {
			t.Errorf("PyTorch with the exported %s: logits %.2g relative from the ONNX model's", filepath.Base(f), e)
		}
	}
	// Our own exports read back as weights too.
	for _, f := range []string{st, pt, onnx, last} {
		if _, err := training.ReadWeights(f); err != nil {
			t.Errorf("read back %s: %v", f, err)
		}
	}
}

// Weights that are not, or not of this network: one line, exit != 0,
// nothing written (an existing output stays as it was), no run folder.
// A pickle whose __reduce__ would run a command in Python is refused by
// the class it names.
func TestWeightsBadInput(t *testing.T) {
	testutil.InitORT(t)
	tmp := t.TempDir()
	good := filepath.Join(tmp, "r18d.safetensors")
	testutil.RunOracle(t, "weights_torch.py", "save", "--arch", "resnet18d", "--classes", "10", "--out", filepath.Join(tmp, "r18d.pth"), "--safetensors", good)
	b, _ := os.ReadFile(good)
	write := func(name string, content []byte) string {
		p := filepath.Join(tmp, name)
		os.WriteFile(p, content, 0o644)
		return p
	}
	odd := func(kind string) string {
		p := filepath.Join(tmp, kind+".pth")
		testutil.RunOracle(t, "weights_torch.py", "odd", "--kind", kind, "--out", p)
		return p
	}
	cases := []struct{ file, model, want string }{
		{write("trunc.safetensors", b[:len(b)/2]), "resnet18d", "truncated"},
		{write("trunc.pth", mustRead(t, filepath.Join(tmp, "r18d.pth"))[:1000]), "resnet18d", "corrupt PyTorch zip"},
		{write("corrupt.safetensors", append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0}, b[8:]...)), "resnet18d", "corrupt safetensors header"},
		{write("empty.pth", nil), "resnet18d", "empty file"},
		{tmp, "resnet18d", "is a directory"},
		{odd("list"), "resnet18d", "holds a Python list, not a state_dict"},
		{odd("dict"), "resnet18d", "no state_dict in it"},
		{odd("evil"), "resnet18d", `refused: the pickle names the Python object "posix.system"`},
		{odd("script"), "resnet18d", "TorchScript"},
		{odd("legacy"), "resnet18d", "before torch 1.6"},
		{good, "resnet34d", "weights do not fit the model: "},
		{good, "resnet18", "unexpected (conv1.0.weight"},
	}
	outModel := write("existing.onnx", []byte("keep me"))
	data := fashion(t, 4, 2)
	for _, c := range cases {
		code, _, stderr := runCLI("import", c.file, "--model", c.model, "-o", outModel)
		wantOneLine(t, code, stderr, c.want)
		if got := mustRead(t, outModel); !bytes.Equal(got, []byte("keep me")) {
			t.Fatalf("import %s overwrote its output", c.file)
		}
		run := filepath.Join(tmp, "run-"+filepath.Base(c.file))
		code, _, stderr = runCLI("train", "--data", data, "--out", run, "--model", c.model, "--image-size", "32", "--epochs", "1",
			"--batch-size", "4", "--init", c.file)
		wantOneLine(t, code, stderr, c.want)
		if _, err := os.Stat(run); err == nil {
			t.Errorf("train --init %s left a run folder", c.file)
		}
	}

}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// --freeze-backbone trains the classifier alone: every other tensor of
// the checkpoint is bit-identical to the --init weights, and the
// classifier moved. --freeze-bn holds the running statistics alone. Both
// in the fused step and in the split one, in fp32 and fp16.
func TestFreeze(t *testing.T) {
	testutil.InitORT(t)
	dir := fashion(t, 40, 20)
	tmp := t.TempDir()
	pth := torchWeights(t, "resnet18d", 10, 4)
	src, err := weights.Read(pth)
	if err != nil {
		t.Fatal(err)
	}
	backbone := func(n string) bool { return !strings.HasPrefix(n, "fc.") }
	stats := func(n string) bool {
		return strings.HasSuffix(n, ".running_mean") || strings.HasSuffix(n, ".running_var")
	}
	for _, c := range []struct {
		flag   string
		more   []string
		frozen func(name string) bool
		times  bool // check the epochs' time split (a full step, accumulated)
	}{
		{"--freeze-backbone", nil, backbone, false},
		{"--freeze-bn", nil, stats, false},
		// The split step (gradient accumulation, as under mpirun) and
		// mixed precision hold them as well.
		{"--freeze-backbone", []string{"--accum-steps", "2", "--batch-size", "10", "--fp16"}, backbone, false},
		{"--freeze-bn", []string{"--accum-steps", "2", "--batch-size", "10"}, stats, true},
	} {
		out := filepath.Join(tmp, c.flag+strings.Join(c.more, ""))
		args := []string{"train", "--data", dir, "--out", out, "--model", "resnet18d", "--image-size", "32", "--epochs", "2",
			"--batch-size", "20", "--lr", "0.05", "--init", pth, c.flag, "--seed", "1"}
		code, stdout, stderr := runCLI(append(args, c.more...)...)
		if code != 0 {
			t.Fatalf("train %s: exit %d\n%s%s", c.flag, code, stdout, stderr)
		}
		if c.times {
			hist, err := training.ReadMetrics(out)
			if err != nil {
				t.Fatal(err)
			}
			checkEpochTimes(t, hist)
		}
		ck, err := training.ReadCheckpoint(filepath.Join(out, "checkpoints", "last.ckpt"))
		if err != nil {
			t.Fatal(err)
		}
		var frozen, moved int
		for name, want := range src.Floats() {
			got, ok := ck.Tensors[name]
			if !ok {
				t.Fatalf("%s: checkpoint lacks %s", c.flag, name)
			}
			same := bytes.Equal(floatBytes(got), floatBytes(want))
			switch {
			case c.frozen(name) && !same:
				t.Errorf("%s: frozen %s changed", c.flag, name)
			case c.frozen(name):
				frozen++
			case !same:
				moved++
			}
			if _, ok := ck.Tensors[training.MomentumName(name)]; ok && c.frozen(name) {
				t.Errorf("%s: frozen %s has a momentum buffer", c.flag, name)
			}
		}
		if frozen == 0 || moved == 0 {
			t.Errorf("%s: %d frozen tensors unchanged, %d trained ones moved", c.flag, frozen, moved)
		}
	}
}

func floatBytes(v []float32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}
