package training

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/ortrain/ortrain/models"
	"github.com/ortrain/ortrain/weights"
)

// ReadWeights reads named weights from path: a file package weights reads
// (safetensors, PyTorch, ONNX) or an ortrain checkpoint, whose parameters
// and running statistics it takes (not its momentum buffers).
func ReadWeights(path string) (weights.Set, error) {
	if !isCheckpoint(path) {
		return weights.Read(path)
	}
	ck, err := ReadCheckpoint(path)
	if err != nil {
		return nil, err
	}
	s := weights.Set{}
	for n, v := range ck.Tensors {
		if strings.Contains(n, "/") { // momentum_buffer/..., the optimizer's
			continue
		}
		s[n] = weights.Tensor{Shape: ck.Meta.Shapes[n], Data: v}
	}
	return s, nil
}

// isCheckpoint reports whether path starts as an ortrain checkpoint.
func isCheckpoint(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, len(checkpointMagic))
	_, err = io.ReadFull(f, head)
	return err == nil && bytes.Equal(head, []byte(checkpointMagic))
}

// FitWeights checks ws against the state of the model mo describes, as
// PyTorch's load_state_dict(strict=True) does (a *weights.MismatchError
// otherwise), and returns that state. With reinitHead, a classifier
// (fc.weight, fc.bias) of another class count is not an error: the
// model's own initialization replaces it, and note says so.
func FitWeights(ws weights.Set, mo models.Options, reinitHead bool) (state map[string][]float32, note string, err error) {
	want, init, err := ModelState(mo)
	if err != nil {
		return nil, "", err
	}
	return fitModel(ws, mo.Name, want, init, reinitHead)
}

// fitModel is FitWeights for the model named name whose state's shapes
// (want) and initialization are at hand.
func fitModel(ws weights.Set, name string, want map[string][]int64, init map[string][]float32, reinitHead bool) (state map[string][]float32, note string, err error) {
	state, note, err = fitWeights(ws, want, init, reinitHead)
	if err == nil && originalBottleneck(name) {
		note = strings.TrimPrefix(note+"; ", "; ") + name + " is the original ResNet (stride 2 on the first 1x1 convolution): weights of torchvision's or timm's resnet" +
			strings.TrimPrefix(name, "resnet") + " fit it by name and shape but were trained as " + name + "b"
	}
	return state, note, err
}

// originalBottleneck reports whether name is an original (not B, C or D)
// bottleneck ResNet, whose tensors are named and shaped as ResNet-B's.
func originalBottleneck(name string) bool {
	depth, variant, err := models.ParseName(name)
	return err == nil && variant == "" && depth >= 50
}

func fitWeights(ws weights.Set, want map[string][]int64, init map[string][]float32, reinitHead bool) (map[string][]float32, string, error) {
	head := []string{"fc.weight", "fc.bias"}
	if reinitHead && headDiffers(ws, want, head) {
		kept := weights.Set{}
		for n, t := range ws {
			kept[n] = t
		}
		for _, n := range head {
			delete(kept, n)
		}
		if err := kept.Match(without(want, head)); err != nil {
			return nil, "", err
		}
		state := kept.Floats()
		for _, n := range head {
			state[n] = init[n]
		}
		what := "the weights have no classifier (fc)"
		if t, ok := ws[head[0]]; ok {
			what = fmt.Sprintf("the classifier (fc) of the weights has shape %v, the model's %v", t.Shape, want[head[0]])
		}
		return state, what + ": fc is initialized anew", nil
	}
	if err := ws.Match(want); err != nil {
		if !hasStatistics(ws) {
			return nil, "", fmt.Errorf("%w (they hold no BatchNorm statistics: a model whose BatchNorms were folded into its convolutions has none to give)", err)
		}
		return nil, "", err
	}
	return ws.Floats(), "", nil
}

// hasStatistics reports whether any BatchNorm running statistic is among
// the weights.
func hasStatistics(ws weights.Set) bool {
	for n := range ws {
		if strings.HasSuffix(n, ".running_mean") {
			return true
		}
	}
	return false
}

// headDiffers reports whether the weights' classifier is not the model's:
// of another shape, or absent (a feature extractor's weights, such as
// timm's with num_classes=0).
func headDiffers(ws weights.Set, want map[string][]int64, head []string) bool {
	for _, n := range head {
		t, ok := ws[n]
		if !ok || fmt.Sprint(t.Shape) != fmt.Sprint(want[n]) {
			return true
		}
	}
	return false
}

func without(m map[string][]int64, names []string) map[string][]int64 {
	out := make(map[string][]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	for _, n := range names {
		delete(out, n)
	}
	return out
}

// ModelState is the shapes and the initialization of the model's
// parameters and running statistics, by name: its state_dict as
// torchvision and timm name it, without BatchNorm's num_batches_tracked.
func ModelState(mo models.Options) (map[string][]int64, map[string][]float32, error) {
	m, err := models.Build(mo)
	if err != nil {
		return nil, nil, err
	}
	shapes, init := map[string][]int64{}, map[string][]float32{}
	for _, p := range m.Params {
		shapes[p.Name], init[p.Name] = p.Tensor.Dims, p.Tensor.Float32
	}
	return shapes, init, nil
}

// WeightsOf is a state as named weights with their shapes (what
// WriteSafetensors writes), with each BatchNorm's num_batches_tracked set
// to steps, so that PyTorch's strict load finds every name it has.
func WeightsOf(state map[string][]float32, shapes map[string][]int64, steps int) weights.Set {
	s := weights.Set{}
	names := make([]string, 0, len(shapes))
	for n := range shapes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s[n] = weights.Tensor{Shape: shapes[n], Data: state[n]}
		if bn, ok := strings.CutSuffix(n, ".running_mean"); ok {
			s[bn+".num_batches_tracked"] = weights.Tensor{Shape: []int64{}, Int: []int64{int64(steps)}}
		}
	}
	return s
}
