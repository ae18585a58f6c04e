package graphgen

import (
	"math/rand/v2"
	"testing"

	"github.com/ortrain/ortrain/internal/testutil"
)

// nchwcCase is a graph of convolutions LowerNchwc should rewrite and
// should leave alone, with random inputs.
func nchwcCase(t *testing.T, block int64) (plain, lowered []byte, shapes [][]int64, feeds [][]float32, rewritten int) {
	t.Helper()
	build := func() *Graph {
		g := New("nchwc", DefaultOpset)
		x := g.Input("x", Float, S(2, 32, 15, 15))
		w := g.Input("w", Float, S(48, 32, 3, 3))
		b := g.Input("b", Float, S(48))
		w2 := g.Input("w2", Float, S(16, 32, 3, 3))
		w1 := g.Input("w1", Float, S(16, 32, 1, 1))
		wg := g.Input("wg", Float, S(32, 16, 3, 3))
		img := g.Input("img", Float, S(2, 3, 15, 15))
		wi := g.Input("wi", Float, S(32, 3, 3, 3))
		x8 := g.Input("x8", Float, S(2, 8, 15, 15))
		w8 := g.Input("w8", Float, S(16, 8, 3, 3))
		pad := ConvOpts{Pads: []int64{1, 1, 1, 1}}
		y := g.Conv(x, w, b, pad)                                                             // rewritten: 3x3, bias, 15x15 plane
		y2 := g.Conv(x, w2, nil, pad)                                                         // rewritten, sharing x's reorder
		y3 := g.Conv(y, flipKernel(g, w), nil, pad)                                           // rewritten: a computed weight
		ys := g.Conv(x, w2, nil, ConvOpts{Pads: []int64{1, 1, 1, 1}, Strides: []int64{3, 3}}) // 5x5 plane: left alone
		yi := g.Conv(img, wi, nil, ConvOpts{Pads: []int64{1, 1, 1, 1}})                       // rewritten: 3 channels read as NCHW
		// rewritten: 8 channels, read as NCHW with block 16 and reordered
		// with block 8; only the runtime's block gives the Conv's values
		y8 := g.Conv(x8, w8, nil, pad)
		y1 := g.Conv(x, w1, nil, ConvOpts{})                                    // 1x1: left alone
		yg := g.Conv(x, wg, nil, ConvOpts{Pads: []int64{1, 1, 1, 1}, Group: 2}) // grouped: left alone
		wc := g.Const(FilledTensor(Float, []int64{16, 32, 3, 3}, 0.01))
		yc := g.Conv(x, wc, nil, pad) // constant weight: ONNX Runtime's own transformer's
		g.Output(y, y2, y3, ys, y1, yg, yc, yi, y8)
		return g
	}
	var err error
	if plain, err = build().Marshal(ModelInfo{}); err != nil {
		t.Fatal(err)
	}
	g := build()
	if err := g.LowerNchwc(block); err != nil {
		t.Fatal(err)
	}
	for _, n := range g.Nodes {
		if n.Op == "Conv" && n.Domain == NchwcDomain {
			rewritten++
		}
	}
	if lowered, err = g.Marshal(ModelInfo{}); err != nil {
		t.Fatal(err)
	}
	shapes = [][]int64{{2, 32, 15, 15}, {48, 32, 3, 3}, {48}, {16, 32, 3, 3}, {16, 32, 1, 1}, {32, 16, 3, 3}, {2, 3, 15, 15}, {32, 3, 3, 3}, {2, 8, 15, 15}, {16, 8, 3, 3}}
	r := rand.New(rand.NewPCG(7, 8))
	for _, s := range shapes {
		d := make([]float32, S(s...).NumElements())
		for i := range d {
			d[i] = float32(r.NormFloat64())
		}
		feeds = append(feeds, d)
	}
	return plain, lowered, shapes, feeds, rewritten
}

// The blocked convolutions give the Conv's values with ONNX Runtime's block
// size, and wrong ones with the other candidate, so the layout is what the
// kernel reads and the test can fail.
func TestLowerNchwcKeepsResults(t *testing.T) {
	testutil.InitORT(t)
	matched := 0
	for _, block := range []int64{16, 8} {
		plain, lowered, shapes, feeds, rewritten := nchwcCase(t, block)
		if rewritten != 5 {
			t.Fatalf("block %d: %d convolutions rewritten, want 5", block, rewritten)
		}
		want := testutil.RunFloat32(t, plain, shapes, feeds)
		got, err := testutil.TryRunFloat32(lowered, shapes, feeds)
		if err != nil {
			t.Logf("block %d: %v", block, err)
			continue
		}
		worst := 0.0
		for i := range want {
			worst = max(worst, testutil.RelErr(got[i], want[i]))
		}
		t.Logf("block %d: worst relative difference %.3g", block, worst)
		if worst < 1e-5 {
			matched++
		}
	}
	if matched != 1 {
		t.Fatalf("%d of the block sizes 16 and 8 match the Conv, want exactly one (ONNX Runtime's)", matched)
	}
}
