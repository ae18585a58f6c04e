package training

import (
	"fmt"
	"math"

	"github.com/ortrain/ortrain/graphgen"
	"github.com/ortrain/ortrain/runtime"
)

// UseCPUKernels makes o the float32 step for ONNX Runtime's CPU provider:
// small planes as batch-wide products (BatchGemm), and the blocked
// convolutions when this ONNX Runtime has them (NchwcBlock's probe, whose
// error it returns; the step is then built without them).
func (o *StepOptions) UseCPUKernels(rt runtime.Options) error {
	o.BatchGemm = true
	var err error
	o.NchwcBlock, err = NchwcBlock(rt)
	return err
}

// NchwcBlock finds the block size of ONNX Runtime's blocked (NCHWc) CPU
// convolutions in the loaded library, for StepOptions.NchwcBlock: it runs
// two small 3x3 convolutions as ONNX Runtime's Conv and lowered with each
// candidate block size (16, the AVX-512 one, then 8, that of other x86-64
// CPUs) and returns the first whose values match, or 0 with the reason when
// none does (another CPU, or a library without the kernels): the step then
// stays the portable graph. Probing instead of reading CPU flags means a
// wrong guess cannot give a wrong step. It takes a few milliseconds. Only
// the thread count of rt is used; the probe always runs on the CPU.
func NchwcBlock(rt runtime.Options) (int64, error) {
	var reasons []error
	for _, block := range []int64{16, 8} {
		ok, err := nchwcMatches(block, rt.IntraOpThreads)
		if ok {
			return block, nil
		}
		if err == nil {
			err = fmt.Errorf("block %d: blocked convolution differs from Conv", block)
		}
		reasons = append(reasons, err)
	}
	return 0, fmt.Errorf("no NCHWc block size: %v", reasons)
}

// nchwcMatches runs Conv and its LowerNchwc form on the same inputs: a
// 3x3 convolution of 32 channels, whose blocked form is right with any
// block size dividing 32 (ReorderInput blocks by the runtime's own), and
// one of 8 channels, which the lowering reads as NCHW with block 16 and
// reorders with block 8, so that only the runtime's block size gives the
// Conv's values (the other gives wrong values or fails to run).
func nchwcMatches(block int64, threads int) (bool, error) {
	const n, c, c8, hw = 1, 32, 8, 14
	g := graphgen.New("nchwc_probe", graphgen.DefaultOpset)
	x := g.Input("x", graphgen.Float, graphgen.S(n, c, hw, hw))
	w := g.Input("w", graphgen.Float, graphgen.S(c, c, 3, 3))
	x8 := g.Input("x8", graphgen.Float, graphgen.S(n, c8, hw, hw))
	w8 := g.Input("w8", graphgen.Float, graphgen.S(2*c8, c8, 3, 3))
	o := graphgen.ConvOpts{Pads: []int64{1, 1, 1, 1}}
	g.Output(g.Concat(1, g.Conv(x, w, nil, o), g.Conv(x8, w8, nil, o)))
	plain, err := g.Marshal(graphgen.ModelInfo{})
	if err != nil {
		return false, err
	}
	if err := g.LowerNchwc(block); err != nil {
		return false, err
	}
	lowered, err := g.Marshal(graphgen.ModelInfo{})
	if err != nil {
		return false, err
	}
	shapes := [][]int64{{n, c, hw, hw}, {c, c, 3, 3}, {n, c8, hw, hw}, {2 * c8, c8, 3, 3}}
	feeds := make([][]float32, len(shapes))
	for k, s := range shapes {
		feeds[k] = make([]float32, graphgen.S(s...).NumElements())
		for i := range feeds[k] {
			if k%2 == 0 {
				feeds[k][i] = float32(math.Sin(float64(i)*0.37+float64(k))) + 0.1
			} else {
				feeds[k][i] = float32(math.Cos(float64(i)*0.91 + float64(k)))
			}
		}
	}
	want, err := runOnce(plain, threads, shapes, feeds)
	if err != nil {
		return false, err
	}
	got, err := runOnce(lowered, threads, shapes, feeds)
	if err != nil {
		return false, fmt.Errorf("block %d: %w", block, err)
	}
	scale := 0.0
	for _, v := range want {
		scale = math.Max(scale, math.Abs(float64(v)))
	}
	if len(got) != len(want) || scale == 0 || math.IsNaN(scale) {
		return false, nil
	}
	for i := range want {
		if !(math.Abs(float64(got[i]-want[i])) <= 1e-5*scale) { // NaN fails too
			return false, nil
		}
	}
	return true, nil
}

// runOnce runs a float32 model once on the CPU and returns its first output.
func runOnce(model []byte, threads int, shapes [][]int64, feeds [][]float32) ([]float32, error) {
	sess, err := runtime.NewSession(model, nil, nil, runtime.Options{IntraOpThreads: threads})
	if err != nil {
		return nil, err
	}
	defer sess.Destroy()
	var ins []*runtime.Tensor
	for i, s := range shapes {
		t, err := runtime.NewFloat32(s, feeds[i])
		if err != nil {
			return nil, err
		}
		defer t.Destroy()
		ins = append(ins, t)
	}
	return sess.RunFirstFloat32(ins)
}
