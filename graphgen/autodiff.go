package graphgen

import (
	"fmt"
)

// Gradients appends to g the nodes that compute the gradient of loss with
// respect to each value in wrt (reverse-mode automatic differentiation), and
// returns them in the order of wrt. seed is d(objective)/d(loss): a tensor of
// loss's type and shape, typically the scalar 1 or the loss scale.
//
// Only nodes on a path from some wrt value to loss are differentiated, and a
// node's rule is asked only for the input gradients that lead back to wrt
// (the convolution on the input images, say, gets no input gradient). Values
// used more than once (residual branches) sum their gradients. A Detach
// stops the path. Every rule is in gradRules; an operator without one is an
// error naming it. A wrt value that loss does not depend on gets a zero
// gradient.
//
// Autodiff needs static shapes on the differentiated path.
func (g *Graph) Gradients(loss *Value, wrt []*Value, seed *Value) ([]*Value, error) {
	if g.err != nil {
		return nil, g.err
	}
	if !loss.DType.IsFloat() {
		return nil, fmt.Errorf("gradients: loss %s is not floating point", loss)
	}
	if seed.DType != loss.DType {
		return nil, fmt.Errorf("gradients: seed %v does not match loss %v", seed.DType, loss.DType)
	}
	nodes := append([]*Node{}, g.Nodes...) // the forward graph, before we append to it
	dep, err := dependsOnAny(nodes, wrt)
	if err != nil {
		return nil, err
	}
	reach := reaches(nodes, loss)
	c := &gradCtx{g: g}
	grads := map[*Value][]*Value{loss: {seed}}
	for i := len(nodes) - 1; i >= 0; i-- {
		n := nodes[i]
		dy := make([]*Value, len(n.Outputs))
		active := false
		for j, o := range n.Outputs {
			if dep[o] && reach[o] && len(grads[o]) > 0 {
				dy[j] = c.total(o, grads[o])
				active = true
			}
		}
		if !active {
			continue
		}
		if err := c.backward(n, dy, dep, grads); err != nil {
			return nil, err
		}
	}
	out := make([]*Value, len(wrt))
	for i, w := range wrt {
		if len(grads[w]) == 0 {
			if !w.Shape.Static() {
				return nil, fmt.Errorf("gradients: %s has a dynamic shape", w)
			}
			out[i] = g.ConstantOfShape(w.DType, 0, w.Shape.Ints()...)
			continue
		}
		out[i] = c.total(w, grads[w])
	}
	return out, g.err
}

// dependsOnAny marks the values that depend on some wrt value through
// floating-point edges, in a forward pass over the nodes. A Detach's
// output depends on nothing.
func dependsOnAny(nodes []*Node, wrt []*Value) (map[*Value]bool, error) {
	dep := map[*Value]bool{}
	for _, w := range wrt {
		if !w.DType.IsFloat() {
			return nil, fmt.Errorf("gradients: %s is not floating point", w)
		}
		dep[w] = true
	}
	for _, n := range nodes {
		if n.Role == RoleDetached {
			continue
		}
		for _, in := range n.Inputs {
			if in != nil && dep[in] && in.DType.IsFloat() {
				for _, o := range n.Outputs {
					dep[o] = o.DType.IsFloat()
				}
				break
			}
		}
	}
	return dep, nil
}

// reaches marks the values from which loss is reachable through
// floating-point edges, in a backward pass over the nodes.
func reaches(nodes []*Node, loss *Value) map[*Value]bool {
	reach := map[*Value]bool{loss: true}
	for i := len(nodes) - 1; i >= 0; i-- {
		n := nodes[i]
		for _, o := range n.Outputs {
			if reach[o] {
				for _, in := range n.Inputs {
					if in != nil && in.DType.IsFloat() {
						reach[in] = true
					}
				}
				break
			}
		}
	}
	return reach
}

// backward applies n's rule to its output gradients dy and adds the
// input gradients that lead back to a wrt value (dep) to grads.
func (c *gradCtx) backward(n *Node, dy []*Value, dep map[*Value]bool, grads map[*Value][]*Value) error {
	g := c.g
	need := make([]bool, len(n.Inputs))
	anyNeed := false
	for j, in := range n.Inputs {
		need[j] = in != nil && in.DType.IsFloat() && dep[in]
		anyNeed = anyNeed || need[j]
	}
	if !anyNeed {
		return nil
	}
	if n.Role == RoleLowered {
		return fmt.Errorf("gradients: node %s was rewritten by LowerBatchStats; differentiate first", n.Name)
	}
	rule, ok := gradRules[n.Op]
	if !ok {
		return fmt.Errorf("gradients: no gradient rule for operator %s (node %s)", n.Op, n.Name)
	}
	prev := g.SetScope("grad/" + n.Name)
	dx, err := rule(c, n, dy, need)
	g.SetScope(prev)
	if err == nil {
		err = g.err
	}
	if err != nil {
		return fmt.Errorf("gradients: %s node %s: %w", n.Op, n.Name, err)
	}
	for j, d := range dx {
		if d == nil || !need[j] {
			continue
		}
		in := n.Inputs[j]
		if !d.Shape.Equal(in.Shape) || d.DType != in.DType {
			return fmt.Errorf("gradients: %s node %s: gradient of input %d is %v%v, input is %v%v",
				n.Op, n.Name, j, d.DType, d.Shape, in.DType, in.Shape)
		}
		grads[in] = append(grads[in], d)
	}
	return nil
}

// gradCtx carries the graph and helpers the gradient rules share.
type gradCtx struct {
	g      *Graph
	summed map[*Value]*Value
}

// total sums the gradient contributions of one value (once), in the
// scope grad/sum. Two contributions (a residual join) are an Add rather
// than a Sum: ONNX Runtime's CPU Add uses every intra-op thread and its Sum
// one (BenchmarkKernelGradSum).
func (c *gradCtx) total(v *Value, parts []*Value) *Value {
	if len(parts) == 1 {
		return parts[0]
	}
	if c.summed == nil {
		c.summed = map[*Value]*Value{}
	}
	if s, ok := c.summed[v]; ok {
		return s
	}
	prev := c.g.SetScope("grad/sum")
	var s *Value
	if len(parts) == 2 {
		s = c.g.Add(parts[0], parts[1])
	} else {
		s = c.g.Sum(parts...)
	}
	c.g.SetScope(prev)
	c.summed[v] = s
	return s
}

// scalar is a rank-0 constant of dt.
func (c *gradCtx) scalar(dt DType, v float64) *Value { return c.g.Scalar(dt, v) }

// zeros is a constant tensor of zeros like v (static shape).
func (c *gradCtx) zerosLike(v *Value) *Value {
	return c.g.ConstantOfShape(v.DType, 0, v.Shape.Ints()...)
}

// unbroadcast sums grad over the axes along which a value of shape target
// was broadcast to grad's shape, and reshapes to target.
func (c *gradCtx) unbroadcast(grad *Value, target Shape) (*Value, error) {
	if grad.Shape.Equal(target) {
		return grad, nil
	}
	if !grad.Shape.Static() || !target.Static() {
		return nil, fmt.Errorf("broadcast gradient needs static shapes, got %v and %v", grad.Shape, target)
	}
	gr, tr := grad.Shape.Rank(), target.Rank()
	var axes []int64
	for i := 0; i < gr; i++ {
		j := i - (gr - tr)
		if j < 0 || (target[j].Size == 1 && grad.Shape[i].Size != 1) {
			axes = append(axes, int64(i))
		}
	}
	r := grad
	if len(axes) > 0 {
		r = c.g.ReduceSum(grad, axes, true)
	}
	if !r.Shape.Equal(target) {
		r = c.g.Reshape(r, target.Ints()...)
	}
	return r, nil
}

// reshapeTo reshapes v to a static shape.
func (c *gradCtx) reshapeTo(v *Value, s Shape) (*Value, error) {
	if v.Shape.Equal(s) {
		return v, nil
	}
	if !s.Static() {
		return nil, fmt.Errorf("needs a static shape, got %v", s)
	}
	return c.g.Reshape(v, s.Ints()...), nil
}

// channelShape is (1, C, 1, ..., 1) for broadcasting per-channel values
// against a tensor of rank r.
func channelShape(r int) []int64 {
	s := make([]int64, r)
	for i := range s {
		s[i] = 1
	}
	s[1] = -1
	return s
}
