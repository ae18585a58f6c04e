package training

import "github.com/ortrain/ortrain/graphgen"

// optimizer is PyTorch's SGD(nesterov=True) for every parameter, in
// float32 on the master weights:
//
//	d = g + wd*p   (only decayed parameters: conv and FC weights under no-bias-decay)
//	buf = momentum*buf + d
//	p = p - lr*(d + momentum*buf)
//
// It returns the new parameters and momentum buffers, named as outputs.
// When a gradient is not finite the step's outputs are not a valid state
// and the runner keeps its inputs (Stepper does, so a skipped step leaves
// the state bit for bit as it was): gating in the graph would cost a Where
// per tensor, slower than the update itself on ONNX Runtime's CPU provider
// (BenchmarkKernelBroadcast).
func (b *stepBuilder) optimizer(grads []*graphgen.Value) []*graphgen.Value {
	g, f32 := b.g, graphgen.Float
	g.SetScope("optimizer")
	lr, mom, wd := b.scalar[InLR], b.scalar[InMomentum], b.scalar[InWeightDecay]
	var outs []*graphgen.Value
	for i, p := range b.s.Params {
		w := b.inputs[p.Name]
		buf := g.Input(MomentumName(p.Name), f32, graphgen.S(p.Shape...))
		d := grads[i]
		if p.Decayed {
			d = g.Add(d, g.Mul(wd, w))
		}
		newBuf := g.Add(g.Mul(mom, buf), d)
		newW := g.Sub(w, g.Mul(lr, g.Add(d, g.Mul(mom, newBuf))))
		g.RenameOutput(newW, NewName(p.Name))
		g.RenameOutput(newBuf, NewName(MomentumName(p.Name)))
		outs = append(outs, newW, newBuf)
	}
	return outs
}
