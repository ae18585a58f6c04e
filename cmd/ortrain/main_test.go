package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ortrain/ortrain/graphgen"
	"github.com/ortrain/ortrain/internal/testutil"
	"github.com/ortrain/ortrain/models"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func wantOneLine(t *testing.T, code int, stderr, want string) {
	t.Helper()
	if code == 0 {
		t.Errorf("exit 0, want an error containing %q", want)
	}
	if strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, want) {
		t.Errorf("want one line with %q, got %q", want, stderr)
	}
}

func writeModel(t *testing.T, name string, size int) string {
	t.Helper()
	m, err := models.Build(models.Options{Name: name, Classes: 10, ImageSize: size})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name+".onnx")
	if err := m.Graph.WriteFile(p, graphgen.ModelInfo{Metadata: m.Metadata()}); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBadInput(t *testing.T) {
	code, _, stderr := runCLI("frobnicate")
	wantOneLine(t, code, stderr, "unknown command")

	code, _, stderr = runCLI("info", "--model", "x.onnx", "--ort-lib", "/no/such/libonnxruntime.so.1")
	wantOneLine(t, code, stderr, "scripts/setup.sh")

	testutil.InitORT(t)
	code, _, stderr = runCLI("info", "--model", filepath.Join(t.TempDir(), "missing.onnx"))
	wantOneLine(t, code, stderr, "missing.onnx")

	junk := filepath.Join(t.TempDir(), "junk.onnx")
	os.WriteFile(junk, []byte("definitely not protobuf"), 0o644)
	code, _, stderr = runCLI("bench", "--model", junk)
	wantOneLine(t, code, stderr, "junk.onnx")

	code, _, stderr = runCLI("bench", "--model", junk, "--device", "gpu")
	wantOneLine(t, code, stderr, "unknown device")

	code, _, stderr = runCLI("bench", "--wat")
	wantOneLine(t, code, stderr, "wat")

	code, _, stderr = runCLI("bench", "--model", junk, "--threads", "-3")
	wantOneLine(t, code, stderr, "--threads")

	code, _, stderr = runCLI("bench", "--model", junk, "--opt-level", "max")
	wantOneLine(t, code, stderr, "optimization level")

	code, _, stderr = runCLI("bench", "--model", junk, "--ort-config", "session.set_denormal_as_zero")
	wantOneLine(t, code, stderr, "KEY=VALUE")

	code, _, stderr = runCLI("bench", "--model", junk, "--inter-threads", "-1")
	wantOneLine(t, code, stderr, "--inter-threads")

	code, _, stderr = runCLI("bench", "--model", junk, "--inter-threads", "2")
	wantOneLine(t, code, stderr, "needs --parallel")

	// A classifier whose fixed input is far too large to allocate.
	huge := graphgen.New("huge", graphgen.DefaultOpset)
	huge.Output(huge.Flatten(huge.GlobalAveragePool(huge.Input("images", graphgen.Float, graphgen.S(1, 3, 200000, 200000))), 1))
	hugePath := filepath.Join(t.TempDir(), "huge.onnx")
	if err := huge.WriteFile(hugePath, graphgen.ModelInfo{}); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI("bench", "--model", hugePath)
	wantOneLine(t, code, stderr, "too large")

	// A valid ONNX file that is not an image classifier.
	g := graphgen.New("add", graphgen.DefaultOpset)
	g.Output(g.Relu(g.Input("x", graphgen.Float, graphgen.S(3))))
	notCls := filepath.Join(t.TempDir(), "relu.onnx")
	if err := g.WriteFile(notCls, graphgen.ModelInfo{}); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI("bench", "--model", notCls)
	wantOneLine(t, code, stderr, "not an image classifier")
}

func TestInfoAndBench(t *testing.T) {
	testutil.InitORT(t)
	p := writeModel(t, "resnet18d", 64)
	code, stdout, stderr := runCLI("info", "--model", p)
	if code != 0 || !strings.Contains(stdout, "images float32[-1 3 64 64]") || !strings.Contains(stdout, "ortrain.architecture = resnet18d") {
		t.Fatalf("info: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI("bench", "--model", p, "--batch", "2", "--iters", "2", "--warmup", "1")
	if code != 0 || !strings.Contains(stdout, "img/s") {
		t.Fatalf("bench: exit %d\n%s%s", code, stdout, stderr)
	}
}

// runCLIGraphgen writes a model with the models package, as graphgen would.
func runCLIGraphgen(name string, args ...string) (int, string, string) {
	var classes, size int
	var out string
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i] {
		case "--classes":
			fmt.Sscan(args[i+1], &classes)
		case "--image-size":
			fmt.Sscan(args[i+1], &size)
		case "-o":
			out = args[i+1]
		}
	}
	m, err := models.Build(models.Options{Name: name, Classes: classes, ImageSize: size})
	if err != nil {
		return 1, "", err.Error()
	}
	if err := m.Graph.WriteFile(out, graphgen.ModelInfo{Metadata: m.Metadata()}); err != nil {
		return 1, "", err.Error()
	}
	return 0, "", ""
}

// TestBenchStepLockstep: with --turn-in/--turn-out, bench-step takes a
// step only after reading a byte and writes one after each step, so that
// the benchmark script can alternate it step by step with the peer.
func TestBenchStepLockstep(t *testing.T) {
	testutil.InitORT(t)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	for _, p := range []string{in, out} {
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Held open for reading and writing, as scripts/bench_train.sh does.
	fin, err := os.OpenFile(in, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fin.Close()
	fout, err := os.OpenFile(out, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fout.Close()

	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, o, e := runCLI("bench-step", "--model", "resnet18", "--image-size", "32", "--classes", "10", "--batch", "2",
			"--warmup", "1", "--iters", "1", "--turn-in", in, "--turn-out", out)
		done <- result{code, o, e}
	}()
	var b [1]byte
	for step := 1; step <= 2; step++ {
		select {
		case r := <-done:
			t.Fatalf("bench-step ended before its turn %d: exit %d\n%s%s", step, r.code, r.stdout, r.stderr)
		default:
		}
		if _, err := fin.Write([]byte{'.'}); err != nil {
			t.Fatal(err)
		}
		fout.SetReadDeadline(time.Now().Add(2 * time.Minute))
		if _, err := fout.Read(b[:]); err != nil {
			t.Fatalf("turn %d not passed back: %v", step, err)
		}
	}
	r := <-done
	if r.code != 0 || !strings.Contains(r.stdout, "1 steps:") {
		t.Fatalf("bench-step: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// Every turn given was taken, and no more turns were passed than steps.
	for _, f := range []*os.File{fin, fout} {
		f.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, err := f.Read(b[:]); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s: a byte left over (%d, %v)", f.Name(), n, err)
		}
	}

	code, _, stderr := runCLI("bench-step", "--turn-in", in)
	wantOneLine(t, code, stderr, "--turn-in and --turn-out go together")
	code, _, stderr = runCLI("bench-step", "--turn-in", filepath.Join(dir, "missing"), "--turn-out", out)
	wantOneLine(t, code, stderr, "--turn-in")
}
