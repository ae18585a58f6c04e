package training

import "github.com/ortrain/ortrain/graphgen"

// CrossEntropy is the batch mean of -sum_k q_k log softmax(z)_k for soft
// targets q (N,K) and logits z (N,K), shape (1).
func CrossEntropy(g *graphgen.Graph, z, q *graphgen.Value) *graphgen.Value {
	n := z.Shape[0].Size
	s := g.Reshape(g.ReduceSum(g.Mul(q, g.LogSoftmax(z, 1)), nil, true), 1)
	return g.Mul(s, g.Scalar(z.DType, -1/float64(n)))
}

// DistillationLoss is the paper's soft term, T^2 * CE(softmax(r/T),
// softmax(z/T)), averaged over the batch, for student logits z, teacher
// logits r and a scalar temperature T. No gradient reaches the teacher.
func DistillationLoss(g *graphgen.Graph, z, r, temp *graphgen.Value) *graphgen.Value {
	p := g.Softmax(g.Div(r, temp), 1)
	ce := CrossEntropy(g, g.Div(z, temp), p)
	return g.Mul(ce, g.Mul(temp, temp))
}
