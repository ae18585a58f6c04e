package models

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/ortrain/ortrain/graphgen"
)

// Normalization every model expects of its input: RGB pixels on the 0-255
// scale, minus Mean, divided by Std, per channel (the seed's constants).
var (
	Mean = [3]float32{123.68, 116.779, 103.939}
	Std  = [3]float32{58.393, 57.12, 57.375}
)

// Metadata keys written into model files, read back by ortrain and distill.
const (
	MetaArchitecture  = "ortrain.architecture"
	MetaNumClasses    = "ortrain.num_classes"
	MetaClasses       = "ortrain.classes" // JSON array of class names, when known
	MetaImageSize     = "ortrain.image_size"
	MetaMean          = "ortrain.mean"          // R,G,B on the 0-255 scale
	MetaStd           = "ortrain.std"           // R,G,B on the 0-255 scale
	MetaCropPct       = "ortrain.crop_pct"      // validation crop / resized shorter side
	MetaInterpolation = "ortrain.interpolation" // bilinear or bicubic
)

// Metadata describes the model for whoever serves it: architecture, classes,
// input size and preprocessing (ortrain's).
func (m *Model) Metadata() [][2]string { return m.MetadataWith(DefaultPreprocessing()) }

// MetadataWith is Metadata stating the preprocessing p (weights trained
// elsewhere may expect other than ortrain's).
func (m *Model) MetadataWith(p Preprocessing) [][2]string {
	return append([][2]string{
		{MetaArchitecture, m.Name},
		{MetaNumClasses, strconv.Itoa(m.Classes)},
		{MetaImageSize, strconv.Itoa(m.ImageSize)},
	}, p.Metadata()...)
}

// WriteSummary prints parameters and MACs per stage and in total.
func (m *Model) WriteSummary(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\t%s\t%s\t\n", m.Name+" stage", "params", "MACs")
	for _, s := range m.Stages {
		fmt.Fprintf(tw, "%s\t%s\t%s\t\n", s.Name, group(s.Params), group(s.MACs))
	}
	fmt.Fprintf(tw, "%s\t%s\t%s\t\n", "total", group(m.NumParams()), group(m.MACs()))
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d classes, %dx%d input, %.2f GMACs per image\n", m.Classes, m.ImageSize, m.ImageSize, float64(m.MACs())/1e9)
	return err
}

// group writes n with thousands separators.
func group(n int64) string {
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// countStages counts, per stage (stem, layer1 to layer4, head), the
// trainable parameters and the multiply-accumulates per image of the
// convolutions and the fully connected layer, in a walk over the built
// graph: a node belongs to the stage of its weight's name.
func countStages(m *Model) []StageStats {
	stages := []StageStats{{Name: "stem"}, {Name: "layer1"}, {Name: "layer2"}, {Name: "layer3"}, {Name: "layer4"}, {Name: "head"}}
	stageOf := func(param string) *StageStats {
		for i := 1; i <= 4; i++ {
			if strings.HasPrefix(param, fmt.Sprintf("layer%d.", i)) {
				return &stages[i]
			}
		}
		if strings.HasPrefix(param, "fc.") {
			return &stages[5]
		}
		return &stages[0]
	}
	byValue := map[*graphgen.Value]string{}
	for _, p := range m.Params {
		byValue[p.Value] = p.Name
		if p.Kind.Trainable() {
			stageOf(p.Name).Params += p.Tensor.NumElements()
		}
	}
	for _, n := range m.Graph.Nodes {
		if len(n.Inputs) < 2 || (n.Op != "Conv" && n.Op != "Gemm") {
			continue
		}
		name, ok := byValue[n.Inputs[1]]
		w, y := n.Inputs[1].Shape, n.Outputs[0].Shape
		if !ok || !w.Static() {
			continue
		}
		macs := w.NumElements() // Gemm: classes x width per image
		if n.Op == "Conv" {
			if !y[2].Known() || !y[3].Known() {
				continue
			}
			macs *= y[2].Size * y[3].Size
		}
		stageOf(name).MACs += macs
	}
	return stages
}
