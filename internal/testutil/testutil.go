// Package testutil holds helpers shared by the project's tests.
//
// They load ONNX Runtime, call the PyTorch oracle scripts, read and write
// raw float32 files and measure errors. Tests only; no tool imports it.
package testutil

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"

	"github.com/ortrain/ortrain/runtime"
)

// Python is Debian's interpreter, which has python3-torch and python3-onnx.
const Python = "/usr/bin/python3"

// RepoRoot is the module root (where go.mod is).
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := goruntime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the repository")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// InitORT loads ONNX Runtime or fails the test, naming the set-up command.
func InitORT(t testing.TB) {
	t.Helper()
	if err := runtime.Init(""); err != nil {
		t.Fatalf("%v", err)
	}
}

// RunOracle runs scripts/oracle/<script> with Debian's Python and returns its
// standard output; the test fails with the script's error output otherwise.
func RunOracle(t testing.TB, script string, args ...string) string {
	t.Helper()
	path := filepath.Join(RepoRoot(t), "scripts", "oracle", script)
	cmd := exec.Command(Python, append([]string{path}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("oracle %s %s: %v\n%s\n(the oracle needs python3-torch, python3-torchvision and python3-onnx: run scripts/setup.sh)",
			script, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// WriteFloats writes float32 values little-endian.
func WriteFloats(t testing.TB, path string, data []float32) {
	t.Helper()
	buf := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

// MPIRunArgs are the arguments of mpirun for n processes on this machine,
// followed by cmd (as root it needs --allow-run-as-root; two processes on
// two cores may need --oversubscribe). The test fails without mpirun.
func MPIRunArgs(t testing.TB, n int, cmd ...string) []string {
	t.Helper()
	if _, err := exec.LookPath("mpirun"); err != nil {
		t.Fatalf("mpirun not found (scripts/setup.sh installs openmpi-bin): %v", err)
	}
	args := []string{"-np", fmt.Sprint(n), "--oversubscribe"}
	if os.Geteuid() == 0 {
		args = append(args, "--allow-run-as-root")
	}
	return append(args, cmd...)
}

// ReadFloats reads little-endian float32 values.
func ReadFloats(t testing.TB, path string) []float32 {
	t.Helper()
	buf, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, len(buf)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*i:]))
	}
	return out
}

// ReadFloat64s reads little-endian float64 values.
func ReadFloat64s(t testing.TB, path string) []float64 {
	t.Helper()
	buf, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, len(buf)/8)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(buf[8*i:]))
	}
	return out
}

// RelErr is max|got-want| / max|want| (the infinity norms), the measure the
// acceptance tests use for "equal to x relative".
func RelErr(got, want []float32) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var diff, ref float64
	for i := range got {
		diff = math.Max(diff, math.Abs(float64(got[i])-float64(want[i])))
		ref = math.Max(ref, math.Abs(float64(want[i])))
		if math.IsNaN(float64(got[i])) != math.IsNaN(float64(want[i])) {
			return math.Inf(1)
		}
	}
	if ref == 0 {
		return diff
	}
	return diff / ref
}

// AllFinite reports whether no value is NaN or infinite.
func AllFinite(xs []float32) bool {
	for _, x := range xs {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return false
		}
	}
	return true
}

// L2RelErr is ||got-want||_2 / ||want||_2.
func L2RelErr(got, want []float32) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var d, r float64
	for i := range got {
		x := float64(got[i]) - float64(want[i])
		d += x * x
		r += float64(want[i]) * float64(want[i])
	}
	if r == 0 {
		return math.Sqrt(d)
	}
	return math.Sqrt(d / r)
}

// RunFloat32 runs a serialized model once in ONNX Runtime (one thread) on
// float32 inputs of the given shapes and returns every output as float32
// values, failing the test on any error.
func RunFloat32(t testing.TB, model []byte, shapes [][]int64, feeds [][]float32) [][]float32 {
	t.Helper()
	res, err := TryRunFloat32(model, shapes, feeds)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TryRunFloat32 is RunFloat32 returning the error, for tests where a
// failing run is one of the expected outcomes.
func TryRunFloat32(model []byte, shapes [][]int64, feeds [][]float32) ([][]float32, error) {
	sess, err := runtime.NewSession(model, nil, nil, runtime.Options{IntraOpThreads: 1})
	if err != nil {
		return nil, err
	}
	defer sess.Destroy()
	var tensors []*runtime.Tensor
	for i, s := range shapes {
		tt, err := runtime.NewFloat32(s, feeds[i])
		if err != nil {
			return nil, err
		}
		defer tt.Destroy()
		tensors = append(tensors, tt)
	}
	outs, err := sess.Run(tensors, nil)
	if err != nil {
		return nil, err
	}
	res := make([][]float32, len(outs))
	for i, o := range outs {
		res[i] = append([]float32{}, o.Float32s()...)
		o.Destroy()
	}
	return res, nil
}
