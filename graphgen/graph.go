package graphgen

import (
	"fmt"
	"sort"
	"strconv"
)

// Value is a typed tensor flowing through the graph: a graph input, an
// initializer, or a node output.
type Value struct {
	Name     string
	DType    DType
	Shape    Shape
	Producer *Node // nil for graph inputs and initializers
}

func (v *Value) String() string {
	return fmt.Sprintf("%s:%v%v", v.Name, v.DType, v.Shape)
}

// Attrs are a node's attributes. Values are int, int64, float32, float64,
// string, []int64, []float32, []string or *Tensor.
type Attrs map[string]any

// Node is one operator application.
type Node struct {
	Name    string
	Op      string
	Domain  string
	Inputs  []*Value // nil entries stand for omitted optional inputs
	Outputs []*Value
	Attrs   Attrs
	// Role annotates a node for autodiff and the lowering passes; it is
	// not serialized.
	Role string
}

// Node roles.
const (
	// RoleBatchStats: a BatchNormalization whose input is the shifted
	// batch x - shift, whose mean input is that input's batch mean and
	// whose variance input is its batch variance; its rule returns the
	// full training-mode gradient with respect to x (BatchNormBatchStats).
	RoleBatchStats = "batch-stats"
	// RoleCentering: the Sub that shifts x in BatchNormBatchStats, which
	// LowerBatchStats folds into the Conv before it.
	RoleCentering = "centering"
	// RoleDetached: an Identity whose output carries no gradient
	// (Detach).
	RoleDetached = "detached"
	// RoleLowered: a node LowerBatchStats rewrote; it is no longer
	// differentiable by its operator's rule.
	RoleLowered = "lowered"
)

// Int reads an integer attribute, or def when it is absent.
func (n *Node) Int(name string, def int64) int64 {
	switch v := n.Attrs[name].(type) {
	case int:
		return int64(v)
	case int64:
		return v
	}
	return def
}

// Float reads a float attribute, or def when it is absent.
func (n *Node) Float(name string, def float32) float32 {
	switch v := n.Attrs[name].(type) {
	case float32:
		return v
	case float64:
		return float32(v)
	}
	return def
}

// Ints reads an integer-list attribute, or nil when it is absent.
func (n *Node) Ints(name string) []int64 {
	if v, ok := n.Attrs[name].([]int64); ok {
		return v
	}
	return nil
}

// Str reads a string attribute, or def when it is absent.
func (n *Node) Str(name, def string) string {
	if v, ok := n.Attrs[name].(string); ok {
		return v
	}
	return def
}

// Initializer is a named constant tensor stored in the model.
type Initializer struct {
	Value  *Value
	Tensor *Tensor
}

// Graph is an ONNX graph under construction, with the opset it targets.
type Graph struct {
	Name    string
	Doc     string
	Opset   int64
	Inputs  []*Value
	Outputs []*Value
	Nodes   []*Node
	Inits   []*Initializer
	// Defaults are initial values of graph inputs, written as initializers
	// named like the input (ONNX's overridable initializers): a runtime uses
	// them when the input is not fed. They are not constants.
	Defaults []*Initializer

	err       error
	names     map[string]bool
	counter   int
	scope     string
	inits     map[string]*Initializer
	constants map[string]*Value
}

// Supported opsets: 17 is the default (Debian's onnx checker goes up to it and
// every major runtime serves it); newer ones change the form of a few operators
// (reductions take axes as an input from 18), which the builder handles.
const (
	MinOpset     = 17
	MaxOpset     = 21
	DefaultOpset = 17
)

// New starts an empty graph for the given opset.
func New(name string, opset int64) *Graph {
	g := &Graph{
		Name:      name,
		Opset:     opset,
		names:     map[string]bool{},
		inits:     map[string]*Initializer{},
		constants: map[string]*Value{},
	}
	if opset < MinOpset || opset > MaxOpset {
		g.fail(fmt.Errorf("opset %d is not supported (choose %d to %d)", opset, MinOpset, MaxOpset))
	}
	return g
}

// Err is the first error met while building, or nil.
func (g *Graph) Err() error { return g.err }

func (g *Graph) fail(err error) {
	if g.err == nil {
		g.err = err
	}
}

// Failf records an error found by code that builds on the graph.
func (g *Graph) Failf(format string, args ...any) {
	g.fail(fmt.Errorf(format, args...))
}

// SetScope sets the prefix of automatically chosen node and value names
// (for example "layer2.0") and returns the previous one.
func (g *Graph) SetScope(scope string) string {
	prev := g.scope
	g.scope = scope
	return prev
}

// uniqueName returns base if unused, else base_<n>, and reserves it.
func (g *Graph) uniqueName(base string) string {
	name := base
	for i := 1; g.names[name]; i++ {
		name = base + "_" + strconv.Itoa(i)
	}
	g.names[name] = true
	return name
}

func (g *Graph) autoName(op string) string {
	g.counter++
	base := op + "_" + strconv.Itoa(g.counter)
	if g.scope != "" {
		base = g.scope + "/" + base
	}
	return g.uniqueName(base)
}

// Input declares a graph input.
func (g *Graph) Input(name string, dt DType, shape Shape) *Value {
	if g.names[name] {
		g.fail(fmt.Errorf("input %q: name already used", name))
	}
	g.names[name] = true
	v := &Value{Name: name, DType: dt, Shape: shape.Clone()}
	g.Inputs = append(g.Inputs, v)
	return v
}

// Initializer adds a named constant tensor (a weight, say) to the graph.
func (g *Graph) Initializer(name string, t *Tensor) *Value {
	if t == nil {
		g.fail(fmt.Errorf("initializer %q: no tensor", name))
		return &Value{Name: name}
	}
	if err := t.check(); err != nil {
		g.fail(fmt.Errorf("initializer %q: %w", name, err))
		return &Value{Name: name, DType: t.DType}
	}
	if g.names[name] {
		g.fail(fmt.Errorf("initializer %q: name already used", name))
		return &Value{Name: name, DType: t.DType, Shape: t.Shape()}
	}
	g.names[name] = true
	return g.addInitializer(name, t)
}

// addInitializer stores an initializer under a name already reserved.
func (g *Graph) addInitializer(name string, t *Tensor) *Value {
	v := &Value{Name: name, DType: t.DType, Shape: t.Shape()}
	in := &Initializer{Value: v, Tensor: t}
	g.Inits = append(g.Inits, in)
	g.inits[name] = in
	return v
}

// SetDefault gives a graph input a default value (see Graph.Defaults).
func (g *Graph) SetDefault(input *Value, t *Tensor) {
	if input == nil || t == nil {
		g.fail(fmt.Errorf("default: input or tensor missing"))
		return
	}
	found := false
	for _, in := range g.Inputs {
		found = found || in == input
	}
	if !found {
		g.fail(fmt.Errorf("default for %q: not a graph input", input.Name))
		return
	}
	if err := t.check(); err != nil || !t.Shape().Equal(input.Shape) || t.DType != input.DType {
		g.fail(fmt.Errorf("default for %q: tensor %v%v does not fit the input %v%v (%v)", input.Name, t.DType, t.Dims, input.DType, input.Shape, err))
		return
	}
	g.Defaults = append(g.Defaults, &Initializer{Value: input, Tensor: t})
}

// LookupInitializer finds an initializer by name.
func (g *Graph) LookupInitializer(name string) (*Initializer, bool) {
	in, ok := g.inits[name]
	return in, ok
}

// ConstData returns the tensor behind v when v is an initializer, else nil.
func (g *Graph) ConstData(v *Value) *Tensor {
	if v == nil || v.Producer != nil {
		return nil
	}
	if in, ok := g.inits[v.Name]; ok && in.Value == v {
		return in.Tensor
	}
	return nil
}

// Const adds an anonymous constant; identical small constants are shared.
func (g *Graph) Const(t *Tensor) *Value {
	if t == nil {
		g.fail(fmt.Errorf("constant: no tensor"))
		return placeholder()
	}
	key := ""
	if t.NumElements() <= 16 {
		key = fmt.Sprintf("%d%v%v%v%x", t.DType, t.Dims, t.Float32, t.Int64, t.Raw)
		if v, ok := g.constants[key]; ok {
			return v
		}
	}
	if err := t.check(); err != nil {
		g.fail(fmt.Errorf("constant: %w", err))
		return &Value{Name: "const", DType: t.DType}
	}
	v := g.addInitializer(g.uniqueName("const"), t)
	if key != "" {
		g.constants[key] = v
	}
	return v
}

// Scalar is a rank-0 constant of type dt.
func (g *Graph) Scalar(dt DType, v float64) *Value { return g.Const(ScalarTensor(dt, v)) }

// Ints64 is a 1-D int64 constant (shapes, axes, indices).
func (g *Graph) Ints64(vals ...int64) *Value {
	return g.Const(Int64Tensor([]int64{int64(len(vals))}, append([]int64{}, vals...)))
}

// Output marks values as graph outputs.
func (g *Graph) Output(vs ...*Value) {
	for _, v := range vs {
		if v == nil {
			g.fail(fmt.Errorf("graph output is nil"))
			return
		}
	}
	g.Outputs = append(g.Outputs, vs...)
}

// RenameOutput gives a node output a chosen name (graph outputs such as
// "logits" read better than generated names). The name must be unused.
func (g *Graph) RenameOutput(v *Value, name string) {
	if v == nil {
		g.fail(fmt.Errorf("rename to %q: no value", name))
		return
	}
	if v.Producer == nil {
		g.fail(fmt.Errorf("rename %q: only node outputs can be renamed", v.Name))
		return
	}
	if g.names[name] {
		g.fail(fmt.Errorf("rename %q to %q: name already used", v.Name, name))
		return
	}
	delete(g.names, v.Name)
	g.names[name] = true
	v.Name = name
}

// Op appends a node with nOut outputs, infers their types and shapes, and
// returns them. Op is the generic form behind the typed builder methods; it
// also serves operators those do not cover.
func (g *Graph) Op(op string, inputs []*Value, attrs Attrs, nOut int) []*Value {
	if nOut < 1 {
		g.fail(fmt.Errorf("%s: a node needs at least one output", op))
		return []*Value{placeholder()}
	}
	n := &Node{Name: g.autoName(op), Op: op, Inputs: inputs, Attrs: attrs}
	outs := make([]*Value, nOut)
	for i := range outs {
		name := n.Name
		if nOut > 1 {
			name = n.Name + ":" + strconv.Itoa(i)
		}
		if i > 0 || nOut > 1 {
			name = g.uniqueName(name)
		}
		outs[i] = &Value{Name: name, Producer: n}
	}
	n.Outputs = outs
	if g.err != nil {
		return outs
	}
	for i, in := range inputs {
		if in == nil {
			continue
		}
		if in.DType == Undefined {
			g.fail(fmt.Errorf("%s %s: input %d (%s) has no type", op, n.Name, i, in.Name))
			return outs
		}
	}
	rule, ok := inferRules[op]
	if !ok {
		g.fail(fmt.Errorf("%s %s: no shape inference for operator %s", op, n.Name, op))
		return outs
	}
	if err := rule(g, n); err != nil {
		g.fail(fmt.Errorf("%s %s: %w", op, n.Name, err))
		return outs
	}
	g.Nodes = append(g.Nodes, n)
	return outs
}

// Op1 is Op for single-output operators.
func (g *Graph) Op1(op string, inputs []*Value, attrs Attrs) *Value {
	return g.Op(op, inputs, attrs, 1)[0]
}

// Consumers maps each value name to the nodes that read it.
func (g *Graph) Consumers() map[string][]*Node {
	m := map[string][]*Node{}
	for _, n := range g.Nodes {
		for _, in := range n.Inputs {
			if in != nil {
				m[in.Name] = append(m[in.Name], n)
			}
		}
	}
	return m
}

// Validate checks that every node input is defined before use, names are
// unique, and every output is produced.
func (g *Graph) Validate() error {
	if g.err != nil {
		return g.err
	}
	defined := map[*Value]bool{}
	for _, v := range g.Inputs {
		defined[v] = true
	}
	for _, in := range g.Inits {
		defined[in.Value] = true
	}
	seen := map[string]bool{}
	for _, n := range g.Nodes {
		for i, in := range n.Inputs {
			if in != nil && !defined[in] {
				return fmt.Errorf("node %s (%s): input %d %q is not defined before use", n.Name, n.Op, i, in.Name)
			}
		}
		for _, o := range n.Outputs {
			if seen[o.Name] {
				return fmt.Errorf("node %s (%s): output name %q used twice", n.Name, n.Op, o.Name)
			}
			seen[o.Name] = true
			defined[o] = true
		}
	}
	for _, o := range g.Outputs {
		if !defined[o] {
			return fmt.Errorf("graph output %q is not produced", o.Name)
		}
	}
	return nil
}

// sortedAttrNames gives attribute names in a fixed order for serialization.
func sortedAttrNames(a Attrs) []string {
	names := make([]string, 0, len(a))
	for k := range a {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
