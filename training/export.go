package training

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/ortrain/ortrain/graphgen"
	"github.com/ortrain/ortrain/models"
)

// ExportOptions choose the inference model to write.
type ExportOptions struct {
	// Model is the network (name, classes, image size; Batch 0 for a
	// dynamic batch; Opset).
	Model models.Options
	// FoldBN folds every BatchNorm into the convolution before it (weights
	// scaled, a bias added), for serving: fewer nodes, the same function.
	FoldBN bool
	// ClassNames, when given, go into the metadata (ortrain.classes).
	ClassNames []string
	// Preprocessing, when given, is what the metadata states instead of
	// ortrain's defaults (weights trained elsewhere may expect other).
	Preprocessing *models.Preprocessing
}

// Export builds the inference graph (BatchNorm in eval mode with the running
// statistics) holding the given parameters and statistics, which are looked up
// by name and must all be present with the right sizes.
func Export(state map[string][]float32, o ExportOptions) (*models.Model, graphgen.ModelInfo, error) {
	mo := o.Model
	var missing []string
	tensor := func(name string, t *graphgen.Tensor) *graphgen.Tensor {
		data, ok := state[name]
		if !ok {
			missing = append(missing, name)
			return t
		}
		if int64(len(data)) != t.NumElements() {
			missing = append(missing, fmt.Sprintf("%s (has %d values, the model wants %d)", name, len(data), t.NumElements()))
			return t
		}
		return graphgen.FloatTensor(t.Dims, append([]float32{}, data...))
	}
	// With folding, BatchNorm tensors stay out of the graph: the hook keeps
	// them here and the BatchNorm hook folds them into the conv.
	detached := map[*graphgen.Value]*graphgen.Tensor{}
	mo.Param = func(g *graphgen.Graph, name string, kind models.ParamKind, t *graphgen.Tensor) *graphgen.Value {
		t = tensor(name, t)
		if o.FoldBN && (kind == models.BNGamma || kind == models.BNBeta || kind == models.BNMean || kind == models.BNVar) {
			v := &graphgen.Value{Name: name, DType: graphgen.Float, Shape: t.Shape()}
			detached[v] = t
			return v
		}
		return g.Initializer(name, t)
	}
	if o.FoldBN {
		mo.BatchNorm = func(g *graphgen.Graph, name string, x, scale, bias, mean, variance *graphgen.Value, eps float32) *graphgen.Value {
			if err := foldBN(g, x, detached[scale], detached[bias], detached[mean], detached[variance], eps); err != nil {
				g.Failf("fold %s: %v", name, err)
			}
			return x
		}
	}
	m, err := models.Build(mo)
	if err != nil {
		return nil, graphgen.ModelInfo{}, err
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		if len(missing) > 5 {
			missing = append(missing[:5], fmt.Sprintf("and %d more", len(missing)-5))
		}
		return nil, graphgen.ModelInfo{}, fmt.Errorf("export %s: the state lacks %s", m.Name, strings.Join(missing, ", "))
	}
	if err := m.Graph.Validate(); err != nil {
		return nil, graphgen.ModelInfo{}, fmt.Errorf("export %s: %w", m.Name, err)
	}
	meta := m.Metadata()
	if o.Preprocessing != nil {
		meta = m.MetadataWith(*o.Preprocessing)
	}
	if len(o.ClassNames) > 0 {
		if len(o.ClassNames) != m.Classes {
			return nil, graphgen.ModelInfo{}, fmt.Errorf("export %s: %d class names for %d classes", m.Name, len(o.ClassNames), m.Classes)
		}
		b, _ := json.Marshal(o.ClassNames)
		meta = append(meta, [2]string{models.MetaClasses, string(b)})
	}
	doc := m.Graph.Doc
	if o.FoldBN {
		doc += " BatchNorm folded into the convolutions."
	}
	return m, graphgen.ModelInfo{Doc: doc, Metadata: meta}, nil
}

// foldBN rewrites the Conv producing x to compute BN(Conv(x)) in eval mode:
// W' = W * s, b' = (b - mean) * s + beta per output channel, s = gamma /
// sqrt(var + eps).
func foldBN(g *graphgen.Graph, x *graphgen.Value, gamma, beta, mean, variance *graphgen.Tensor, eps float32) error {
	conv := x.Producer
	if conv == nil || conv.Op != "Conv" {
		return fmt.Errorf("BatchNorm input is not a convolution")
	}
	w := g.ConstData(conv.Inputs[1])
	if w == nil || w.DType != graphgen.Float {
		return fmt.Errorf("convolution weight %s is not a float32 initializer", conv.Inputs[1].Name)
	}
	if gamma == nil || beta == nil || mean == nil || variance == nil {
		return fmt.Errorf("BatchNorm parameters missing")
	}
	cout := int(w.Dims[0])
	per := len(w.Float32) / cout
	var oldBias []float32
	if len(conv.Inputs) > 2 && conv.Inputs[2] != nil {
		b := g.ConstData(conv.Inputs[2])
		if b == nil {
			return fmt.Errorf("convolution bias is not an initializer")
		}
		oldBias = b.Float32
	}
	bias := make([]float32, cout)
	for c := 0; c < cout; c++ {
		s := float64(gamma.Float32[c]) / math.Sqrt(float64(variance.Float32[c])+float64(eps))
		for i := c * per; i < (c+1)*per; i++ {
			w.Float32[i] = float32(float64(w.Float32[i]) * s)
		}
		b0 := 0.0
		if oldBias != nil {
			b0 = float64(oldBias[c])
		}
		bias[c] = float32((b0-float64(mean.Float32[c]))*s + float64(beta.Float32[c]))
	}
	bv := g.Initializer(strings.TrimSuffix(conv.Inputs[1].Name, ".weight")+".bias", graphgen.FloatTensor([]int64{int64(cout)}, bias))
	if len(conv.Inputs) > 2 {
		conv.Inputs[2] = bv
	} else {
		conv.Inputs = append(conv.Inputs, bv)
	}
	return nil
}
