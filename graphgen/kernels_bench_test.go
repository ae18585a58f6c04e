package graphgen

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/ortrain/ortrain/internal/testutil"
	"github.com/ortrain/ortrain/runtime"
)

// These benchmarks time, in ONNX Runtime on 2 threads, the alternative ways
// a gradient rule can be written in standard operators, at the shapes of
// ResNet-50's training step (batch 16 at 224). They are how the rules in
// gradrules.go were chosen (docs/benchmarks.md):
//
//	go test ./graphgen -run '^$' -bench Kernel -benchtime 20x

// benchGraph times one run of the graph that build makes from inputs of the
// given shapes.
func benchGraph(b *testing.B, shapes [][]int64, build func(g *Graph, in []*Value) []*Value) {
	testutil.InitORT(b)
	g := New("bench", DefaultOpset)
	var ins []*Value
	var tensors []*runtime.Tensor
	r := rand.New(rand.NewPCG(1, 2))
	for i, s := range shapes {
		ins = append(ins, g.Input(fmt.Sprintf("x%d", i), Float, S(s...)))
		data := make([]float32, S(s...).NumElements())
		for j := range data {
			data[j] = float32(r.NormFloat64())
		}
		t, err := runtime.NewFloat32(s, data)
		if err != nil {
			b.Fatal(err)
		}
		defer t.Destroy()
		tensors = append(tensors, t)
	}
	g.Output(build(g, ins)...)
	model, err := g.Marshal(ModelInfo{})
	if err != nil {
		b.Fatal(err)
	}
	sess, err := runtime.NewSession(model, nil, nil, runtime.Options{IntraOpThreads: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer sess.Destroy()
	run := func() {
		outs, err := sess.Run(tensors, nil)
		if err != nil {
			b.Fatal(err)
		}
		for _, o := range outs {
			o.Destroy()
		}
	}
	run()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		run()
	}
}

// resnet50Planes are the bottleneck widths and planes of ResNet-50's four
// stages at 224.
var resnet50Planes = []struct{ c, hw int64 }{{64, 56}, {128, 28}, {256, 14}, {512, 7}}

// BenchmarkKernelConvInputGrad: the input gradient of a 3x3 stride-1
// convolution as ConvTranspose, or as a Conv with the flipped, transposed
// kernel.
func BenchmarkKernelConvInputGrad(b *testing.B) {
	for _, p := range resnet50Planes {
		shapes := [][]int64{{16, p.c, p.hw, p.hw}, {p.c, p.c, 3, 3}}
		o := ConvOpts{Pads: []int64{1, 1, 1, 1}}
		b.Run(fmt.Sprintf("ConvTranspose/%dx%d", p.c, p.hw), func(b *testing.B) {
			benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
				return []*Value{g.ConvTranspose(in[0], in[1], nil, o)}
			})
		})
		b.Run(fmt.Sprintf("FlippedConv/%dx%d", p.c, p.hw), func(b *testing.B) {
			benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
				return []*Value{g.Conv(in[0], flipKernel(g, in[1]), nil, o)}
			})
		})
	}
}

// BenchmarkKernelChannelDot: sum(dY*x) per channel (BatchNorm's gamma
// gradient) as Mul and ReduceSum, or as a batched MatMul of rows.
func BenchmarkKernelChannelDot(b *testing.B) {
	for _, p := range []struct{ c, hw int64 }{{64, 112}, {256, 56}, {128, 28}, {1024, 14}, {512, 7}} {
		shapes := [][]int64{{16, p.c, p.hw, p.hw}, {16, p.c, p.hw, p.hw}}
		b.Run(fmt.Sprintf("MulReduceSum/%dx%d", p.c, p.hw), func(b *testing.B) {
			benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
				return []*Value{g.ReduceSum(g.Mul(in[0], in[1]), []int64{0, 2, 3}, false)}
			})
		})
		b.Run(fmt.Sprintf("MatMul/%dx%d", p.c, p.hw), func(b *testing.B) {
			benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
				return []*Value{channelDot(g, in[0], in[1])}
			})
		})
	}
}

// BenchmarkKernelReluGrad: dY where y > 0, as Where of Greater or as Mul by
// the cast mask.
func BenchmarkKernelReluGrad(b *testing.B) {
	shapes := [][]int64{{16, 256, 56, 56}, {16, 256, 56, 56}}
	b.Run("Where", func(b *testing.B) {
		benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
			zero := g.Scalar(Float, 0)
			return []*Value{g.Where(g.Greater(in[0], zero), in[1], zero)}
		})
	})
	b.Run("MulMask", func(b *testing.B) {
		benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
			return []*Value{g.Mul(in[1], g.Cast(g.Greater(in[0], g.Scalar(Float, 0)), Float))}
		})
	})
}

// BenchmarkKernelWeightGrad3x3: the weight gradient of a 3x3 stride-1
// convolution from shifted copies of dY (the rule) or from shifted slices of
// the padded input.
func BenchmarkKernelWeightGrad3x3(b *testing.B) {
	sp := spatial{kernel: []int64{3, 3}, strides: []int64{1, 1}, dilations: []int64{1, 1}, padsBegin: []int64{1, 1}, padsEnd: []int64{1, 1}}
	for _, p := range resnet50Planes {
		shapes := [][]int64{{16, p.c, p.hw, p.hw}, {16, p.c, p.hw, p.hw}}
		for _, shift := range []bool{true, false} {
			name := map[bool]string{true: "ShiftedDY", false: "InputSlices"}[shift]
			b.Run(fmt.Sprintf("%s/%dx%d", name, p.c, p.hw), func(b *testing.B) {
				benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
					return []*Value{convWeightGradTaps(g, in[0], in[1], []int64{3, 3}, sp, shift)}
				})
			})
		}
	}
}

// channelDot is sum(a*b) over every axis but the channels (axis 1) of two
// static NC... tensors of one shape, the alternative that lost to Mul and
// ReduceSum: one batched MatMul of (1,HW) rows by (HW,1) columns per image
// and channel, then a sum over the images, which reads each tensor once and
// writes nothing of its size.
func channelDot(g *Graph, a, b *Value) *Value {
	n, ch := a.Shape[0].Size, a.Shape[1].Size
	rest := a.Shape.NumElements() / (n * ch)
	dot := g.MatMul(g.Reshape(a, n, ch, 1, rest), g.Reshape(b, n, ch, rest, 1)) // (N, C, 1, 1)
	return g.ReduceSum(dot, []int64{0, 2, 3}, false)
}
