package graphgen

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConvAndPoolShapes(t *testing.T) {
	g := New("t", DefaultOpset)
	x := g.Input("x", Float, Shape{Sym("N"), D(8), D(15), D(15)})
	w := g.Initializer("w", FloatTensor([]int64{16, 8, 3, 3}, make([]float32, 16*8*9)))
	y := g.Conv(x, w, nil, ConvOpts{Strides: []int64{2, 2}, Pads: []int64{1, 1, 1, 1}})
	if got := y.Shape.String(); got != "(N,16,8,8)" {
		t.Errorf("conv: %s", got)
	}
	d := g.Conv(x, w, nil, ConvOpts{Dilations: []int64{2, 2}})
	if got := d.Shape.String(); got != "(N,16,11,11)" {
		t.Errorf("dilated conv: %s", got)
	}
	// ceil_mode keeps a last partial window, except one starting in the padding.
	p := g.AveragePool(x, PoolOpts{Kernel: []int64{2, 2}, Strides: []int64{2, 2}, CeilMode: true})
	if got := p.Shape.String(); got != "(N,8,8,8)" {
		t.Errorf("ceil avgpool: %s", got)
	}
	p2 := g.MaxPool(x, PoolOpts{Kernel: []int64{3, 3}, Strides: []int64{2, 2}, Pads: []int64{1, 1, 1, 1}, CeilMode: true})
	if got := p2.Shape.String(); got != "(N,8,8,8)" {
		t.Errorf("ceil maxpool: %s", got)
	}
	m, idx := g.MaxPoolWithIndices(x, PoolOpts{Kernel: []int64{3, 3}, Strides: []int64{2, 2}})
	if m.Shape.String() != "(N,8,7,7)" || idx.DType != Int64 {
		t.Errorf("maxpool with indices: %v %v", m.Shape, idx.DType)
	}
	ct := g.ConvTranspose(y, w2(g), nil, ConvOpts{Strides: []int64{2, 2}, Pads: []int64{1, 1, 1, 1}, OutputShape: []int64{15, 15}})
	if got := ct.Shape.String(); got != "(N,8,15,15)" {
		t.Errorf("conv transpose: %s", got)
	}
	f := g.Flatten(g.GlobalAveragePool(y), 1)
	if got := f.Shape.String(); got != "(N,16)" {
		t.Errorf("flatten: %s", got)
	}
	r := g.Reshape(y, 0, -1)
	if got := r.Shape.String(); got != "(N,1024)" {
		t.Errorf("reshape: %s", got)
	}
	s := g.ReduceSum(y, []int64{0, 2, 3}, false)
	if got := s.Shape.String(); got != "(16)" {
		t.Errorf("reduce: %s", got)
	}
	// Slices with ONNX's clamping, negative steps included (x is 15 wide).
	for _, c := range []struct {
		start, end, step int64
		want             string
	}{
		{0, 100, 2, "(N,8,8,15)"}, {-1, -16, -1, "(N,8,15,15)"}, {-1, -100, -2, "(N,8,8,15)"},
		{14, 0, -1, "(N,8,14,15)"}, {100, 5, -3, "(N,8,3,15)"}, {3, 3, -1, "(N,8,0,15)"}, {-100, 5, -1, "(N,8,0,15)"},
	} {
		sl := g.SliceSteps(x, []int64{c.start}, []int64{c.end}, []int64{2}, []int64{c.step})
		if got := sl.Shape.String(); got != c.want {
			t.Errorf("slice %d:%d:%d: %s, want %s", c.start, c.end, c.step, got, c.want)
		}
	}
	if err := g.Err(); err != nil {
		t.Fatal(err)
	}
}

func w2(g *Graph) *Value {
	return g.Initializer("wt", FloatTensor([]int64{16, 8, 3, 3}, make([]float32, 16*8*9)))
}

func TestErrorsAreStickyNotPanics(t *testing.T) {
	g := New("t", DefaultOpset)
	x := g.Input("x", Float, S(2, 3, 8, 8))
	w := g.Initializer("w", FloatTensor([]int64{4, 5, 3, 3}, make([]float32, 4*5*9)))
	y := g.Conv(x, w, nil, ConvOpts{}) // 3 channels in, weight wants 5
	z := g.Relu(y)                     // must not panic
	g.Output(z)
	if g.Err() == nil || !strings.Contains(g.Err().Error(), "channels") {
		t.Fatalf("want a channel mismatch error, got %v", g.Err())
	}
	if _, err := g.Model(ModelInfo{}); err == nil {
		t.Fatal("Model succeeded on a bad graph")
	}

	g2 := New("t", DefaultOpset)
	g2.Op1("NoSuchOp", []*Value{g2.Input("x", Float, S(1))}, nil)
	if g2.Err() == nil || !strings.Contains(g2.Err().Error(), "NoSuchOp") {
		t.Fatalf("unknown operator error should name it, got %v", g2.Err())
	}

	g3 := New("t", DefaultOpset)
	a := g3.Input("a", Float, S(2, 3))
	b := g3.Input("b", Float, S(4, 3))
	g3.Add(a, b)
	if g3.Err() == nil || !strings.Contains(g3.Err().Error(), "broadcast") {
		t.Fatalf("want a broadcast error, got %v", g3.Err())
	}

	if New("t", 12).Err() == nil {
		t.Fatal("opset 12 accepted")
	}
	g4 := New("t", DefaultOpset)
	g4.Input("x", Float, S(1))
	g4.Input("x", Float, S(1))
	if g4.Err() == nil {
		t.Fatal("duplicate name accepted")
	}
}

func TestValidateCatchesForeignValues(t *testing.T) {
	g1, g2 := New("a", DefaultOpset), New("b", DefaultOpset)
	x := g1.Input("x", Float, S(2))
	y := g2.Relu(x) // x is not defined in g2
	g2.Output(y)
	if err := g2.Validate(); err == nil || !strings.Contains(err.Error(), "not defined") {
		t.Fatalf("want undefined input error, got %v", err)
	}
}

func TestHalfConversion(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := HalfToFloat32(uint16(h))
		if math.IsNaN(float64(f)) {
			if Float32ToHalf(f)&0x7c00 != 0x7c00 || Float32ToHalf(f)&0x3ff == 0 {
				t.Fatalf("NaN %#x did not stay NaN", h)
			}
			continue
		}
		if back := Float32ToHalf(f); back != uint16(h) {
			t.Fatalf("%#x -> %g -> %#x", h, f, back)
		}
	}
	cases := map[float32]uint16{
		1: 0x3c00, -2: 0xc000, 65504: 0x7bff, 65520: 0x7c00, // rounds to Inf
		1.0009765625: 0x3c01, 1.00048828125: 0x3c00, // tie to even
		5.960464477539063e-08: 0x0001, 2.9802322387695312e-08: 0x0000, // smallest subnormal, tie to even 0
		float32(math.Inf(-1)): 0xfc00,
	}
	for f, want := range cases {
		if got := Float32ToHalf(f); got != want {
			t.Errorf("Float32ToHalf(%g) = %#x, want %#x", f, got, want)
		}
	}
}

func TestWriteFileKeepsOldFileOnError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.onnx")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := New("t", DefaultOpset)
	g.Op1("NoSuchOp", nil, nil)
	if err := g.WriteFile(path, ModelInfo{}); err == nil {
		t.Fatal("WriteFile succeeded on a bad graph")
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Fatalf("old file changed to %q", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
	g2 := New("t", DefaultOpset)
	g2.Output(g2.Relu(g2.Input("x", Float, S(1))))
	if err := g2.WriteFile(path, ModelInfo{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) == "old" || len(b) == 0 {
		t.Fatal("file not replaced")
	}
}

// Symlinks are followed and kept; devices and pipes are written in place,
// never replaced by a regular file.
func TestWriteFileSpecialPaths(t *testing.T) {
	dir := t.TempDir()
	g := New("t", DefaultOpset)
	g.Output(g.Relu(g.Input("x", Float, S(1))))
	target := filepath.Join(dir, "real.onnx")
	os.WriteFile(target, []byte("old"), 0o644)
	link := filepath.Join(dir, "link.onnx")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := g.WriteFile(link, ModelInfo{}); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Lstat(link); st.Mode()&os.ModeSymlink == 0 {
		t.Error("symlink replaced by a file")
	}
	if b, _ := os.ReadFile(target); string(b) == "old" {
		t.Error("symlink target not written")
	}
	if err := g.WriteFile("/dev/null", ModelInfo{}); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat("/dev/null"); st.Mode().IsRegular() {
		t.Fatal("/dev/null became a regular file")
	}
	if err := g.WriteFile(filepath.Join(dir, "no", "such", "m.onnx"), ModelInfo{}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing directory: %v", err)
	}
	if err := g.WriteFile(dir, ModelInfo{}); err == nil {
		t.Error("writing over a directory accepted")
	}
	// A dangling link gets its target created; a replaced file keeps its mode.
	dangling := filepath.Join(dir, "dangling.onnx")
	os.Symlink("created.onnx", dangling)
	if err := g.WriteFile(dangling, ModelInfo{}); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dir, "created.onnx")); err != nil || st.Size() == 0 {
		t.Errorf("dangling link target not created: %v", err)
	}
	private := filepath.Join(dir, "private.onnx")
	os.WriteFile(private, []byte("x"), 0o600)
	if err := g.WriteFile(private, ModelInfo{}); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(private); st.Mode().Perm() != 0o600 {
		t.Errorf("mode became %v", st.Mode().Perm())
	}
}

func TestNilAndMalformedInputsAreErrors(t *testing.T) {
	for name, build := range map[string]func(g *Graph){
		"conv nil weight": func(g *Graph) { g.Conv(g.Input("x", Float, S(1, 1, 4, 4)), nil, nil, ConvOpts{}) },
		"cast nil":        func(g *Graph) { g.Cast(nil, Float16) },
		"initializer nil": func(g *Graph) { g.Initializer("w", nil) },
		"output nil":      func(g *Graph) { g.Output(nil) },
		"sum of nothing":  func(g *Graph) { g.Sum() },
		"const nil":       func(g *Graph) { g.Const(nil) },
		"pad nil":         func(g *Graph) { g.Pad(nil, []int64{0, 0}, 0) },
		"rename nil":      func(g *Graph) { g.RenameOutput(nil, "x") },
		"default nil":     func(g *Graph) { g.SetDefault(g.Input("x", Float, S(1)), nil) },
		"no outputs":      func(g *Graph) { g.Op("Relu", []*Value{g.Input("x", Float, S(1))}, nil, 0) },
		"repeated axis":   func(g *Graph) { g.Unsqueeze(g.Input("x", Float, S(2)), 0, 0) },
		"negative shape":  func(g *Graph) { g.ConstantOfShape(Float, 0, 2, -3) },
		"negative filled": func(g *Graph) { g.Const(FilledTensor(Float, []int64{-2}, 1)) },
		"batch stats nil": func(g *Graph) { g.BatchNormBatchStats(nil, nil, nil, nil, 1e-5) },
		"convT group 0": func(g *Graph) {
			x := g.Input("x", Float, S(1, 2, 4, 4))
			w := g.Initializer("w", FloatTensor([]int64{2, 2, 3, 3}, make([]float32, 36)))
			g.Op1("ConvTranspose", []*Value{x, w}, Attrs{"group": int64(0)})
		},
		"convT bad opad": func(g *Graph) {
			x := g.Input("x", Float, S(1, 2, 4, 4))
			w := g.Initializer("w", FloatTensor([]int64{2, 2, 3, 3}, make([]float32, 36)))
			g.ConvTranspose(x, w, nil, ConvOpts{Strides: []int64{2, 2}, OutputPadding: []int64{1}})
		},
	} {
		g := New("t", DefaultOpset)
		build(g)
		if g.Err() == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestGradientsErrorsAndAccumulation(t *testing.T) {
	g := New("t", DefaultOpset)
	x := g.Input("x", Float, S(3))
	y := g.Op1("Erf", []*Value{x}, nil)
	if _, err := g.Gradients(y, []*Value{x}, g.Const(FloatTensor([]int64{3}, []float32{1, 1, 1}))); err == nil || !strings.Contains(err.Error(), "no gradient rule for operator Erf") {
		t.Errorf("missing rule: %v", err)
	}
	// x used twice: d(x*x + x)/dx = 2x + 1, the contributions summed.
	g = New("t", DefaultOpset)
	x = g.Input("x", Float, S(3))
	y = g.Add(g.Mul(x, x), x)
	grads, err := g.Gradients(y, []*Value{x}, g.Const(FloatTensor([]int64{3}, []float32{1, 1, 1})))
	if err != nil {
		t.Fatal(err)
	}
	if p := grads[0].Producer; p == nil || p.Op != "Sum" || len(p.Inputs) != 3 {
		t.Errorf("gradient of a value used three times should be one Sum of three terms, got %v", p)
	}
	// A ceil_mode pool that counts padding has no rule: runtimes disagree.
	g = New("t", DefaultOpset)
	x = g.Input("x", Float, S(1, 1, 5, 5))
	y = g.AveragePool(x, PoolOpts{Kernel: []int64{2, 2}, Strides: []int64{2, 2}, Pads: []int64{0, 0, 1, 1}, CeilMode: true, CountIncludePad: true})
	if _, err := g.Gradients(y, []*Value{x}, g.Input("dy", Float, y.Shape)); err == nil || !strings.Contains(err.Error(), "count_include_pad") {
		t.Errorf("ceil_mode with count_include_pad: %v", err)
	}
}
