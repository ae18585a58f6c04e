package graphgen

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ortrain/ortrain/internal/testutil"
	"github.com/ortrain/ortrain/runtime"
)

// gradCase is one operator application checked against PyTorch autograd.
type gradCase struct {
	name   string
	op     string         // the oracle's name for the operation
	attrs  map[string]any // what the oracle needs to know
	shapes [][]int64
	wrt    []int
	dist   string // "normal" (default), "positive" (0.5 to 2)
	build  func(g *Graph, in []*Value) *Value
	lower  bool // run LowerBatchStats after differentiating
}

func conv(strides, pads, dil []int64, group int64) func(g *Graph, in []*Value) *Value {
	return func(g *Graph, in []*Value) *Value {
		var b *Value
		if len(in) > 2 {
			b = in[2]
		}
		return g.Conv(in[0], in[1], b, ConvOpts{Strides: strides, Pads: pads, Dilations: dil, Group: group})
	}
}

func convAttrs(strides, pads, dil []int64, group int64) map[string]any {
	return map[string]any{"strides": strides, "pads": pads, "dilations": dil, "group": group}
}

func pool(op string, o PoolOpts) func(g *Graph, in []*Value) *Value {
	return func(g *Graph, in []*Value) *Value {
		if op == "MaxPool" {
			return g.MaxPool(in[0], o)
		}
		return g.AveragePool(in[0], o)
	}
}

func poolAttrs(o PoolOpts) map[string]any {
	a := map[string]any{"kernel_shape": o.Kernel, "strides": o.Strides, "pads": o.Pads, "ceil_mode": 0, "count_include_pad": 0}
	if o.Pads == nil {
		a["pads"] = []int64{0, 0, 0, 0}
	}
	if o.CeilMode {
		a["ceil_mode"] = 1
	}
	if o.CountIncludePad {
		a["count_include_pad"] = 1
	}
	return a
}

func unary(op string) gradCase {
	return gradCase{name: op, op: op, shapes: [][]int64{{3, 4, 5}}, wrt: []int{0},
		build: func(g *Graph, in []*Value) *Value { return g.Op1(op, in, nil) }}
}

func binCase(op string, a, b []int64) gradCase {
	return gradCase{name: fmt.Sprintf("%s%v%v", op, a, b), op: op, shapes: [][]int64{a, b}, wrt: []int{0, 1},
		build: func(g *Graph, in []*Value) *Value { return g.Op1(op, in, nil) }}
}

func gradCases() []gradCase {
	cs := []gradCase{
		// Conv: strides, padding (also asymmetric), dilation, groups, odd sizes, bias.
		{name: "conv3x3s2p1_bias", op: "Conv", attrs: convAttrs([]int64{2, 2}, []int64{1, 1, 1, 1}, []int64{1, 1}, 1),
			shapes: [][]int64{{2, 3, 9, 8}, {4, 3, 3, 3}, {4}}, wrt: []int{0, 1, 2},
			build: conv([]int64{2, 2}, []int64{1, 1, 1, 1}, nil, 1)},
		{name: "conv3x3dil2", op: "Conv", attrs: convAttrs([]int64{1, 1}, []int64{0, 0, 0, 0}, []int64{2, 2}, 1),
			shapes: [][]int64{{2, 3, 9, 10}, {5, 3, 3, 3}}, wrt: []int{0, 1},
			build: conv(nil, nil, []int64{2, 2}, 1)},
		{name: "conv_group2_asympad_s2", op: "Conv", attrs: convAttrs([]int64{2, 2}, []int64{1, 0, 0, 1}, []int64{1, 1}, 2),
			shapes: [][]int64{{2, 4, 7, 7}, {6, 2, 3, 3}}, wrt: []int{0, 1},
			build: conv([]int64{2, 2}, []int64{1, 0, 0, 1}, nil, 2)},
		{name: "conv1x1s2_odd", op: "Conv", attrs: convAttrs([]int64{2, 2}, []int64{0, 0, 0, 0}, []int64{1, 1}, 1),
			shapes: [][]int64{{3, 4, 7, 7}, {8, 4, 1, 1}}, wrt: []int{0, 1},
			build: conv([]int64{2, 2}, nil, nil, 1)},
		{name: "conv1x1s23_even", op: "Conv", attrs: convAttrs([]int64{2, 3}, []int64{0, 0, 0, 0}, []int64{1, 1}, 1),
			shapes: [][]int64{{2, 4, 8, 9}, {5, 4, 1, 1}}, wrt: []int{0, 1},
			build: conv([]int64{2, 3}, nil, nil, 1)},
		{name: "conv7x7s2p3", op: "Conv", attrs: convAttrs([]int64{2, 2}, []int64{3, 3, 3, 3}, []int64{1, 1}, 1),
			shapes: [][]int64{{2, 3, 11, 12}, {4, 3, 7, 7}}, wrt: []int{0, 1},
			build: conv([]int64{2, 2}, []int64{3, 3, 3, 3}, nil, 1)},
		{name: "conv_depthwise_s2", op: "Conv", attrs: convAttrs([]int64{2, 2}, []int64{1, 1, 1, 1}, []int64{1, 1}, 3),
			shapes: [][]int64{{2, 3, 8, 9}, {3, 1, 3, 3}}, wrt: []int{0, 1},
			build: conv([]int64{2, 2}, []int64{1, 1, 1, 1}, nil, 3)},
		// The same with 16+ input channels: the weight gradient by kernel taps.
		{name: "taps_conv3x3s2p1_bias", op: "Conv", attrs: convAttrs([]int64{2, 2}, []int64{1, 1, 1, 1}, []int64{1, 1}, 1),
			shapes: [][]int64{{2, 16, 9, 8}, {4, 16, 3, 3}, {4}}, wrt: []int{0, 1, 2},
			build: conv([]int64{2, 2}, []int64{1, 1, 1, 1}, nil, 1)},
		{name: "taps_conv3x3dil2", op: "Conv", attrs: convAttrs([]int64{1, 1}, []int64{0, 0, 0, 0}, []int64{2, 2}, 1),
			shapes: [][]int64{{2, 16, 9, 10}, {5, 16, 3, 3}}, wrt: []int{0, 1},
			build: conv(nil, nil, []int64{2, 2}, 1)},
		{name: "taps_conv_asympad_s2", op: "Conv", attrs: convAttrs([]int64{2, 2}, []int64{1, 0, 0, 1}, []int64{1, 1}, 1),
			shapes: [][]int64{{2, 20, 7, 7}, {6, 20, 3, 3}}, wrt: []int{0, 1},
			build: conv([]int64{2, 2}, []int64{1, 0, 0, 1}, nil, 1)},
		{name: "taps_conv1x1s2_odd", op: "Conv", attrs: convAttrs([]int64{2, 2}, []int64{0, 0, 0, 0}, []int64{1, 1}, 1),
			shapes: [][]int64{{3, 16, 7, 7}, {8, 16, 1, 1}}, wrt: []int{0, 1},
			build: conv([]int64{2, 2}, nil, nil, 1)},
		{name: "taps_conv1x1", op: "Conv", attrs: convAttrs([]int64{1, 1}, []int64{0, 0, 0, 0}, []int64{1, 1}, 1),
			shapes: [][]int64{{3, 16, 5, 6}, {8, 16, 1, 1}}, wrt: []int{0, 1},
			build: conv(nil, nil, nil, 1)},
		// Output planes of 512 or more: one MatMul per tap (shifted dY at
		// stride 1, strided input slices otherwise). Below 512, "same"
		// convolutions take the taps with the batch folded in, and the
		// other taps_ cases with kernels larger than 1x1 the column matrix
		// of a one-hot grouped Conv.
		{name: "taps_plane576", op: "Conv", attrs: convAttrs([]int64{1, 1}, []int64{1, 1, 1, 1}, []int64{1, 1}, 1),
			shapes: [][]int64{{2, 16, 24, 24}, {8, 16, 3, 3}}, wrt: []int{0, 1},
			build: conv(nil, []int64{1, 1, 1, 1}, nil, 1)},
		{name: "taps_plane552_s2_asympad", op: "Conv", attrs: convAttrs([]int64{2, 2}, []int64{1, 0, 0, 1}, []int64{1, 1}, 1),
			shapes: [][]int64{{2, 16, 48, 47}, {8, 16, 3, 3}}, wrt: []int{0, 1},
			build: conv([]int64{2, 2}, []int64{1, 0, 0, 1}, nil, 1)},
		{name: "taps_plane600_3x2_dil21_asympad", op: "Conv", attrs: convAttrs([]int64{1, 1}, []int64{2, 0, 1, 1}, []int64{2, 1}, 1),
			shapes: [][]int64{{2, 16, 26, 24}, {6, 16, 3, 2}}, wrt: []int{0, 1},
			build: conv(nil, []int64{2, 0, 1, 1}, []int64{2, 1}, 1)},
		// a "same" convolution (dY the input's size) with asymmetric pads
		// and a dilation: the row shifts of dY and column shifts of x
		{name: "taps_plane576_same_3x2_dil21_asympad", op: "Conv", attrs: convAttrs([]int64{1, 1}, []int64{1, 0, 3, 1}, []int64{2, 1}, 1),
			shapes: [][]int64{{2, 16, 24, 24}, {6, 16, 3, 2}}, wrt: []int{0, 1},
			build: conv(nil, []int64{1, 0, 3, 1}, []int64{2, 1}, 1)},
		// "same" convolutions on planes under 512: taps with the batch
		// folded into the MatMuls (also taps_conv3x3s1p2dil2 and
		// taps_conv3x3p1_tiny below)
		{name: "taps_plane196_same_folded", op: "Conv", attrs: convAttrs([]int64{1, 1}, []int64{1, 1, 1, 1}, []int64{1, 1}, 1),
			shapes: [][]int64{{2, 16, 14, 14}, {8, 16, 3, 3}}, wrt: []int{0, 1},
			build: conv(nil, []int64{1, 1, 1, 1}, nil, 1)},
		{name: "taps_plane208_same_folded_3x2_dil21_asympad", op: "Conv", attrs: convAttrs([]int64{1, 1}, []int64{1, 0, 3, 1}, []int64{2, 1}, 1),
			shapes: [][]int64{{2, 16, 16, 13}, {6, 16, 3, 2}}, wrt: []int{0, 1},
			build: conv(nil, []int64{1, 0, 3, 1}, []int64{2, 1}, 1)},
		// rows of up to 16 values: the columns shifted in the flattened
		// planes after a mask (shifts of -2 and 2; unfolded at 520)
		{name: "taps_plane210_same_folded_dil12_shortrows", op: "Conv", attrs: convAttrs([]int64{1, 1}, []int64{1, 2, 1, 2}, []int64{1, 2}, 1),
			shapes: [][]int64{{2, 16, 15, 14}, {6, 16, 3, 3}}, wrt: []int{0, 1},
			build: conv(nil, []int64{1, 2, 1, 2}, []int64{1, 2}, 1)},
		{name: "taps_plane520_same_shortrows", op: "Conv", attrs: convAttrs([]int64{1, 1}, []int64{1, 1, 1, 1}, []int64{1, 1}, 1),
			shapes: [][]int64{{2, 16, 40, 13}, {6, 16, 3, 3}}, wrt: []int{0, 1},
			build: conv(nil, []int64{1, 1, 1, 1}, nil, 1)},
		// rows wider than 16: the columns axis's Pad, folded
		{name: "taps_plane320_same_folded_widerows", op: "Conv", attrs: convAttrs([]int64{1, 1}, []int64{1, 1, 1, 1}, []int64{1, 1}, 1),
			shapes: [][]int64{{2, 16, 8, 40}, {6, 16, 3, 3}}, wrt: []int{0, 1},
			build: conv(nil, []int64{1, 1, 1, 1}, nil, 1)},
		// shifts as large as the plane (the tap reads only padding): a 1x1
		// plane with a 3x3 kernel, a 2x2 one dilated by 2, and rows padded
		// by 2 on a plane 1 high
		{name: "taps_plane1_same_allpad", op: "Conv", attrs: convAttrs([]int64{1, 1}, []int64{1, 1, 1, 1}, []int64{1, 1}, 1),
			shapes: [][]int64{{2, 16, 1, 1}, {6, 16, 3, 3}}, wrt: []int{0, 1},
			build: conv(nil, []int64{1, 1, 1, 1}, nil, 1)},
		{name: "taps_plane4_same_dil2_allpad", op: "Conv", attrs: convAttrs([]int64{1, 1}, []int64{2, 2, 2, 2}, []int64{2, 2}, 1),
			shapes: [][]int64{{2, 16, 2, 2}, {6, 16, 3, 3}}, wrt: []int{0, 1},
			build: conv(nil, []int64{2, 2, 2, 2}, []int64{2, 2}, 1)},
		{name: "taps_plane4_same_3x1_rowpad2", op: "Conv", attrs: convAttrs([]int64{1, 1}, []int64{2, 0, 0, 0}, []int64{1, 1}, 1),
			shapes: [][]int64{{2, 16, 1, 4}, {6, 16, 3, 1}}, wrt: []int{0, 1},
			build: conv(nil, []int64{2, 0, 0, 0}, nil, 1)},
		{name: "taps_plane576_nopad", op: "Conv", attrs: convAttrs([]int64{1, 1}, []int64{0, 0, 0, 0}, []int64{1, 1}, 1),
			shapes: [][]int64{{2, 16, 26, 26}, {6, 16, 3, 3}}, wrt: []int{0, 1},
			build: conv(nil, nil, nil, 1)},
		{name: "taps_plane650_s2_dil2", op: "Conv", attrs: convAttrs([]int64{2, 2}, []int64{2, 2, 2, 2}, []int64{2, 2}, 1),
			shapes: [][]int64{{2, 16, 52, 50}, {6, 16, 3, 3}}, wrt: []int{0, 1},
			build: conv([]int64{2, 2}, []int64{2, 2, 2, 2}, []int64{2, 2}, 1)},
		{name: "im2col_3x2_s23_dil21_asympad", op: "Conv", attrs: convAttrs([]int64{2, 3}, []int64{1, 0, 2, 1}, []int64{2, 1}, 1),
			shapes: [][]int64{{2, 16, 11, 13}, {5, 16, 3, 2}}, wrt: []int{0, 1},
			build: conv([]int64{2, 3}, []int64{1, 0, 2, 1}, []int64{2, 1}, 1)},
		{name: "im2col_s3_skips_end", op: "Conv", attrs: convAttrs([]int64{3, 3}, []int64{0, 0, 0, 0}, []int64{1, 1}, 1),
			shapes: [][]int64{{2, 16, 11, 10}, {4, 16, 3, 3}, {4}}, wrt: []int{0, 1, 2},
			build: conv([]int64{3, 3}, nil, nil, 1)},
		// Stride 1: the input gradient as a convolution with the flipped
		// kernel; rectangular kernels, asymmetric padding, dilation.
		{name: "conv3x2s1_asympad", op: "Conv", attrs: convAttrs([]int64{1, 1}, []int64{2, 0, 1, 1}, []int64{1, 1}, 1),
			shapes: [][]int64{{2, 5, 7, 6}, {4, 5, 3, 2}}, wrt: []int{0, 1},
			build: conv(nil, []int64{2, 0, 1, 1}, nil, 1)},
		{name: "taps_conv3x3s1p2dil2", op: "Conv", attrs: convAttrs([]int64{1, 1}, []int64{2, 2, 2, 2}, []int64{2, 2}, 1),
			shapes: [][]int64{{2, 16, 9, 8}, {6, 16, 3, 3}}, wrt: []int{0, 1},
			build: conv(nil, []int64{2, 2, 2, 2}, []int64{2, 2}, 1)},
		{name: "taps_conv3x3p1_tiny", op: "Conv", attrs: convAttrs([]int64{1, 1}, []int64{1, 1, 1, 1}, []int64{1, 1}, 1),
			shapes: [][]int64{{2, 16, 2, 3}, {4, 16, 3, 3}}, wrt: []int{0, 1},
			build: conv(nil, []int64{1, 1, 1, 1}, nil, 1)},
		{name: "taps_conv7x7s2p3", op: "Conv", attrs: convAttrs([]int64{2, 2}, []int64{3, 3, 3, 3}, []int64{1, 1}, 1),
			shapes: [][]int64{{2, 16, 11, 12}, {4, 16, 7, 7}}, wrt: []int{0, 1},
			build: conv([]int64{2, 2}, []int64{3, 3, 3, 3}, nil, 1)},
		// BatchNorm in training mode (batch statistics) and inference mode.
		{name: "batchnorm_train", op: "BatchNormTrain", attrs: map[string]any{"epsilon": 1e-5},
			shapes: [][]int64{{4, 3, 5, 6}, {3}, {3}}, wrt: []int{0, 1, 2},
			build: func(g *Graph, in []*Value) *Value {
				y, _, _ := g.BatchNormBatchStats(in[0], in[1], in[2], nil, 1e-5)
				return y
			}},
		{name: "batchnorm_train_7x7", op: "BatchNormTrain", attrs: map[string]any{"epsilon": 1e-5},
			shapes: [][]int64{{4, 32, 7, 7}, {32}, {32}}, wrt: []int{0, 1, 2},
			build: func(g *Graph, in []*Value) *Value {
				y, _, _ := g.BatchNormBatchStats(in[0], in[1], in[2], nil, 1e-5)
				return y
			}},
		{name: "batchnorm_train_56x56", op: "BatchNormTrain", attrs: map[string]any{"epsilon": 1e-5},
			shapes: [][]int64{{4, 16, 56, 56}, {16}, {16}}, wrt: []int{0, 1, 2},
			build: func(g *Graph, in []*Value) *Value {
				y, _, _ := g.BatchNormBatchStats(in[0], in[1], in[2], nil, 1e-5)
				return y
			}},
		{name: "batchnorm_train_56x56_lowered", op: "BatchNormTrain", attrs: map[string]any{"epsilon": 1e-5},
			shapes: [][]int64{{4, 16, 56, 56}, {16}, {16}}, wrt: []int{0, 1, 2}, lower: true,
			build: func(g *Graph, in []*Value) *Value {
				y, _, _ := g.BatchNormBatchStats(in[0], in[1], in[2], nil, 1e-5)
				return y
			}},
		// With a shift (as the train step passes the running mean): the
		// one-pass statistics of x - shift, shifts near and far from the
		// batch mean, on small and lowered large planes.
		{name: "batchnorm_train_shift", op: "BatchNormTrain", attrs: map[string]any{"epsilon": 1e-5},
			shapes: [][]int64{{4, 3, 5, 6}, {3}, {3}}, wrt: []int{0, 1, 2},
			build: func(g *Graph, in []*Value) *Value {
				y, _, _ := g.BatchNormBatchStats(in[0], in[1], in[2], g.Const(FloatTensor([]int64{3}, []float32{0.3, -2, 5})), 1e-5)
				return y
			}},
		{name: "batchnorm_train_56x56_shift_lowered", op: "BatchNormTrain", attrs: map[string]any{"epsilon": 1e-5},
			shapes: [][]int64{{4, 16, 56, 56}, {16}, {16}}, wrt: []int{0, 1, 2}, lower: true,
			build: func(g *Graph, in []*Value) *Value {
				shift := make([]float32, 16)
				for i := range shift {
					shift[i] = float32(i%5) - 2
				}
				y, _, _ := g.BatchNormBatchStats(in[0], in[1], in[2], g.Const(FloatTensor([]int64{16}, shift)), 1e-5)
				return y
			}},
		{name: "BIG_avgpool", op: "AveragePool", attrs: poolAttrs(PoolOpts{Kernel: []int64{2, 2}, Strides: []int64{2, 2}, CeilMode: true}),
			shapes: [][]int64{{4, 512, 28, 28}}, wrt: []int{0}, build: pool("AveragePool", PoolOpts{Kernel: []int64{2, 2}, Strides: []int64{2, 2}, CeilMode: true})},
		{name: "BIG_conv1x1", op: "Conv", attrs: convAttrs([]int64{1, 1}, []int64{0, 0, 0, 0}, []int64{1, 1}, 1),
			shapes: [][]int64{{4, 512, 14, 14}, {1024, 512, 1, 1}}, wrt: []int{0, 1},
			build: conv(nil, nil, nil, 1)},
		{name: "BIG_bn", op: "BatchNormTrain", attrs: map[string]any{"epsilon": 1e-5},
			shapes: [][]int64{{4, 1024, 14, 14}, {1024}, {1024}}, wrt: []int{0, 1, 2},
			build: func(g *Graph, in []*Value) *Value {
				y, _, _ := g.BatchNormBatchStats(in[0], in[1], in[2], nil, 1e-5)
				return y
			}},
		{name: "BIG_conv3x3s2", op: "Conv", attrs: convAttrs([]int64{2, 2}, []int64{1, 1, 1, 1}, []int64{1, 1}, 1),
			shapes: [][]int64{{4, 256, 28, 28}, {256, 256, 3, 3}}, wrt: []int{0, 1},
			build: conv([]int64{2, 2}, []int64{1, 1, 1, 1}, nil, 1)},
		{name: "globalavgpool7", op: "GlobalAveragePool", shapes: [][]int64{{4, 64, 7, 7}}, wrt: []int{0},
			build: func(g *Graph, in []*Value) *Value { return g.GlobalAveragePool(in[0]) }},
		{name: "batchnorm_train_2d", op: "BatchNormTrain", attrs: map[string]any{"epsilon": 1e-3},
			shapes: [][]int64{{6, 5}, {5}, {5}}, wrt: []int{0, 1, 2},
			build: func(g *Graph, in []*Value) *Value {
				y, _, _ := g.BatchNormBatchStats(in[0], in[1], in[2], nil, 1e-3)
				return y
			}},
		{name: "batchnorm_eval", op: "BatchNormalization", attrs: map[string]any{"epsilon": 1e-5},
			shapes: [][]int64{{2, 3, 4, 5}, {3}, {3}, {3}, {3}}, wrt: []int{0, 1, 2}, dist: "positive",
			build: func(g *Graph, in []*Value) *Value { return g.BatchNorm(in[0], in[1], in[2], in[3], in[4], 1e-5) }},
		unary("Relu"),
		// Pooling: padding, odd sizes, ceil_mode, count_include_pad.
		{name: "maxpool3x3s2p1", op: "MaxPool", attrs: poolAttrs(PoolOpts{Kernel: []int64{3, 3}, Strides: []int64{2, 2}, Pads: []int64{1, 1, 1, 1}}),
			shapes: [][]int64{{2, 3, 9, 10}}, wrt: []int{0}, build: pool("MaxPool", PoolOpts{Kernel: []int64{3, 3}, Strides: []int64{2, 2}, Pads: []int64{1, 1, 1, 1}})},
		{name: "maxpool2x2s2ceil", op: "MaxPool", attrs: poolAttrs(PoolOpts{Kernel: []int64{2, 2}, Strides: []int64{2, 2}, CeilMode: true}),
			shapes: [][]int64{{2, 3, 7, 7}}, wrt: []int{0}, build: pool("MaxPool", PoolOpts{Kernel: []int64{2, 2}, Strides: []int64{2, 2}, CeilMode: true})},
		{name: "avgpool2x2s2ceil_nopad", op: "AveragePool", attrs: poolAttrs(PoolOpts{Kernel: []int64{2, 2}, Strides: []int64{2, 2}, CeilMode: true}),
			shapes: [][]int64{{2, 3, 7, 9}}, wrt: []int{0}, build: pool("AveragePool", PoolOpts{Kernel: []int64{2, 2}, Strides: []int64{2, 2}, CeilMode: true})},
		{name: "avgpool3x3s2p1_includepad", op: "AveragePool", attrs: poolAttrs(PoolOpts{Kernel: []int64{3, 3}, Strides: []int64{2, 2}, Pads: []int64{1, 1, 1, 1}, CountIncludePad: true}),
			shapes: [][]int64{{2, 3, 8, 8}}, wrt: []int{0}, build: pool("AveragePool", PoolOpts{Kernel: []int64{3, 3}, Strides: []int64{2, 2}, Pads: []int64{1, 1, 1, 1}, CountIncludePad: true})},
		{name: "avgpool3x3s2p1_ceil_excludepad", op: "AveragePool", attrs: poolAttrs(PoolOpts{Kernel: []int64{3, 3}, Strides: []int64{2, 2}, Pads: []int64{1, 1, 1, 1}, CeilMode: true}),
			shapes: [][]int64{{2, 3, 10, 10}}, wrt: []int{0}, build: pool("AveragePool", PoolOpts{Kernel: []int64{3, 3}, Strides: []int64{2, 2}, Pads: []int64{1, 1, 1, 1}, CeilMode: true})},
		{name: "avgpool3x3s3_skip", op: "AveragePool", attrs: poolAttrs(PoolOpts{Kernel: []int64{2, 2}, Strides: []int64{3, 3}}),
			shapes: [][]int64{{1, 2, 8, 9}}, wrt: []int{0}, build: pool("AveragePool", PoolOpts{Kernel: []int64{2, 2}, Strides: []int64{3, 3}})},
		{name: "globalavgpool", op: "GlobalAveragePool", shapes: [][]int64{{2, 3, 5, 7}}, wrt: []int{0},
			build: func(g *Graph, in []*Value) *Value { return g.GlobalAveragePool(in[0]) }},
		// Linear algebra.
		{name: "gemm_fc", op: "Gemm", attrs: map[string]any{"transB": 1}, shapes: [][]int64{{4, 6}, {5, 6}, {5}}, wrt: []int{0, 1, 2},
			build: func(g *Graph, in []*Value) *Value { return g.Gemm(in[0], in[1], in[2], false, true) }},
		{name: "gemm_transA_alpha_beta", op: "Gemm", attrs: map[string]any{"transA": 1, "alpha": 0.5, "beta": 2.0},
			shapes: [][]int64{{6, 4}, {6, 5}, {4, 1}}, wrt: []int{0, 1, 2},
			build: func(g *Graph, in []*Value) *Value {
				return g.Op1("Gemm", in, Attrs{"transA": int64(1), "alpha": float32(0.5), "beta": float32(2)})
			}},
		{name: "gemm_transAB", op: "Gemm", attrs: map[string]any{"transA": 1, "transB": 1}, shapes: [][]int64{{6, 4}, {5, 6}}, wrt: []int{0, 1},
			build: func(g *Graph, in []*Value) *Value { return g.Gemm(in[0], in[1], nil, true, true) }},
		{name: "gemm_plain", op: "Gemm", shapes: [][]int64{{3, 4}, {4, 2}}, wrt: []int{0, 1},
			build: func(g *Graph, in []*Value) *Value { return g.Gemm(in[0], in[1], nil, false, false) }},
		binCase("MatMul", []int64{2, 3, 4, 5}, []int64{5, 6}),
		binCase("MatMul", []int64{3, 1, 4, 5}, []int64{2, 5, 6}),
		// Elementwise arithmetic with broadcasting.
		binCase("Add", []int64{2, 3, 4}, []int64{3, 1}),
		binCase("Sub", []int64{1, 4}, []int64{3, 1}),
		binCase("Mul", []int64{2, 3, 4}, []int64{4}),
		binCase("Div", []int64{2, 3}, []int64{2, 1}),
		{name: "Pow", op: "Pow", shapes: [][]int64{{3, 4}, {1, 4}}, wrt: []int{0, 1}, dist: "positive",
			build: func(g *Graph, in []*Value) *Value { return g.Pow(in[0], in[1]) }},
		{name: "Sum3", op: "Sum", shapes: [][]int64{{2, 3, 4}, {3, 1}, {4}}, wrt: []int{0, 1, 2},
			build: func(g *Graph, in []*Value) *Value { return g.Sum(in...) }},
		unary("Neg"), unary("Exp"), unary("Abs"), unary("Sigmoid"), unary("Tanh"), unary("Identity"),
		{name: "Log", op: "Log", shapes: [][]int64{{3, 5}}, wrt: []int{0}, dist: "positive",
			build: func(g *Graph, in []*Value) *Value { return g.Log(in[0]) }},
		{name: "Sqrt", op: "Sqrt", shapes: [][]int64{{3, 5}}, wrt: []int{0}, dist: "positive",
			build: func(g *Graph, in []*Value) *Value { return g.Sqrt(in[0]) }},
		{name: "Reciprocal", op: "Reciprocal", shapes: [][]int64{{3, 5}}, wrt: []int{0}, dist: "positive",
			build: func(g *Graph, in []*Value) *Value { return g.Reciprocal(in[0]) }},
		{name: "CastHalf", op: "CastHalf", shapes: [][]int64{{3, 5}}, wrt: []int{0},
			build: func(g *Graph, in []*Value) *Value { return g.Cast(g.Cast(in[0], Float16), Float) }},
		{name: "Softmax", op: "Softmax", attrs: map[string]any{"axis": 1}, shapes: [][]int64{{3, 5, 4}}, wrt: []int{0},
			build: func(g *Graph, in []*Value) *Value { return g.Softmax(in[0], 1) }},
		{name: "LogSoftmax", op: "LogSoftmax", attrs: map[string]any{"axis": -1}, shapes: [][]int64{{3, 6}}, wrt: []int{0},
			build: func(g *Graph, in []*Value) *Value { return g.LogSoftmax(in[0], -1) }},
		// Reductions and shape operators.
		{name: "ReduceSum", op: "ReduceSum", attrs: map[string]any{"axes": []int64{1}, "keepdims": 0}, shapes: [][]int64{{2, 3, 4}}, wrt: []int{0},
			build: func(g *Graph, in []*Value) *Value { return g.ReduceSum(in[0], []int64{1}, false) }},
		{name: "ReduceMean", op: "ReduceMean", attrs: map[string]any{"axes": []int64{0, 2}, "keepdims": 1}, shapes: [][]int64{{2, 3, 4}}, wrt: []int{0},
			build: func(g *Graph, in []*Value) *Value { return g.ReduceMean(in[0], []int64{0, 2}, true) }},
		{name: "ReduceSumSquare", op: "ReduceSumSquare", attrs: map[string]any{"axes": []int64{-1}, "keepdims": 0}, shapes: [][]int64{{2, 3, 4}}, wrt: []int{0},
			build: func(g *Graph, in []*Value) *Value { return g.ReduceSumSquare(in[0], []int64{-1}, false) }},
		{name: "Flatten", op: "Flatten", attrs: map[string]any{"axis": 2}, shapes: [][]int64{{2, 3, 4, 5}}, wrt: []int{0},
			build: func(g *Graph, in []*Value) *Value { return g.Flatten(in[0], 2) }},
		{name: "Reshape", op: "Reshape", attrs: map[string]any{"shape": []int64{4, 6}}, shapes: [][]int64{{2, 3, 4}}, wrt: []int{0},
			build: func(g *Graph, in []*Value) *Value { return g.Reshape(in[0], 4, -1) }},
		{name: "Squeeze", op: "Squeeze", attrs: map[string]any{"axes": []int64{1, 3}}, shapes: [][]int64{{2, 1, 4, 1}}, wrt: []int{0},
			build: func(g *Graph, in []*Value) *Value { return g.Squeeze(in[0], 1, 3) }},
		{name: "Unsqueeze", op: "Unsqueeze", attrs: map[string]any{"axes": []int64{0, 2}}, shapes: [][]int64{{3, 4}}, wrt: []int{0},
			build: func(g *Graph, in []*Value) *Value { return g.Unsqueeze(in[0], 0, 2) }},
		{name: "Transpose", op: "Transpose", attrs: map[string]any{"perm": []int64{2, 0, 1}}, shapes: [][]int64{{2, 3, 4}}, wrt: []int{0},
			build: func(g *Graph, in []*Value) *Value { return g.Transpose(in[0], 2, 0, 1) }},
		{name: "Expand", op: "Expand", attrs: map[string]any{"shape": []int64{2, 3, 4}}, shapes: [][]int64{{3, 1}}, wrt: []int{0},
			build: func(g *Graph, in []*Value) *Value { return g.Expand(in[0], 2, 3, 4) }},
		{name: "Where", op: "Where", attrs: map[string]any{"cond": []bool{true, false, false, true}, "cond_shape": []int64{1, 4}},
			shapes: [][]int64{{3, 4}, {3, 1}}, wrt: []int{0, 1},
			build: func(g *Graph, in []*Value) *Value {
				cond := g.Const(&Tensor{DType: Bool, Dims: []int64{1, 4}, Raw: []byte{1, 0, 0, 1}})
				return g.Where(cond, in[0], in[1])
			}},
		{name: "Concat", op: "Concat", attrs: map[string]any{"axis": 1}, shapes: [][]int64{{2, 3, 2}, {2, 1, 2}, {2, 2, 2}}, wrt: []int{0, 1, 2},
			build: func(g *Graph, in []*Value) *Value { return g.Concat(1, in...) }},
	}
	return cs
}

// TestGradientRulesMatchPyTorch checks every rule of gradRules: our
// gradients run in ONNX Runtime (float32) against PyTorch autograd in
// float64, relative error (infinity norms) <= 1e-4.
func TestGradientRulesMatchPyTorch(t *testing.T) {
	testutil.InitORT(t)
	dir := t.TempDir()
	cases := gradCases()
	covered := map[string]bool{}
	type result struct {
		y     []float32
		grads map[int][]float32
	}
	results := make([]result, len(cases))
	var spec []map[string]any
	for ci, c := range cases {
		g := New(c.name, DefaultOpset)
		r := rand.New(rand.NewPCG(uint64(ci), 99))
		var ins []*Value
		var feeds [][]float32
		var specIns []map[string]any
		for i, s := range c.shapes {
			v := g.Input(fmt.Sprintf("x%d", i), Float, S(s...))
			ins = append(ins, v)
			data := make([]float32, S(s...).NumElements())
			for j := range data {
				if c.dist == "positive" {
					data[j] = float32(0.5 + 1.5*r.Float64())
				} else {
					data[j] = float32(r.NormFloat64())
				}
			}
			feeds = append(feeds, data)
			f := filepath.Join(dir, fmt.Sprintf("c%d_x%d.bin", ci, i))
			testutil.WriteFloats(t, f, data)
			specIns = append(specIns, map[string]any{"file": f, "shape": s})
		}
		y := c.build(g, ins)
		for _, n := range g.Nodes {
			covered[n.Op] = true
		}
		if g.Err() != nil {
			t.Fatalf("%s: %v", c.name, g.Err())
		}
		dy := g.Input("dy", Float, y.Shape)
		dyData := make([]float32, y.Shape.NumElements())
		for j := range dyData {
			dyData[j] = float32(r.NormFloat64())
		}
		var wrt []*Value
		for _, i := range c.wrt {
			wrt = append(wrt, ins[i])
		}
		grads, err := g.Gradients(y, wrt, dy)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		g.Output(y)
		g.Output(grads...)
		if c.lower {
			if err := g.LowerBatchStats(); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if y.Producer.Op != "Conv" || y.Producer.Role != RoleLowered {
				t.Fatalf("%s: LowerBatchStats left %s (%s)", c.name, y.Producer.Op, y.Producer.Role)
			}
			if _, err := g.Gradients(y, wrt, dy); err == nil || !strings.Contains(err.Error(), "LowerBatchStats") {
				t.Fatalf("%s: differentiating a lowered graph: %v, want an error naming LowerBatchStats", c.name, err)
			}
		}
		model, err := g.Marshal(ModelInfo{})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		sess, err := runtime.NewSession(model, nil, nil, runtime.Options{IntraOpThreads: 1})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var tensors []*runtime.Tensor
		for i, s := range c.shapes {
			tt, _ := runtime.NewFloat32(s, feeds[i])
			tensors = append(tensors, tt)
		}
		dt, _ := runtime.NewFloat32(y.Shape.Ints(), dyData)
		tensors = append(tensors, dt)
		outs, err := sess.Run(tensors, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		res := result{y: append([]float32{}, outs[0].Float32s()...), grads: map[int][]float32{}}
		for k, i := range c.wrt {
			res.grads[i] = append([]float32{}, outs[1+k].Float32s()...)
		}
		results[ci] = res
		for _, o := range outs {
			o.Destroy()
		}
		for _, tt := range tensors {
			tt.Destroy()
		}
		sess.Destroy()
		f := filepath.Join(dir, fmt.Sprintf("c%d_dy.bin", ci))
		testutil.WriteFloats(t, f, dyData)
		spec = append(spec, map[string]any{"name": c.name, "op": c.op, "attrs": c.attrs, "inputs": specIns,
			"dy": map[string]any{"file": f, "shape": y.Shape.Ints()}, "wrt": c.wrt, "out": filepath.Join(dir, fmt.Sprintf("c%d", ci))})
	}
	specPath := filepath.Join(dir, "spec.json")
	b, _ := json.Marshal(map[string]any{"cases": spec})
	if err := os.WriteFile(specPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.RunOracle(t, "grad_ops.py", specPath)
	for ci, c := range cases {
		out := filepath.Join(dir, fmt.Sprintf("c%d", ci))
		e := testutil.RelErr(results[ci].y, testutil.ReadFloats(t, out+".y.bin"))
		if e > 1e-4 {
			t.Errorf("%s: forward differs from PyTorch by %.3g", c.name, e)
		}
		errs := []string{fmt.Sprintf("y %.2g", e)}
		for _, i := range c.wrt {
			want := testutil.ReadFloats(t, fmt.Sprintf("%s.g%d.bin", out, i))
			e := testutil.RelErr(results[ci].grads[i], want)
			if e > 1e-4 {
				t.Errorf("%s: gradient of input %d differs from PyTorch by %.3g", c.name, i, e)
			}
			errs = append(errs, fmt.Sprintf("d%d %.2g", i, e))
		}
		t.Logf("%s: relative error %s", c.name, strings.Join(errs, ", "))
	}
	var missing []string
	for op := range gradRules {
		if !covered[op] {
			missing = append(missing, op)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("gradient rules without a test case: %v", missing)
	}
}

// TestReluMaskThreshold pins the float32 ReLU gradient's mask
// (HardSigmoid with alpha the largest float, gradRelu) where it matters:
// dY passes whole from the smallest normal float up to the largest, and
// from 1/alpha = 2.94e-39 in the subnormals, is stopped at 0 and for
// negative inputs, and only below 2.94e-39 is scaled, as documented.
func TestReluMaskThreshold(t *testing.T) {
	testutil.InitORT(t)
	xs := []float32{-1, 0, 2.95e-39, math.SmallestNonzeroFloat32 * (1 << 23), 1, math.MaxFloat32, 1e-39}
	want := []float32{0, 0, 1, 1, 1, 1, float32(float64(float32(1e-39)) * math.MaxFloat32)}
	g := New("relu_mask", DefaultOpset)
	x := g.Input("x", Float, S(int64(len(xs))))
	y := g.Relu(x)
	grads, err := g.Gradients(g.ReduceSum(y, nil, false), []*Value{x}, g.Scalar(Float, 1))
	if err != nil {
		t.Fatal(err)
	}
	g.Output(grads...)
	got := validateAndRun(t, g, [][]int64{{int64(len(xs))}}, [][]float32{xs})[0]
	for i := range xs {
		if math.Abs(float64(got[i]-want[i])) > 1e-6 {
			t.Errorf("x = %g: gradient %g, want %g", xs[i], got[i], want[i])
		}
	}
}
