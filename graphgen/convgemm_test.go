package graphgen

import (
	"fmt"
	"testing"

	"github.com/ortrain/ortrain/internal/testutil"
)

// TestConvsAsGemmKeepsResults: a convolution and its input, weight and bias
// gradients, computed in ONNX Runtime as a Conv with the step's gradient
// rules and after ConvsAsGemm, agree to float32 rounding, for the windows
// the one-hot column matrix must place right: strides, asymmetric pads,
// dilations, rectangular kernels and planes, the pointwise cases with and
// without G. The Conv's output is read by two nodes, and the rewrite must
// leave both reading the new value.
func TestConvsAsGemmKeepsResults(t *testing.T) {
	testutil.InitORT(t)
	type convCase struct {
		ci, co, h, w, kh, kw int64
		o                    ConvOpts
		bias                 bool
	}
	for _, c := range []convCase{
		{ci: 6, co: 5, h: 2, w: 2, kh: 3, kw: 3, o: ConvOpts{Pads: []int64{1, 1, 1, 1}}},
		{ci: 4, co: 8, h: 4, w: 4, kh: 3, kw: 3, o: ConvOpts{Pads: []int64{1, 1, 1, 1}, Strides: []int64{2, 2}}},
		{ci: 3, co: 4, h: 5, w: 6, kh: 3, kw: 3, o: ConvOpts{Pads: []int64{0, 1, 2, 0}, Strides: []int64{2, 1}}, bias: true},
		{ci: 3, co: 4, h: 6, w: 5, kh: 2, kw: 3, o: ConvOpts{Pads: []int64{2, 2, 2, 2}, Dilations: []int64{2, 1}}},
		{ci: 7, co: 3, h: 3, w: 2, kh: 1, kw: 1, o: ConvOpts{}, bias: true},
		{ci: 7, co: 3, h: 4, w: 5, kh: 1, kw: 1, o: ConvOpts{Strides: []int64{2, 2}}},
	} {
		name := fmt.Sprintf("%dx%d_%dx%d_%v", c.kh, c.kw, c.h, c.w, c.o)
		t.Run(name, func(t *testing.T) {
			shapes := [][]int64{{3, c.ci, c.h, c.w}, {c.co, c.ci, c.kh, c.kw}, {c.co}}
			feeds := offsetNormalFeeds(shapes, 5)
			run := func(gemm bool) [][]float32 {
				g := New("gemm", DefaultOpset)
				in := letteredInputs(g, shapes)
				var b *Value
				if c.bias {
					b = in[2]
				}
				y := g.Conv(in[0], in[1], b, c.o)
				// A weighted sum of y and of its square: dY is not a
				// constant, so every position's gradient is tested.
				loss := g.Add(g.ReduceSum(g.Mul(y, y), nil, false), g.ReduceSum(g.Relu(y), nil, false))
				if gemm {
					k, err := g.convsAsGemm(func(convArgs) bool { return true })
					if err != nil || k != 1 {
						t.Fatalf("convsAsGemm rewrote %d, %v; want 1", k, err)
					}
				}
				grads, err := g.Gradients(loss, in, g.Scalar(Float, 1))
				if err != nil {
					t.Fatal(err)
				}
				g.Output(g.Identity(y), g.Reshape(loss, 1))
				g.Output(grads...)
				return validateAndRun(t, g, shapes, feeds)
			}
			want, got := run(false), run(true)
			for i, name := range []string{"y", "loss", "dx", "dW", "dbias"} {
				if e := testutil.RelErr(got[i], want[i]); e > 1e-5 {
					t.Errorf("%s differs after ConvsAsGemm by %.3g relative", name, e)
				}
			}
		})
	}
}

// TestConvsAsGemmChoice: ConvsAsGemm takes the small planes its thresholds
// name and leaves the rest, float16 and grouped convolutions as Convs.
func TestConvsAsGemmChoice(t *testing.T) {
	type choice struct {
		dt                  DType
		ci, co, hw, k, s, g int64
		want                bool
	}
	for _, c := range []choice{
		{Float, 64, 256, 2, 3, 1, 1, true},
		{Float, 64, 256, 4, 3, 1, 1, true},
		{Float, 64, 256, 5, 3, 1, 1, false}, // 3x3 stride 1 above 4x4
		{Float, 64, 256, 2, 1, 1, 1, true},
		{Float, 64, 256, 4, 1, 1, 1, false},
		{Float, 64, 256, 14, 3, 2, 1, true},  // strided to 7x7
		{Float, 64, 256, 16, 3, 2, 1, false}, // strided to 8x8
		{Float, 64, 256, 14, 1, 2, 1, true},  // strided 1x1 (not subsampled) to 7x7
		{Float, 64, 128, 14, 3, 2, 1, false}, // 196 input positions, 128 output channels: G costs more
		{Float16, 64, 256, 2, 3, 1, 1, false},
		{Float, 64, 256, 2, 3, 1, 4, false},
	} {
		g := New("choice", DefaultOpset)
		x := g.Input("x", c.dt, S(8, c.ci, c.hw, c.hw))
		w := g.Input("w", c.dt, S(c.co, c.ci/c.g, c.k, c.k))
		p := (c.k - 1) / 2
		g.Output(g.Conv(x, w, nil, ConvOpts{Pads: []int64{p, p, p, p}, Strides: []int64{c.s, c.s}, Group: c.g}))
		k, err := g.ConvsAsGemm()
		if err != nil {
			t.Fatal(err)
		}
		if (k == 1) != c.want {
			t.Errorf("%+v: rewrote %d, want %v", c, k, c.want)
		}
	}
}
