package training

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/ortrain/ortrain/graphgen"
	"github.com/ortrain/ortrain/models"
	"github.com/ortrain/ortrain/runtime"
	"github.com/ortrain/ortrain/training/data"
)

// setupEval builds the evaluation graph: the same network with BatchNorm in
// inference mode, reading the parameters and statistics straight from the
// stepper's state tensors (the frozen ones are its constants).
func (t *Trainer) setupEval(rt runtime.Options) error {
	c := &t.Config
	var names []string
	mo := models.Options{Name: c.Model, Classes: t.classes, ImageSize: c.ImageSize, Batch: c.BatchSize, Opset: c.Opset,
		Param: func(g *graphgen.Graph, name string, kind models.ParamKind, tt *graphgen.Tensor) *graphgen.Value {
			if v, ok := t.step.Options.Frozen[name]; ok {
				return g.Initializer(name, graphgen.FloatTensor(tt.Dims, v))
			}
			names = append(names, name)
			return g.Input(name, graphgen.Float, tt.Shape())
		}}
	m, err := models.Build(mo)
	if err != nil {
		return err
	}
	// The step's CPU lowerings, so that its convolutions are the step's
	// forward ones (elsewhere it stays the exported model's graph); the
	// batch is fixed so that the small planes' convolutions can be
	// batch-wide products. ResNet-18 on Imagenette's validation set at
	// 64x64: 15-16 s instead of 23-26 s (docs/results/bench/history.md).
	so := t.step.Options
	if so.BatchGemm {
		if err := so.rewriteForward(m.Graph); err != nil {
			return err
		}
	}
	if so.NchwcBlock > 0 {
		if err := m.Graph.LowerNchwc(so.NchwcBlock); err != nil {
			return err
		}
	}
	b, err := m.Graph.Marshal(graphgen.ModelInfo{})
	if err != nil {
		return err
	}
	t.evalNames = names
	t.eval, err = runtime.NewSession(b, append([]string{models.InputName}, names...), []string{models.OutputName}, rt)
	return err
}

// Evaluate runs the validation set through the current weights: top-1,
// top-5 and the mean cross-entropy.
func (t *Trainer) Evaluate() (EvalResult, error) {
	c := &t.Config
	l := &data.Loader{Data: t.val, Batch: c.BatchSize, Size: c.ImageSize, Workers: c.Workers, BadLimit: c.BadLimit,
		Ranks: t.comm.Size(), Rank: t.comm.Rank()}
	inputs := make([]*runtime.Tensor, 1+len(t.evalNames))
	for i, n := range t.evalNames {
		inputs[1+i] = t.run.StateTensor(n)
	}
	res, err := EvaluateBatches(l, t.eval, inputs, t.classes, true)
	if t.comm.Size() == 1 || err != nil && !errors.Is(err, errNoImages) {
		return res, err
	}
	// Each process evaluated every Size-th batch: the counts add up to a
	// single process's, exactly.
	v := []float64{float64(res.Correct1), float64(res.Correct5), res.LossSum, float64(res.Images)}
	if err := t.comm.AllReduceSum64(v); err != nil {
		return res, err
	}
	return evalResult(int(v[0]), int(v[1]), v[2], int(v[3]), res.Unreadable, t.val.Root)
}

// EvalResult is what an evaluation measured.
type EvalResult struct {
	Top1, Top5, Loss float64
	Images           int      // evaluated
	Unreadable       []string // skipped
	// The sums behind them: right in the top 1 and top 5, cross-entropy.
	Correct1, Correct5 int
	LossSum            float64
}

// errNoImages: a process of a data-parallel evaluation had no readable
// image (the others may have).
var errNoImages = errors.New("evaluation: no readable validation images")

// evalResult is the result of counts over n images.
func evalResult(c1, c5 int, lsum float64, n int, unreadable []string, root string) (EvalResult, error) {
	res := EvalResult{Correct1: c1, Correct5: c5, LossSum: lsum, Images: n, Unreadable: unreadable}
	if n == 0 {
		return res, fmt.Errorf("%w in %s", errNoImages, root)
	}
	res.Top1, res.Top5, res.Loss = float64(c1)/float64(n), float64(c5)/float64(n), lsum/float64(n)
	return res, nil
}

// EvaluateBatches feeds a loader's batches through a classifier session
// whose first input is the images (the others already set in inputs) and
// whose first output is the logits. With fixed the session takes exactly
// l.Batch images a run: a shorter last batch is padded with zeros, and
// only its own images count (inference-mode BatchNorm keeps images
// independent).
func EvaluateBatches(l *data.Loader, sess *runtime.Session, inputs []*runtime.Tensor, k int, fixed bool) (res EvalResult, err error) {
	ch, err := l.Epoch(context.Background(), 0, 0)
	if err != nil {
		return res, err
	}
	per := 3 * l.Size * l.Size
	var c1, c5, n int
	var lsum float64
	for b := range ch {
		res.Unreadable = append(res.Unreadable, b.Unreadable...)
		if b.Err != nil || err != nil {
			if err == nil {
				err = b.Err
			}
			b.Release()
			continue
		}
		if b.N == 0 {
			b.Release()
			continue
		}
		rows := b.N
		if fixed {
			rows = l.Batch
			clear(b.Images[b.N*per : rows*per])
		}
		img, terr := runtime.NewFloat32([]int64{int64(rows), 3, int64(l.Size), int64(l.Size)}, b.Images[:rows*per])
		if terr != nil {
			err = terr
			b.Release()
			continue
		}
		inputs[0] = img
		outs, rerr := sess.Run(inputs, nil)
		img.Destroy()
		if rerr != nil {
			err = rerr
			b.Release()
			continue
		}
		logits := outs[0].Float32s()[:b.N*k]
		labels := b.Labels[:b.N]
		c1 += topKCorrect(logits, labels, k, 1)
		c5 += topKCorrect(logits, labels, k, 5)
		lsum += crossEntropy(logits, labels, k)
		n += b.N
		outs[0].Destroy()
		b.Release()
	}
	if err != nil {
		return res, err
	}
	return evalResult(c1, c5, lsum, n, res.Unreadable, l.Data.Root)
}

// topKCorrect counts rows whose label is among the k largest logits.
// A NaN logit of the true class is never correct; NaN elsewhere ranks above
// everything; ties rank the lower class index first (as torch.topk and
// argmax do), so a constant output is right only for class 0.
func topKCorrect(logits []float32, labels []int, classes, k int) int {
	correct := 0
	for i, l := range labels {
		row := logits[i*classes : (i+1)*classes]
		target := row[l]
		if target != target {
			continue
		}
		above := 0
		for j, v := range row {
			if v != v || v > target || (v == target && j < l) {
				above++
			}
		}
		if above < k {
			correct++
		}
	}
	return correct
}

// crossEntropy sums -log softmax(logits)[label] over the rows.
func crossEntropy(logits []float32, labels []int, classes int) float64 {
	var s float64
	for i, l := range labels {
		row := logits[i*classes : (i+1)*classes]
		m := math.Inf(-1)
		for _, v := range row {
			m = math.Max(m, float64(v))
		}
		var z float64
		for _, v := range row {
			z += math.Exp(float64(v) - m)
		}
		s += m + math.Log(z) - float64(row[l])
	}
	return s
}
