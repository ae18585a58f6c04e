package training

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ortrain/ortrain/graphgen"
	"github.com/ortrain/ortrain/models"
)

// The training state's life: startState reads or makes every tensor the
// run starts from (parameters, running statistics, and momentum buffers
// when resuming), frozenPart picks those held fixed (they become constants
// of the step graph), and resumeFrom checks a checkpoint against the
// built step and keeps the rest for the runner. Checkpoints and exports
// hold them all again (fullState).

// modelOptions are the network of the run, without the step's hooks.
func (t *Trainer) modelOptions() models.Options {
	c := &t.Config
	return models.Options{Name: c.Model, Classes: t.classes, ImageSize: c.ImageSize, Seed: c.Seed, ZeroGamma: c.ZeroGamma, Opset: c.Opset}
}

// startState is the state the run starts from: the model's initialization
// (or Config.Init's weights), or the last checkpoint's when resuming, with
// the checkpoint itself (nil otherwise).
func (t *Trainer) startState(resume bool) (map[string][]float32, *Checkpoint, error) {
	c := &t.Config
	var init map[string][]float32
	var err error
	if t.shapes, init, err = ModelState(t.modelOptions()); err != nil {
		return nil, nil, err
	}
	if c.FP16 {
		t.scaler = NewLossScaler()
	}
	if !resume {
		s, err := t.initialState(init)
		return s, nil, err
	}
	path := filepath.Join(CheckpointDir(c.Out), lastCheckpoint)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		// Stopped hard before its first checkpoint: nothing of the run is
		// kept but its configuration, so it starts over.
		fmt.Fprintf(t.Log, "note: %s has no checkpoint yet (the run stopped before its first); starting it from the beginning\n", c.Out)
		s, err := t.initialState(init)
		return s, nil, err
	}
	ck, err := ReadCheckpoint(path)
	if err != nil {
		return nil, nil, err
	}
	// Frozen tensors become part of the step graph: check the checkpoint
	// against the model before the step is built (compatible checks the
	// step's state after).
	if err := t.compatibleModel(ck); err != nil {
		return nil, nil, err
	}
	return ck.Tensors, ck, nil
}

// initialState is the model's initialization (init), or the weights of
// Config.Init (with a classifier for this data's classes when theirs has
// another count, drawn from init).
func (t *Trainer) initialState(init map[string][]float32) (map[string][]float32, error) {
	c := &t.Config
	if c.Init == "" {
		if c.FreezeBackbone {
			fmt.Fprintf(t.Log, "note: the backbone is frozen at its random initialization (no weights to start from)\n")
		}
		return init, nil
	}
	ws, err := ReadWeights(c.Init)
	if err != nil {
		return nil, err
	}
	state, note, err := fitModel(ws, c.Model, t.shapes, init, true)
	if err != nil {
		return nil, fmt.Errorf("%s as %s: %w", c.Init, c.Model, err)
	}
	if note != "" {
		fmt.Fprintf(t.Log, "note: %s\n", note)
	}
	return state, nil
}

// frozenPart is the part of the state the configuration holds fixed
// (FrozenState).
func (t *Trainer) frozenPart(state map[string][]float32) map[string][]float32 {
	return FrozenState(state, t.shapes, t.Config.FreezeBackbone, t.Config.FreezeBN)
}

// FrozenState is the part of a state held fixed (StepOptions.Frozen):
// with backbone every tensor of the model (named in model) but the
// classifier's (fc.*), with bn every BatchNorm's running statistics; nil
// when nothing is.
func FrozenState(state map[string][]float32, model map[string][]int64, backbone, bn bool) map[string][]float32 {
	frozen := map[string][]float32{}
	for n, v := range state {
		if _, ok := model[n]; !ok {
			continue // momentum buffers
		}
		stat := strings.HasSuffix(n, ".running_mean") || strings.HasSuffix(n, ".running_var")
		if (backbone && !strings.HasPrefix(n, "fc.")) || (bn && stat) {
			frozen[n] = v
		}
	}
	if len(frozen) == 0 {
		return nil
	}
	return frozen
}

// resumeFrom checks the checkpoint (nil for a new run) against the step
// and takes its place in the run (metadata, loss scale, history); the
// result is the state the step carries: full without its frozen part, and
// zero momentum buffers for a new run.
func (t *Trainer) resumeFrom(ck *Checkpoint, full map[string][]float32) (map[string][]float32, error) {
	c := &t.Config
	t.meta = CheckpointMeta{Model: t.step.Model.Name, Classes: t.train.Classes, ImageSize: c.ImageSize, BestTop1: -1}
	if ck != nil {
		if err := t.compatible(ck); err != nil {
			return nil, err
		}
		t.meta = ck.Meta
		if c.FP16 && ck.Meta.Scaler != nil {
			s := *ck.Meta.Scaler
			t.scaler = &s
		}
		hist, err := ReadMetrics(c.Out)
		if err != nil {
			return nil, err
		}
		for _, r := range hist {
			if r.Epoch <= t.meta.Epoch {
				t.hist = append(t.hist, r)
			}
		}
	}
	state := map[string][]float32{}
	shapes := t.step.StateShapes()
	for _, n := range t.step.StateNames() {
		v, ok := full[n]
		if !ok && ck == nil && strings.HasPrefix(n, MomentumName("")) {
			v = make([]float32, graphgen.S(shapes[n]...).NumElements())
		} else if !ok {
			return nil, fmt.Errorf("the starting state lacks %s", n)
		}
		state[n] = v
	}
	return state, nil
}

// compatibleModel checks that a checkpoint belongs to this model and data:
// the model's name, the classes, and every tensor of the model's shape.
func (t *Trainer) compatibleModel(ck *Checkpoint) error {
	name, err := models.CanonicalName(t.Config.Model)
	if err != nil {
		return err
	}
	if ck.Meta.Model != name {
		return fmt.Errorf("checkpoint is of %s, the run trains %s", ck.Meta.Model, name)
	}
	if len(ck.Meta.Classes) != t.classes {
		return fmt.Errorf("checkpoint has %d classes, the data %d", len(ck.Meta.Classes), t.classes)
	}
	for i, c := range ck.Meta.Classes {
		if c != t.train.Classes[i] {
			return fmt.Errorf("checkpoint class %d is %q, the data's is %q", i, c, t.train.Classes[i])
		}
	}
	return sameShapes(ck.Meta.Shapes, t.shapes)
}

// compatible checks that a checkpoint holds the built step's state.
func (t *Trainer) compatible(ck *Checkpoint) error {
	return sameShapes(ck.Meta.Shapes, t.step.StateShapes())
}

// sameShapes checks that have holds every tensor of want, of its shape.
func sameShapes(have, want map[string][]int64) error {
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names) // the same message every time
	for _, n := range names {
		s := want[n]
		got, ok := have[n]
		if !ok || fmt.Sprint(got) != fmt.Sprint(s) {
			return fmt.Errorf("checkpoint tensor %s has shape %v, the model wants %v", n, got, s)
		}
	}
	return nil
}

// fullState is every tensor of the run: the step's state and the frozen
// part, as checkpoints and exports hold them.
func (t *Trainer) fullState() map[string][]float32 {
	s := t.run.Snapshot()
	for n, v := range t.step.Options.Frozen {
		s[n] = v
	}
	return s
}

// stateShapes are the shapes of fullState's tensors.
func (t *Trainer) stateShapes() map[string][]int64 {
	s := t.step.StateShapes()
	for n := range t.step.Options.Frozen {
		s[n] = t.shapes[n]
	}
	return s
}
