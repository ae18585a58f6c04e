package graphgen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ortrain/ortrain/internal/testutil"
	"github.com/ortrain/ortrain/runtime"
)

// These benchmarks time, in ONNX Runtime on 2 threads, the alternative ways
// a gradient rule can be written in standard operators, at the shapes of
// ResNet-50's training step (batch 16 at 224). They are how the rules in
// gradrules.go were chosen (docs/results/bench/history.md):
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

// BenchmarkKernelFlip: flipping a 3x3 kernel for the stride-1 input
// gradient, as a Slice with steps -1 or as flipKernel's MatMul by the tap
// reversal.
func BenchmarkKernelFlip(b *testing.B) {
	for _, c := range []int64{64, 512} {
		shapes := [][]int64{{c, c, 3, 3}}
		b.Run(fmt.Sprintf("Slice/%d", c), func(b *testing.B) {
			benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
				wt := g.Transpose(in[0], 1, 0, 2, 3)
				return []*Value{g.SliceSteps(wt, []int64{2, 2}, []int64{-4, -4}, []int64{2, 3}, []int64{-1, -1})}
			})
		})
		b.Run(fmt.Sprintf("MatMul/%d", c), func(b *testing.B) {
			benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
				return []*Value{flipKernel(g, in[0])}
			})
		})
	}
}

// BenchmarkKernelChannelDot: sum(dY*x) per channel (BatchNorm's gamma
// gradient) as Mul and ReduceSum, as a batched MatMul of rows, or as a
// grouped Conv with one group per image and channel (channelDot's choice
// from 28x28).
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
				return []*Value{channelDotMatMul(g, in[0], in[1])}
			})
		})
		b.Run(fmt.Sprintf("GroupConv/%dx%d", p.c, p.hw), func(b *testing.B) {
			benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
				n, ch := in[0].Shape[0].Size, in[0].Shape[1].Size
				a := g.Reshape(in[0], 1, n*ch, p.hw, p.hw)
				w := g.Reshape(in[1], n*ch, 1, p.hw, p.hw)
				dot := g.Conv(a, w, nil, ConvOpts{Group: n * ch})
				return []*Value{g.ReduceSum(g.Reshape(dot, n, ch), []int64{0}, false)}
			})
		})
	}
}

// BenchmarkKernelChannelSum: sum(x) per channel as ReduceSum (the rule) or a
// MatMul by ones, and sum(x^2) as ReduceSumSquare or a grouped Conv of x
// with itself (channelDot's choice from 28x28).
func BenchmarkKernelChannelSum(b *testing.B) {
	for _, p := range []struct{ c, hw int64 }{{64, 112}, {256, 56}, {128, 28}, {1024, 14}, {512, 7}} {
		shapes := [][]int64{{16, p.c, p.hw, p.hw}}
		b.Run(fmt.Sprintf("ReduceSum/%dx%d", p.c, p.hw), func(b *testing.B) {
			benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
				return []*Value{g.ReduceSum(g.ReduceSum(in[0], []int64{2, 3}, true), []int64{0, 2, 3}, false)}
			})
		})
		b.Run(fmt.Sprintf("MatMulOnes/%dx%d", p.c, p.hw), func(b *testing.B) {
			benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
				n, ch := in[0].Shape[0].Size, in[0].Shape[1].Size
				ones := g.Const(FilledTensor(Float, []int64{p.hw * p.hw, 1}, 1))
				s := g.MatMul(g.Reshape(in[0], n*ch, p.hw*p.hw), ones)
				return []*Value{g.ReduceSum(g.Reshape(s, n, ch), []int64{0}, false)}
			})
		})
		b.Run(fmt.Sprintf("ReduceSumSquare/%dx%d", p.c, p.hw), func(b *testing.B) {
			benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
				return []*Value{g.ReduceSum(g.ReduceSumSquare(in[0], []int64{2, 3}, true), []int64{0, 2, 3}, false)}
			})
		})
		b.Run(fmt.Sprintf("GroupConvSquare/%dx%d", p.c, p.hw), func(b *testing.B) {
			benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
				n, ch := in[0].Shape[0].Size, in[0].Shape[1].Size
				a := g.Reshape(in[0], 1, n*ch, p.hw, p.hw)
				w := g.Reshape(in[0], n*ch, 1, p.hw, p.hw)
				dot := g.Conv(a, w, nil, ConvOpts{Group: n * ch})
				return []*Value{g.ReduceSum(g.Reshape(dot, n, ch), []int64{0}, false)}
			})
		})
	}
}

// BenchmarkKernelAffine: a per-channel affine map (BatchNorm with its
// statistics folded in) then ReLU, as BatchNormalization and Relu or as a
// depthwise 1x1 Conv that ONNX Runtime fuses with the Relu; and the
// backward's k1*d + affine(xc), as Mul, BatchNormalization and Add or as Mul
// and a depthwise Conv that ONNX Runtime fuses with the Add.
func BenchmarkKernelAffine(b *testing.B) {
	for _, p := range []struct{ c, hw int64 }{{64, 112}, {256, 56}, {128, 28}, {1024, 14}, {512, 7}} {
		shapes := [][]int64{{16, p.c, p.hw, p.hw}, {16, p.c, p.hw, p.hw}, {p.c}, {p.c}}
		bn := func(g *Graph, in []*Value) *Value {
			zero := g.Const(FilledTensor(Float, []int64{p.c}, 0))
			one := g.Const(FilledTensor(Float, []int64{p.c}, 1))
			return g.BatchNorm(in[0], in[2], in[3], zero, one, 0)
		}
		dw := func(g *Graph, in []*Value) *Value {
			return g.Conv(in[0], g.Reshape(in[2], p.c, 1, 1, 1), in[3], ConvOpts{Group: p.c})
		}
		b.Run(fmt.Sprintf("BN/%dx%d", p.c, p.hw), func(b *testing.B) {
			benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value { return []*Value{bn(g, in)} })
		})
		b.Run(fmt.Sprintf("Depthwise/%dx%d", p.c, p.hw), func(b *testing.B) {
			benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value { return []*Value{dw(g, in)} })
		})
		b.Run(fmt.Sprintf("BNRelu/%dx%d", p.c, p.hw), func(b *testing.B) {
			benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value { return []*Value{g.Relu(bn(g, in))} })
		})
		b.Run(fmt.Sprintf("DepthwiseRelu/%dx%d", p.c, p.hw), func(b *testing.B) {
			benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value { return []*Value{g.Relu(dw(g, in))} })
		})
		b.Run(fmt.Sprintf("BNAddRelu/%dx%d", p.c, p.hw), func(b *testing.B) {
			benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value { return []*Value{g.Relu(g.Add(bn(g, in), in[1]))} })
		})
		b.Run(fmt.Sprintf("DepthwiseAddRelu/%dx%d", p.c, p.hw), func(b *testing.B) {
			benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value { return []*Value{g.Relu(g.Add(dw(g, in), in[1]))} })
		})
		k1 := func(g *Graph, in []*Value) *Value { return g.Mul(in[1], g.Reshape(in[3], 1, p.c, 1, 1)) }
		b.Run(fmt.Sprintf("MulBNAdd/%dx%d", p.c, p.hw), func(b *testing.B) {
			benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value { return []*Value{g.Add(k1(g, in), bn(g, in))} })
		})
		b.Run(fmt.Sprintf("MulDepthwiseAdd/%dx%d", p.c, p.hw), func(b *testing.B) {
			benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value { return []*Value{g.Add(dw(g, in), k1(g, in))} })
		})
	}
}

// BenchmarkKernelReluGrad: dY where y > 0, as Where (with a broadcast or a
// full zero, or the condition negated), as Mul by Sign(y) (y >= 0 here) or
// as Mul by the cast mask (the rule).
func BenchmarkKernelReluGrad(b *testing.B) {
	shapes := [][]int64{{16, 256, 56, 56}, {16, 256, 56, 56}}
	b.Run("Where", func(b *testing.B) {
		benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
			zero := g.Scalar(Float, 0)
			return []*Value{g.Where(g.Greater(in[0], zero), in[1], zero)}
		})
	})
	b.Run("WhereFullZeros", func(b *testing.B) {
		benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
			zero := g.ConstantOfShape(Float, 0, in[0].Shape.Ints()...)
			return []*Value{g.Where(g.Greater(in[0], g.Scalar(Float, 0)), in[1], zero)}
		})
	})
	b.Run("WhereSwapped", func(b *testing.B) {
		benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
			zero := g.Scalar(Float, 0)
			return []*Value{g.Where(g.Not(g.Greater(in[0], zero)), zero, in[1])}
		})
	})
	b.Run("MulSign", func(b *testing.B) {
		benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
			return []*Value{g.Mul(in[1], g.Sign(in[0]))}
		})
	})
	b.Run("MulHardSigmoid", func(b *testing.B) {
		benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
			return []*Value{g.Mul(in[1], g.HardSigmoid(in[0], math.MaxFloat32, 0))}
		})
	})
	b.Run("MulMask", func(b *testing.B) {
		benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
			return []*Value{g.Mul(in[1], g.Cast(g.Greater(in[0], g.Scalar(Float, 0)), Float))}
		})
	})
}

// BenchmarkKernelWeightGrad3x3: the weight gradient of a 3x3 stride-1
// convolution from shifted copies of dY (the rule, shiftRows and
// shiftColumns), from shifted slices of the padded input, or from the
// column matrix a grouped one-hot Conv writes (the rule for small planes
// that are not "same"), at ResNet-50's planes at 224 (batch 16) and
// ResNet-18's at 64 (batch 64).
func BenchmarkKernelWeightGrad3x3(b *testing.B) {
	sp := spatial{kernel: []int64{3, 3}, strides: []int64{1, 1}, dilations: []int64{1, 1}, padsBegin: []int64{1, 1}, padsEnd: []int64{1, 1}}
	type plane struct{ n, c, hw int64 }
	var planes []plane
	for _, p := range resnet50Planes {
		planes = append(planes, plane{16, p.c, p.hw})
	}
	planes = append(planes, plane{64, 64, 16}, plane{64, 128, 8}, plane{64, 256, 4}, plane{64, 512, 2})
	for _, p := range planes {
		shapes := [][]int64{{p.n, p.c, p.hw, p.hw}, {p.n, p.c, p.hw, p.hw}}
		for _, shift := range []bool{true, false} {
			name := map[bool]string{true: "ShiftedDY", false: "InputSlices"}[shift]
			b.Run(fmt.Sprintf("%s/%dx%dx%d", name, p.n, p.c, p.hw), func(b *testing.B) {
				benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
					a := convArgs{x: in[0], d: in[1], k: 2, kernel: []int64{3, 3}, sp: sp, group: 1}
					return []*Value{convWeightGradTaps(g, a, p.hw*p.hw < smallPlane, shift)}
				})
			})
		}
		b.Run(fmt.Sprintf("Im2col/%dx%dx%d", p.n, p.c, p.hw), func(b *testing.B) {
			benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
				return []*Value{convWeightGradIm2col(g, convArgs{x: in[0], d: in[1], k: 2, kernel: []int64{3, 3}, sp: sp, group: 1})}
			})
		})
	}
}

// channelDotMatMul is sum(a*b) over every axis but the channels (axis 1) of two
// static NC... tensors of one shape, an alternative that lost to Mul and
// ReduceSum and to the grouped Conv: one batched MatMul of (1,HW) rows by (HW,1) columns per image
// and channel, then a sum over the images, which reads each tensor once and
// writes nothing of its size.
func channelDotMatMul(g *Graph, a, b *Value) *Value {
	n, ch := a.Shape[0].Size, a.Shape[1].Size
	rest := a.Shape.NumElements() / (n * ch)
	dot := g.MatMul(g.Reshape(a, n, ch, 1, rest), g.Reshape(b, n, ch, rest, 1)) // (N, C, 1, 1)
	return g.ReduceSum(dot, []int64{0, 2, 3}, false)
}

// BenchmarkKernelBroadcast: a per-channel Mul on 2M values with the
// vector given the tensor's rank (1,C,1,1), as the graph builder does, or
// one rank less (C,1,1); and the optimizer gate the train step does not
// use, Where with a one-element condition over two activation-sized
// tensors, against an Add of the same tensors (one pass at memory speed).
func BenchmarkKernelBroadcast(b *testing.B) {
	x := []int64{16, 128, 32, 32}
	b.Run("MulSameRank", func(b *testing.B) {
		benchGraph(b, [][]int64{x, {1, 128, 1, 1}}, func(g *Graph, in []*Value) []*Value {
			return []*Value{g.Mul(in[0], in[1])}
		})
	})
	b.Run("MulLowerRank", func(b *testing.B) {
		benchGraph(b, [][]int64{x, {128, 1, 1}}, func(g *Graph, in []*Value) []*Value {
			return []*Value{g.Mul(in[0], in[1])}
		})
	})
	big := []int64{16, 256, 56, 56}
	b.Run("WhereScalarCond", func(b *testing.B) {
		benchGraph(b, [][]int64{big, big, {1}}, func(g *Graph, in []*Value) []*Value {
			return []*Value{g.Where(g.Greater(in[2], g.Scalar(Float, -1e30)), in[0], in[1])}
		})
	})
	b.Run("AddSameShape", func(b *testing.B) {
		benchGraph(b, [][]int64{big, big}, func(g *Graph, in []*Value) []*Value {
			return []*Value{g.Add(in[0], in[1])}
		})
	})
}

// BenchmarkKernelGradSum: the sum of a value's two gradient contributions
// (a residual join), as Sum or as Add, at ResNet-50's first and third
// stages.
func BenchmarkKernelGradSum(b *testing.B) {
	for _, s := range [][]int64{{16, 256, 56, 56}, {16, 1024, 14, 14}} {
		shapes := [][]int64{s, s}
		b.Run(fmt.Sprintf("Sum/%dx%d", s[1], s[2]), func(b *testing.B) {
			benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value { return []*Value{g.Sum(in[0], in[1])} })
		})
		b.Run(fmt.Sprintf("Add/%dx%d", s[1], s[2]), func(b *testing.B) {
			benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value { return []*Value{g.Add(in[0], in[1])} })
		})
	}
}

// BenchmarkKernelPointwiseInputGrad: the input gradient of a 1x1
// convolution from Co to Ci channels as a batched MatMul of the transposed
// weight (ONNX Runtime folds the transpose into it) or as a Conv with the
// transposed weight, at ResNet-50's bottleneck shapes.
func BenchmarkKernelPointwiseInputGrad(b *testing.B) {
	for _, s := range []struct{ co, ci, hw int64 }{{256, 64, 56}, {64, 256, 56}, {512, 128, 28}, {128, 512, 28}, {1024, 256, 14}, {256, 1024, 14}, {2048, 512, 7}, {512, 2048, 7}} {
		shapes := [][]int64{{16, s.co, s.hw, s.hw}, {s.co, s.ci, 1, 1}}
		b.Run(fmt.Sprintf("MatMul/%dto%dx%d", s.co, s.ci, s.hw), func(b *testing.B) {
			benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
				wt := g.Transpose(g.Reshape(in[1], s.co, s.ci), 1, 0)
				return []*Value{g.Reshape(g.MatMul(wt, g.Reshape(in[0], 16, s.co, s.hw*s.hw)), 16, s.ci, s.hw, s.hw)}
			})
		})
		b.Run(fmt.Sprintf("Conv/%dto%dx%d", s.co, s.ci, s.hw), func(b *testing.B) {
			benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
				return []*Value{g.Conv(in[0], g.Transpose(in[1], 1, 0, 2, 3), nil, ConvOpts{})}
			})
		})
	}
}

// BenchmarkKernelStridedPointwise: a 1x1 stride-2 convolution with its
// input and weight gradients (loss sum(y*r) for a given r), as it is
// (ConvTranspose input gradient, strided Slice for the weight gradient) or
// after SubsamplePointwise, at ResNet-50's downsampling shapes ("AtoBxP":
// A input channels, B output channels, output plane P).
func BenchmarkKernelStridedPointwise(b *testing.B) {
	for _, p := range []struct{ ci, co, hw int64 }{{256, 512, 28}, {256, 128, 28}, {512, 1024, 14}, {1024, 2048, 7}} {
		shapes := [][]int64{{16, p.ci, 2 * p.hw, 2 * p.hw}, {p.co, p.ci, 1, 1}, {16, p.co, p.hw, p.hw}}
		for _, sub := range []bool{false, true} {
			name := map[bool]string{false: "StridedConv", true: "Subsample"}[sub]
			b.Run(fmt.Sprintf("%s/%dto%dx%d", name, p.ci, p.co, p.hw), func(b *testing.B) {
				benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
					y := g.Conv(in[0], in[1], nil, ConvOpts{Strides: []int64{2, 2}})
					if sub {
						if err := g.SubsamplePointwise(); err != nil {
							b.Fatal(err)
						}
					}
					return convWithGradients(b, g, y, in)
				})
			})
		}
	}
}

// BenchmarkKernelNchwcConv: a 3x3 convolution (stride 1, and stride 2 on
// the larger planes), a pointwise one and ResNet's 7x7 stem on the images
// as ONNX Runtime's Conv, or as its
// blocked convolution with the reorders in and out and the weight's
// reorder (LowerNchwc, block 16: the AVX-512 machines here).
func BenchmarkKernelNchwcConv(b *testing.B) {
	type shape struct {
		name             string
		ci, co, hw, k, s int64
	}
	for _, p := range []shape{{"3x3/64x56", 64, 64, 56, 3, 1}, {"3x3/128x28", 128, 128, 28, 3, 1}, {"3x3/256x14", 256, 256, 14, 3, 1},
		{"3x3/512x7", 512, 512, 7, 3, 1}, {"3x3s2/128x56", 128, 128, 56, 3, 2}, {"3x3s2/256x28", 256, 256, 28, 3, 2},
		{"1x1/256to64x56", 256, 64, 56, 1, 1}, {"1x1/64to256x56", 64, 256, 56, 1, 1}, {"7x7s2/3to64x224", 3, 64, 224, 7, 2}} {
		pad := (p.k - 1) / 2
		o := ConvOpts{Pads: []int64{pad, pad, pad, pad}, Strides: []int64{p.s, p.s}}
		shapes := [][]int64{{16, p.ci, p.hw, p.hw}, {p.co, p.ci, p.k, p.k}}
		for _, blocked := range []bool{false, true} {
			name := "Conv/" + p.name
			if blocked {
				name = "Nchwc/" + p.name
			}
			b.Run(name, func(b *testing.B) {
				benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
					y := g.Conv(in[0], in[1], nil, o)
					if blocked {
						// Lowered by hand: LowerNchwc leaves the planes
						// it would not gain on alone.
						var xb, wb *Value
						if p.ci < 16 {
							xb, wb = in[0], blockedFilterOut(g, in[1])
						} else {
							xb = g.Op1("ReorderInput", []*Value{in[0]}, Attrs{})
							xb.Producer.Domain = NchwcDomain
							wb = blockedFilter(g, in[1])
						}
						y.Producer.Inputs = []*Value{xb, wb}
						y.Producer.Domain = NchwcDomain
						// the Conv node precedes its new inputs' producers: move it last
						n := y.Producer
						for i, m := range g.Nodes {
							if m == n {
								g.Nodes = append(g.Nodes[:i:i], g.Nodes[i+1:]...)
								break
							}
						}
						g.Nodes = append(g.Nodes, n)
						out := g.Op1("ReorderOutput", []*Value{y}, Attrs{"channels": p.co})
						out.Producer.Domain = NchwcDomain
						return []*Value{out}
					}
					return []*Value{y}
				})
			})
		}
	}
}

// BenchmarkKernelConvGemm: a convolution with its input and weight
// gradients as the step writes them (Conv, then the rules of convgrad.go),
// or rewritten by ConvsAsGemm first (one product over the batch each),
// at the small planes of ResNet-18 and -50 at 64x64, batch 64 ("B64"), and
// of layer 4 at 224, batch 16; both lowered as the step is (at 7x7 the
// Conv form's 3x3 forward and input gradient are blocked).
func BenchmarkKernelConvGemm(b *testing.B) {
	type shape struct {
		name                string
		n, ci, co, hw, k, s int64
	}
	for _, p := range []shape{
		{"3x3/B64/512x2", 64, 512, 512, 2, 3, 1}, {"3x3s2/B64/256to512x4", 64, 256, 512, 4, 3, 2},
		{"3x3/B64/256x4", 64, 256, 256, 4, 3, 1}, {"3x3/B64/128x8", 64, 128, 128, 8, 3, 1},
		{"3x3/B16/512x7", 16, 512, 512, 7, 3, 1}, {"1x1/B64/512to2048x2", 64, 512, 2048, 2, 1, 1},
		{"1x1/B64/2048to512x2", 64, 2048, 512, 2, 1, 1}, {"1x1/B16/2048to512x7", 16, 2048, 512, 7, 1, 1},
		{"3x3s2/B64/128to256x8", 64, 128, 256, 8, 3, 2}, {"3x3s2/B16/512x14", 16, 512, 512, 14, 3, 2},
		{"1x1/B64/1024to256x4", 64, 1024, 256, 4, 1, 1}, {"1x1/B64/256to1024x4", 64, 256, 1024, 4, 1, 1},
	} {
		pad := (p.k - 1) / 2
		o := ConvOpts{Pads: []int64{pad, pad, pad, pad}, Strides: []int64{p.s, p.s}}
		out := (p.hw+2*pad-p.k)/p.s + 1
		shapes := [][]int64{{p.n, p.ci, p.hw, p.hw}, {p.co, p.ci, p.k, p.k}, {p.n, p.co, out, out}}
		for _, gemm := range []bool{false, true} {
			name := map[bool]string{false: "Conv/", true: "Gemm/"}[gemm] + p.name
			b.Run(name, func(b *testing.B) {
				benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
					y := g.Conv(in[0], in[1], nil, o)
					if gemm {
						if k, err := g.convsAsGemm(func(convArgs) bool { return true }); err != nil || k != 1 {
							b.Fatalf("ConvsAsGemm rewrote %d, %v", k, err)
						}
					}
					return convWithGradients(b, g, y, in)
				})
			})
		}
	}
}

// convWithGradients is a benchmark's outputs for a convolution y of in[0]
// by in[1]: y, and its input and weight gradients for dY = in[2], lowered
// as the step is (LowerNchwc; block 16 gives the graph block 8 would at
// the channel counts of these benchmarks).
func convWithGradients(b *testing.B, g *Graph, y *Value, in []*Value) []*Value {
	loss := g.ReduceSum(g.Mul(y, in[2]), nil, false)
	grads, err := g.Gradients(loss, in[:2], g.Scalar(Float, 1))
	if err != nil {
		b.Fatal(err)
	}
	if err := g.LowerNchwc(16); err != nil {
		b.Fatal(err)
	}
	return append([]*Value{y}, grads...)
}

// BenchmarkKernelShift: a 4-D tensor shifted by one row or one column with
// zeros filled in, at shapes of ResNet-18's step at 64x64 (batch 64,
// layer 1) and ResNet-50's at 224 (batch 16, layers 2 and 1): a Pad of
// the rows or columns axis (copies one row at a time, on one thread),
// against shiftRows and shiftColumnsMasked (a Pad of the flattened planes,
// after a Mul by a mask for columns) and a product with a one-hot matrix.
// Each result is summed (sumAll), so no run returns a tensor of its size;
// "Sum" times that alone.
func BenchmarkKernelShift(b *testing.B) {
	for _, s := range [][]int64{{64, 64, 16, 16}, {16, 128, 28, 28}, {16, 64, 56, 56}} {
		for _, c := range []struct {
			name  string
			shift func(g *Graph, v *Value) *Value
		}{
			{"Sum", func(g *Graph, v *Value) *Value { return v }},
			{"PadRows", func(g *Graph, v *Value) *Value { return g.Pad(v, []int64{0, 0, 1, 0, 0, 0, -1, 0}, 0) }},
			{"FlatRows", func(g *Graph, v *Value) *Value { return shiftRows(g, v, 1) }},
			{"PadColumns", func(g *Graph, v *Value) *Value { return g.Pad(v, []int64{0, 0, 0, -1, 0, 0, 0, 1}, 0) }},
			{"FlatColumns", func(g *Graph, v *Value) *Value { return shiftColumnsMasked(g, v, 1) }},
			{"MatMulColumns", func(g *Graph, v *Value) *Value { return shiftColumnsMatMul(g, v, 1) }},
		} {
			b.Run(fmt.Sprintf("%s/%dx%d", c.name, s[1], s[2]), func(b *testing.B) {
				benchGraph(b, [][]int64{s}, func(g *Graph, in []*Value) []*Value { return []*Value{sumAll(g, c.shift(g, in[0]))} })
			})
		}
	}
}

// sumAll is the sum of v's values, a one-value output for benchmarks
// whose result would otherwise be returned (copied) at its full size.
func sumAll(g *Graph, v *Value) *Value {
	return g.ReduceSum(g.Reshape(v, -1), []int64{0}, true)
}

// shiftColumnsMatMul is shiftColumns as a product with a one-hot W x W
// matrix (exact: one term per sum), an alternative BenchmarkKernelShift
// times.
func shiftColumnsMatMul(g *Graph, v *Value, s int64) *Value {
	w := v.Shape[3].Size
	m := FilledTensor(v.DType, []int64{w, w}, 0)
	for c := max(0, -s); c < min(w, w-s); c++ {
		m.set((c+s)*w+c, 1)
	}
	return g.MatMul(v, g.Const(m))
}

// BenchmarkKernelMaxPool: the stem's max pooling (3x3, stride 2, pad 1) in
// ResNet-18's step at 64x64 (batch 64), forward and gradient. "Pool" is
// the forward alone without indices (MLAS, both threads); "Indices" is the
// rule in gradrules.go: the pool with indices, then a ScatterElements of
// dY; "FirstMaxTaps" finds the same indices without the pool's index path,
// from the pool's output compared with each tap of the padded input (a
// strided Slice per tap, the first match kept), then the same scatter. The
// pool's index path costs about 20 ms more than the pool alone here, but
// the -inf Pad and the nine strided Slices cost several times that (each
// copies one value at a time on one thread), so the rule keeps indices.
func BenchmarkKernelMaxPool(b *testing.B) {
	n, c, h, w := int64(64), int64(64), int64(32), int64(32)
	o := PoolOpts{Kernel: []int64{3, 3}, Strides: []int64{2, 2}, Pads: []int64{1, 1, 1, 1}}
	ho, wo := h/2, w/2
	shapes := [][]int64{{n, c, h, w}, {n, c, ho, wo}}
	scatter := func(g *Graph, idx, dy *Value) *Value {
		zeros := g.ConstantOfShape(Float, 0, n*c*h*w)
		return g.ScatterElements(zeros, g.Reshape(idx, -1), g.Reshape(dy, -1), 0, "add")
	}
	b.Run("Pool", func(b *testing.B) {
		benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value { return []*Value{sumAll(g, g.MaxPool(in[0], o))} })
	})
	b.Run("Indices", func(b *testing.B) {
		benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
			y, idx := g.MaxPoolWithIndices(in[0], o)
			return []*Value{sumAll(g, y), sumAll(g, scatter(g, idx, in[1]))}
		})
	})
	b.Run("FirstMaxTaps", func(b *testing.B) {
		benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
			y := g.MaxPool(in[0], o)
			xp := g.Pad(in[0], []int64{0, 0, 1, 1, 0, 0, 1, 1}, math.Inf(-1))
			// Flat index of each window's top-left tap, from three
			// broadcast vectors; each tap adds its offset.
			planes := FilledTensor(Int64, []int64{n * c, 1, 1}, 0)
			for i := int64(0); i < n*c; i++ {
				planes.set(i, float64(i*h*w))
			}
			rows, cols := FilledTensor(Int64, []int64{ho, 1}, 0), FilledTensor(Int64, []int64{wo}, 0)
			for i := int64(0); i < ho; i++ {
				rows.set(i, float64((2*i-1)*w))
			}
			for j := int64(0); j < wo; j++ {
				cols.set(j, float64(2*j-1))
			}
			base := g.Reshape(g.Add(g.Add(g.Const(planes), g.Const(rows)), g.Const(cols)), n, c, ho, wo)
			var off *Value
			for t := int64(8); t >= 0; t-- { // the first matching tap wins
				kh, kw := t/3, t%3
				xt := g.SliceSteps(xp, []int64{kh, kw}, []int64{kh + 2*ho - 1, kw + 2*wo - 1}, []int64{2, 3}, []int64{2, 2})
				v := g.Scalar(Int64, float64(kh*w+kw))
				if off == nil {
					off = g.Expand(v, n, c, ho, wo)
					continue
				}
				off = g.Where(g.Equal(xt, y), v, off)
			}
			return []*Value{sumAll(g, y), sumAll(g, scatter(g, g.Add(base, off), in[1]))}
		})
	})
}

// BenchmarkKernelStemWeightGrad: the weight gradient of the 7x7 stride-2
// stem on 3 channels, in ResNet-18's step at 64x64 (batch 64) and
// ResNet-50's at 224 (batch 16): the transposed convolution (the rule for
// fewer than tapsMinChannels input channels) against the column matrix of
// a one-hot grouped Conv times dY.
func BenchmarkKernelStemWeightGrad(b *testing.B) {
	sp := spatial{kernel: []int64{7, 7}, strides: []int64{2, 2}, dilations: []int64{1, 1}, padsBegin: []int64{3, 3}, padsEnd: []int64{3, 3}}
	for _, s := range []struct{ n, hw int64 }{{64, 64}, {16, 224}} {
		shapes := [][]int64{{s.n, 3, s.hw, s.hw}, {s.n, 64, s.hw / 2, s.hw / 2}}
		for _, f := range []struct {
			name string
			grad func(g *Graph, a convArgs) *Value
		}{{"Conv", convWeightGradConv}, {"Im2col", convWeightGradIm2col}} {
			b.Run(fmt.Sprintf("%s/%dx%d", f.name, s.n, s.hw), func(b *testing.B) {
				benchGraph(b, shapes, func(g *Graph, in []*Value) []*Value {
					return []*Value{f.grad(g, convArgs{x: in[0], d: in[1], k: 2, kernel: []int64{7, 7}, sp: sp, group: 1})}
				})
			})
		}
	}
}
