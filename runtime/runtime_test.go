package runtime_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ortrain/ortrain/graphgen"
	"github.com/ortrain/ortrain/internal/testutil"
	"github.com/ortrain/ortrain/runtime"
)

func TestLibraryPathErrors(t *testing.T) {
	_, err := runtime.LibraryPath("/no/such/libonnxruntime.so.1")
	if err == nil || !strings.Contains(err.Error(), runtime.SetupCommand) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("want a one-line error naming %s, got %v", runtime.SetupCommand, err)
	}
	t.Setenv(runtime.LibraryEnv, "/no/env/lib.so")
	if _, err := runtime.LibraryPath(""); err == nil || !strings.Contains(err.Error(), "$"+runtime.LibraryEnv) {
		t.Fatalf("want the env var named, got %v", err)
	}
	if _, err := runtime.LibraryPath(t.TempDir()); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Fatalf("want a directory error, got %v", err)
	}
}

func TestParseProvider(t *testing.T) {
	for in, want := range map[string]string{"cpu": "cpu", "CUDA": "cuda:0", "cuda:1": "cuda:1", "tensorrt:2": "tensorrt:2"} {
		p, err := runtime.ParseProvider(in)
		if err != nil || p.String() != want {
			t.Errorf("%s: %v %v", in, p, err)
		}
	}
	for _, bad := range []string{"gpu", "cuda:x", "cpu:1", "cuda:-1", ""} {
		if _, err := runtime.ParseProvider(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// castModel converts float32 to float16 and back: (x) -> (half(x), float(half(x))).
func castModel(t *testing.T) []byte {
	g := graphgen.New("cast", graphgen.DefaultOpset)
	x := g.Input("x", graphgen.Float, graphgen.S(2, 3))
	h := g.Cast(x, graphgen.Float16)
	f := g.Cast(h, graphgen.Float)
	g.RenameOutput(h, "half")
	g.RenameOutput(f, "back")
	g.Output(h, f)
	b, err := g.Marshal(graphgen.ModelInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// castIO makes castModel's input from xs (2x3) and a float16 tensor for
// its first output, destroyed when the test ends.
func castIO(t *testing.T, xs []float32) (x, half *runtime.Tensor) {
	t.Helper()
	x, err := runtime.NewFloat32([]int64{2, 3}, xs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(x.Destroy)
	half, err = runtime.NewFloat16([]int64{2, 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(half.Destroy)
	return x, half
}

func TestFloat16OutputsPreallocated(t *testing.T) {
	testutil.InitORT(t)
	sess, err := runtime.NewSession(castModel(t), nil, nil, runtime.Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()
	if sess.Outputs[0].DType != runtime.Float16 || sess.Outputs[0].Name != "half" {
		t.Fatalf("outputs %v", sess.Outputs)
	}
	xs := []float32{1, -2.5, 65504, 1e-3, 70000, 0.1}
	x, h := castIO(t, xs)
	if _, err := sess.Run([]*runtime.Tensor{x}, nil); err == nil || !strings.Contains(err.Error(), "pre-allocated") {
		t.Fatalf("an fp16 output ONNX Runtime allocates must be refused, got %v", err)
	}
	outs, err := sess.Run([]*runtime.Tensor{x}, []*runtime.Tensor{h, nil})
	if err != nil {
		t.Fatal(err)
	}
	defer outs[1].Destroy()
	for i, v := range xs {
		want := graphgen.Float32ToHalf(v)
		if got := h.Float16s()[i]; got != want {
			t.Errorf("half(%g) = %#x, want %#x", v, got, want)
		}
		if got := outs[1].Float32s()[i]; got != graphgen.HalfToFloat32(want) {
			t.Errorf("float(half(%g)) = %g", v, got)
		}
	}
}

func TestUnavailableProvider(t *testing.T) {
	testutil.InitORT(t)
	model := castModel(t)
	_, err := runtime.NewSession(model, nil, nil, runtime.Options{Provider: runtime.Provider{Kind: "cuda"}})
	if err == nil {
		t.Skip("this machine has CUDA")
	}
	if !errors.Is(err, runtime.ErrProviderUnavailable) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("want a one-line provider error, got %v", err)
	}
	s, err := runtime.NewSession(model, nil, nil, runtime.Options{Provider: runtime.Provider{Kind: "cuda"}, AllowCPUFallback: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	if s.Provider.Kind != "cpu" {
		t.Fatalf("fallback provider %v", s.Provider)
	}
}

func TestBadModelAndIO(t *testing.T) {
	testutil.InitORT(t)
	if _, err := runtime.NewSession([]byte("not a model"), nil, nil, runtime.Options{}); err == nil {
		t.Fatal("garbage accepted as a model")
	}
	if _, err := runtime.NewSession(castModel(t), []string{"nope"}, nil, runtime.Options{}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("unknown input name: %v", err)
	}
	s, err := runtime.NewSession(castModel(t), nil, []string{"back"}, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	if _, err := s.Run(nil, nil); err == nil {
		t.Fatal("run without inputs accepted")
	}
	if _, err := runtime.NewFloat32([]int64{2, 2}, []float32{1}); err == nil {
		t.Fatal("short data accepted")
	}
}

// TestSessionSettings: a session in the parallel mode, with a config
// entry, runs and computes what the sequential one does (whether nodes
// really ran in parallel is not observable here), and a config entry that
// ONNX Runtime acts on (load the bytes as ORT format) changes what happens,
// so Config reaches it.
func TestSessionSettings(t *testing.T) {
	testutil.InitORT(t)
	xs := []float32{1, -2.5, 3, 1e-3, 7, 0.1}
	run := func(o runtime.Options) ([]float32, error) {
		sess, err := runtime.NewSession(castModel(t), nil, nil, o)
		if err != nil {
			return nil, err
		}
		defer sess.Destroy()
		x, h := castIO(t, xs)
		outs, err := sess.Run([]*runtime.Tensor{x}, []*runtime.Tensor{h, nil})
		if err != nil {
			return nil, err
		}
		defer outs[1].Destroy()
		return append([]float32{}, outs[1].Float32s()...), nil
	}
	seq, err := run(runtime.Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	par, err := run(runtime.Options{IntraOpThreads: 1, InterOpThreads: 2, Parallel: true,
		Config: [][2]string{{"session.set_denormal_as_zero", "1"}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range seq {
		if seq[i] != par[i] {
			t.Errorf("output %d: sequential %g, parallel %g", i, seq[i], par[i])
		}
	}
	if _, err := run(runtime.Options{Config: [][2]string{{"session.load_model_format", "ORT"}}}); err == nil {
		t.Error("an ONNX model loaded as ORT format must fail: the config entry was not applied")
	}
}
