package models

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"

	"github.com/ortrain/ortrain/graphgen"
)

// Variant is one of the paper's ResNet tweaks, a name for a set of
// independent architecture options (Arch; timm's model_args). They stack
// as in the paper, whose FLOPs (3.86G, 4.13G, 4.34G, 4.35G for ResNet-50,
// -B, -C, -D) show that C keeps B's change and D keeps both.
type Variant string

// The variants.
const (
	VariantNone Variant = ""  // the original ResNet
	VariantB    Variant = "b" // StrideOn3x3 (torchvision's and timm's "resnet50", often called v1.5)
	VariantC    Variant = "c" // B plus DeepStem
	VariantD    Variant = "d" // C plus AvgDown
)

// Arch are the options a ResNet's variant sets.
type Arch struct {
	// StrideOn3x3: a downsampling bottleneck strides in its 3x3 conv
	// instead of its first 1x1 conv (basic blocks stride in their first
	// 3x3 conv either way).
	StrideOn3x3 bool
	// DeepStem: three 3x3 convs of widths StemWidth, StemWidth, 64 (the
	// first with stride 2) instead of one 7x7 conv.
	DeepStem  bool
	StemWidth int
	// AvgDown: a downsampling shortcut is a 2x2 stride-2 AveragePool
	// (ceil_mode, padding not counted, as timm's) then a stride-1 1x1 conv,
	// instead of a strided 1x1 conv.
	AvgDown bool
}

// variants maps each variant to its options.
var variants = map[Variant]Arch{
	VariantNone: {},
	VariantB:    {StrideOn3x3: true},
	VariantC:    {StrideOn3x3: true, DeepStem: true, StemWidth: 32},
	VariantD:    {StrideOn3x3: true, DeepStem: true, StemWidth: 32, AvgDown: true},
}

func (v Variant) suffix() string { return string(v) }

func (v Variant) describe(bottleneck bool) string {
	switch {
	case v == VariantB && bottleneck:
		return "ResNet-B: stride 2 on the 3x3 conv of downsampling blocks"
	case v == VariantB:
		return "ResNet-B: the same network as the original (basic blocks already stride in their first 3x3 conv)"
	case v == VariantC:
		return "ResNet-C: B plus a deep stem (3x3 convs 32-32-64)"
	case v == VariantD:
		return "ResNet-D: C plus 2x2 average-pool shortcuts before a stride-1 1x1 conv"
	case bottleneck:
		return "ResNet: the original (stride 2 on the first 1x1 conv of downsampling blocks)"
	}
	return "ResNet: the original (stride 2 on the first 3x3 conv of downsampling blocks)"
}

// depths maps depth to blocks per stage and whether blocks are bottlenecks.
var depths = map[int]struct {
	blocks     [4]int
	bottleneck bool
}{
	18:  {[4]int{2, 2, 2, 2}, false},
	34:  {[4]int{3, 4, 6, 3}, false},
	50:  {[4]int{3, 4, 6, 3}, true},
	101: {[4]int{3, 4, 23, 3}, true},
	152: {[4]int{3, 8, 36, 3}, true},
}

// Names lists every model name, such as resnet50d, in a stable order.
func Names() []string {
	ds := make([]int, 0, len(depths))
	for d := range depths {
		ds = append(ds, d)
	}
	sort.Ints(ds)
	var names []string
	for _, d := range ds {
		for _, v := range []Variant{VariantNone, VariantB, VariantC, VariantD} {
			names = append(names, modelName(d, v))
		}
	}
	return names
}

// Describe is a one-line description of a model name.
func Describe(name string) string {
	depth, v, err := ParseName(name)
	if err != nil {
		return err.Error()
	}
	kind := "basic blocks"
	if depths[depth].bottleneck {
		kind = "bottlenecks"
	}
	return fmt.Sprintf("%d layers, %s; %s", depth, kind, v.describe(depths[depth].bottleneck))
}

// CanonicalName is name as Names lists it and models are built with
// (ParseName's reading of it: "ResNet50D" is "resnet50d").
func CanonicalName(name string) (string, error) {
	depth, variant, err := ParseName(name)
	if err != nil {
		return "", err
	}
	return modelName(depth, variant), nil
}

func modelName(depth int, v Variant) string { return "resnet" + strconv.Itoa(depth) + v.suffix() }

// ParseName splits a name like resnet50d into depth and variant.
func ParseName(name string) (int, Variant, error) {
	s := strings.ToLower(strings.TrimSpace(name))
	rest, ok := strings.CutPrefix(s, "resnet")
	if ok && rest != "" {
		v := VariantNone
		if last := rest[len(rest)-1]; last < '0' || last > '9' {
			v = Variant(rest[len(rest)-1:])
			rest = rest[:len(rest)-1]
		}
		if d, err := strconv.Atoi(rest); err == nil {
			_, known := depths[d]
			if _, ok := variants[v]; ok && known {
				return d, v, nil
			}
		}
	}
	return 0, "", fmt.Errorf("unknown model %q (known: %s)", name, strings.Join(Names(), ", "))
}

// ParamKind says what a parameter is, which decides its initialization and
// whether weight decay applies (no-bias-decay decays only conv and FC weights).
type ParamKind int

// Parameter kinds.
const (
	ConvWeight ParamKind = iota
	FCWeight
	FCBias
	BNGamma
	BNBeta
	BNMean // running statistics: state, not trained by gradient
	BNVar
)

func (k ParamKind) String() string {
	return [...]string{"conv.weight", "fc.weight", "fc.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"}[k]
}

// Trainable reports whether the optimizer updates it (running statistics are not).
func (k ParamKind) Trainable() bool { return k != BNMean && k != BNVar }

// Decayed reports whether weight decay applies under no-bias-decay.
func (k ParamKind) Decayed() bool { return k == ConvWeight || k == FCWeight }

// Param is one named tensor of the model.
type Param struct {
	Name   string
	Kind   ParamKind
	Tensor *graphgen.Tensor // initial value
	Value  *graphgen.Value  // where it enters the graph
}

// BatchNormFunc emits a BatchNorm layer; name is its prefix (layer1.0.bn1).
type BatchNormFunc func(g *graphgen.Graph, name string, x, scale, bias, mean, variance *graphgen.Value, eps float32) *graphgen.Value

// ParamFunc makes a parameter's value in the graph (by default an
// initializer holding t converted to the compute type).
type ParamFunc func(g *graphgen.Graph, name string, kind ParamKind, t *graphgen.Tensor) *graphgen.Value

// Options configure a model.
type Options struct {
	Name      string // resnet18 ... resnet152d
	Classes   int    // default 1000
	ImageSize int    // default 224
	Batch     int    // 0 for a symbolic batch dimension "N"
	Opset     int64  // default graphgen.DefaultOpset
	Seed      uint64
	// ZeroGamma initializes gamma of the last BatchNorm of every residual
	// block to 0, so each block starts as the identity.
	ZeroGamma bool
	// ComputeType is the element type the network computes in (Float by
	// default; Float16 for mixed precision). The images input and the
	// logits output stay float32: the graph casts at both ends.
	ComputeType graphgen.DType

	// Hooks for the training graph; nil means inference defaults.
	BatchNorm BatchNormFunc
	Param     ParamFunc
}

// Bounds on Options: wide enough for any real classifier, narrow enough that
// a typo cannot ask for terabytes.
const (
	MaxClasses   = 100_000 // ImageNet-21k has 21,841; a resnet50 head of 100k is 0.8 GB
	MinImageSize = 32      // the network downsamples by 32
	MaxImageSize = 4096
	MaxBatch     = 1 << 16
)

// BNEpsilon is BatchNorm's epsilon, PyTorch's and Gluon's default.
const BNEpsilon = 1e-5

// Input and output names of every model.
const (
	InputName  = "images"
	OutputName = "logits"
)

// Model is a built ResNet.
type Model struct {
	Options
	Depth   int
	Variant Variant
	Arch    Arch
	Graph   *graphgen.Graph
	Input   *graphgen.Value
	Logits  *graphgen.Value
	Params  []Param
	Stages  []StageStats
}

// StageStats count parameters (trained ones, as torchvision does) and
// multiply-accumulates per image of convolutions and the FC layer.
type StageStats struct {
	Name   string
	Params int64
	MACs   int64
}

// NumParams is the trainable parameter count.
func (m *Model) NumParams() int64 {
	var n int64
	for _, s := range m.Stages {
		n += s.Params
	}
	return n
}

// MACs is the multiply-accumulate count for one image.
func (m *Model) MACs() int64 {
	var n int64
	for _, s := range m.Stages {
		n += s.MACs
	}
	return n
}

type builder struct {
	m *Model
	g *graphgen.Graph
}

// Build constructs the model's graph: stem, four stages of residual
// blocks, head.
func Build(o Options) (*Model, error) {
	m, err := newModel(o)
	if err != nil {
		return nil, err
	}
	b := &builder{m: m, g: m.Graph}
	x := b.stem(m.Graph.Cast(m.Input, m.ComputeType))
	x, width := b.stages(x)
	m.Logits = b.head(x, width)
	if err := m.Graph.Err(); err != nil {
		return nil, fmt.Errorf("build %s: %w", m.Name, err)
	}
	m.Stages = countStages(m)
	return m, nil
}

// newModel checks the options, fills in their defaults and makes the
// graph with its input.
func newModel(o Options) (*Model, error) {
	depth, variant, err := ParseName(o.Name)
	if err != nil {
		return nil, err
	}
	if o.Classes == 0 {
		o.Classes = 1000
	}
	if o.ImageSize == 0 {
		o.ImageSize = 224
	}
	if o.Opset == 0 {
		o.Opset = graphgen.DefaultOpset
	}
	if o.ComputeType == graphgen.Undefined {
		o.ComputeType = graphgen.Float
	}
	if err := o.Check(); err != nil {
		return nil, err
	}
	if o.BatchNorm == nil {
		o.BatchNorm = InferenceBatchNorm
	}
	if o.Param == nil {
		ct := o.ComputeType
		o.Param = func(g *graphgen.Graph, name string, kind ParamKind, t *graphgen.Tensor) *graphgen.Value {
			return g.Initializer(name, CastTensor(t, ct))
		}
	}
	o.Name = modelName(depth, variant)
	m := &Model{Options: o, Depth: depth, Variant: variant, Arch: variants[variant]}
	g := graphgen.New(o.Name, o.Opset)
	g.Doc = fmt.Sprintf("%s (%s), %d classes, %dx%d input normalized as in Bag of Tricks.", o.Name, variant.describe(depths[depth].bottleneck), o.Classes, o.ImageSize, o.ImageSize)
	m.Graph = g
	batch := graphgen.Sym("N")
	if o.Batch > 0 {
		batch = graphgen.D(int64(o.Batch))
	}
	s := int64(o.ImageSize)
	m.Input = g.Input(InputName, graphgen.Float, graphgen.Shape{batch, graphgen.D(3), graphgen.D(s), graphgen.D(s)})
	return m, nil
}

// Check says whether the options are within the limits, naming the
// option.
func (o Options) Check() error {
	switch {
	case o.Classes < 1 || o.Classes > MaxClasses:
		return fmt.Errorf("classes must be between 1 and %d, got %d", MaxClasses, o.Classes)
	case o.ImageSize < MinImageSize || o.ImageSize > MaxImageSize:
		return fmt.Errorf("image size must be between %d (the network downsamples by 32) and %d, got %d", MinImageSize, MaxImageSize, o.ImageSize)
	case o.Batch < 0 || o.Batch > MaxBatch:
		return fmt.Errorf("batch must be between 1 and %d, or 0 for dynamic, got %d", MaxBatch, o.Batch)
	}
	return nil
}

// stages are the four stages of residual blocks; the second result is the
// output's width.
func (b *builder) stages(x *graphgen.Value) (*graphgen.Value, int) {
	spec := depths[b.m.Depth]
	expansion := 1
	if spec.bottleneck {
		expansion = 4
	}
	inplanes := 64
	for i, n := range spec.blocks {
		planes := 64 << i
		for j := 0; j < n; j++ {
			prefix := fmt.Sprintf("layer%d.%d", i+1, j)
			stride := 1
			if i > 0 && j == 0 {
				stride = 2
			}
			if spec.bottleneck {
				x = b.bottleneck(prefix, x, inplanes, planes, stride)
			} else {
				x = b.basic(prefix, x, inplanes, planes, stride)
			}
			inplanes = planes * expansion
		}
	}
	return x, inplanes
}

// head is global average pooling and the fully connected layer; its
// logits are float32 whatever the compute type.
func (b *builder) head(x *graphgen.Value, width int) *graphgen.Value {
	g := b.g
	g.SetScope("head")
	x = g.Flatten(g.GlobalAveragePool(x), 1)
	classes := int64(b.m.Classes)
	w := b.param("fc.weight", FCWeight, []int64{classes, int64(width)}, false)
	bias := b.param("fc.bias", FCBias, []int64{classes}, false)
	logits := g.Cast(g.Gemm(x, w, bias, false, true), graphgen.Float)
	g.RenameOutput(logits, OutputName)
	g.Output(logits)
	return logits
}

// InferenceBatchNorm emits BatchNormalization with running statistics.
func InferenceBatchNorm(g *graphgen.Graph, name string, x, scale, bias, mean, variance *graphgen.Value, eps float32) *graphgen.Value {
	return g.BatchNorm(x, scale, bias, mean, variance, eps)
}

// param creates and initializes a named parameter.
// lastBN marks gamma of a residual block's last BatchNorm, which zero-gamma
// sets to 0.
func (b *builder) param(name string, kind ParamKind, dims []int64, lastBN bool) *graphgen.Value {
	t := initTensor(b.m.Seed, name, kind, dims, b.m.ZeroGamma && lastBN)
	v := b.m.Param(b.g, name, kind, t)
	b.m.Params = append(b.m.Params, Param{Name: name, Kind: kind, Tensor: t, Value: v})
	return v
}

// initTensor draws the initial value: Xavier uniform (bound sqrt(6/(fan_in +
// fan_out)), PyTorch's fans, Gluon's Xavier(magnitude 3)) for conv and FC
// weights, zeros for biases, BN beta and running mean, ones for BN gamma (zero
// under zero-gamma) and running variance. Each parameter has its own random
// stream seeded by (seed, name), so a weight does not change when another
// layer is added or removed.
func initTensor(seed uint64, name string, kind ParamKind, dims []int64, zeroGamma bool) *graphgen.Tensor {
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	data := make([]float32, n)
	switch kind {
	case ConvWeight, FCWeight:
		receptive := int64(1)
		for _, d := range dims[2:] {
			receptive *= d
		}
		fanIn, fanOut := dims[1]*receptive, dims[0]*receptive
		bound := math.Sqrt(6 / float64(fanIn+fanOut))
		h := fnv.New64a()
		h.Write([]byte(name))
		r := rand.New(rand.NewPCG(seed, h.Sum64()))
		for i := range data {
			data[i] = float32((2*r.Float64() - 1) * bound)
		}
	case BNGamma, BNVar:
		if !zeroGamma {
			for i := range data {
				data[i] = 1
			}
		}
	}
	return graphgen.FloatTensor(dims, data)
}

// CastTensor converts a float32 tensor to dt (itself when dt is Float).
func CastTensor(t *graphgen.Tensor, dt graphgen.DType) *graphgen.Tensor {
	if dt == t.DType {
		return t
	}
	out := graphgen.FilledTensor(dt, t.Dims, 0)
	for i, v := range t.Float32 {
		switch dt {
		case graphgen.Float16:
			h := graphgen.Float32ToHalf(v)
			out.Raw[2*i], out.Raw[2*i+1] = byte(h), byte(h>>8)
		case graphgen.Double:
			bits := math.Float64bits(float64(v))
			for k := 0; k < 8; k++ {
				out.Raw[8*i+k] = byte(bits >> (8 * k))
			}
		}
	}
	return out
}

// conv is a bias-free convolution with "same"-style padding k/2.
func (b *builder) conv(name string, x *graphgen.Value, cin, cout, k, stride int) *graphgen.Value {
	w := b.param(name+".weight", ConvWeight, []int64{int64(cout), int64(cin), int64(k), int64(k)}, false)
	p := int64(k / 2)
	s := int64(stride)
	return b.g.Conv(x, w, nil, graphgen.ConvOpts{Strides: []int64{s, s}, Pads: []int64{p, p, p, p}})
}

// bn is BatchNorm with torchvision's parameter names; zeroGamma marks the
// last BatchNorm of a residual block.
func (b *builder) bn(name string, x *graphgen.Value, c int, zeroGamma bool) *graphgen.Value {
	dims := []int64{int64(c)}
	scale := b.param(name+".weight", BNGamma, dims, zeroGamma)
	bias := b.param(name+".bias", BNBeta, dims, false)
	mean := b.param(name+".running_mean", BNMean, dims, false)
	variance := b.param(name+".running_var", BNVar, dims, false)
	return b.m.BatchNorm(b.g, name, x, scale, bias, mean, variance, BNEpsilon)
}

// stem is the 7x7 conv, or the deep stem's three 3x3 convs, then
// BatchNorm, ReLU and a 3x3 stride-2 max pool.
func (b *builder) stem(x *graphgen.Value) *graphgen.Value {
	g := b.g
	g.SetScope("stem")
	if a := b.m.Arch; a.DeepStem {
		w := a.StemWidth
		x = g.Relu(b.bn("conv1.1", b.conv("conv1.0", x, 3, w, 3, 2), w, false))
		x = g.Relu(b.bn("conv1.4", b.conv("conv1.3", x, w, w, 3, 1), w, false))
		x = b.conv("conv1.6", x, w, 64, 3, 1)
	} else {
		x = b.conv("conv1", x, 3, 64, 7, 2)
	}
	x = g.Relu(b.bn("bn1", x, 64, false))
	return g.MaxPool(x, graphgen.PoolOpts{Kernel: []int64{3, 3}, Strides: []int64{2, 2}, Pads: []int64{1, 1, 1, 1}})
}

// shortcut is the identity or the downsampling projection of a block.
func (b *builder) shortcut(prefix string, x *graphgen.Value, cin, cout, stride int) *graphgen.Value {
	if stride == 1 && cin == cout {
		return x
	}
	if !b.m.Arch.AvgDown {
		return b.bn(prefix+".downsample.1", b.conv(prefix+".downsample.0", x, cin, cout, 1, stride), cout, false)
	}
	if stride > 1 {
		s := int64(stride)
		x = b.g.AveragePool(x, graphgen.PoolOpts{Kernel: []int64{s, s}, Strides: []int64{s, s}, CeilMode: true})
	}
	return b.bn(prefix+".downsample.2", b.conv(prefix+".downsample.1", x, cin, cout, 1, 1), cout, false)
}

func (b *builder) basic(prefix string, x *graphgen.Value, cin, planes, stride int) *graphgen.Value {
	g := b.g
	g.SetScope(prefix)
	y := g.Relu(b.bn(prefix+".bn1", b.conv(prefix+".conv1", x, cin, planes, 3, stride), planes, false))
	y = b.bn(prefix+".bn2", b.conv(prefix+".conv2", y, planes, planes, 3, 1), planes, true)
	return g.Relu(g.Add(y, b.shortcut(prefix, x, cin, planes, stride)))
}

func (b *builder) bottleneck(prefix string, x *graphgen.Value, cin, planes, stride int) *graphgen.Value {
	g := b.g
	g.SetScope(prefix)
	s1, s3 := stride, 1
	if b.m.Arch.StrideOn3x3 {
		s1, s3 = 1, stride
	}
	cout := planes * 4
	y := g.Relu(b.bn(prefix+".bn1", b.conv(prefix+".conv1", x, cin, planes, 1, s1), planes, false))
	y = g.Relu(b.bn(prefix+".bn2", b.conv(prefix+".conv2", y, planes, planes, 3, s3), planes, false))
	y = b.bn(prefix+".bn3", b.conv(prefix+".conv3", y, planes, cout, 1, 1), cout, true)
	return g.Relu(g.Add(y, b.shortcut(prefix, x, cin, cout, stride)))
}
