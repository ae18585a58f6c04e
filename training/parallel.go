package training

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"time"

	"github.com/ortrain/ortrain/runtime"
)

// Collective is what data parallelism needs of the processes of a job:
// parallel.Comm satisfies it. training never imports MPI.
type Collective interface {
	Rank() int
	Size() int
	AllReduceSum(buf []float32) error
	AllReduceSum64(buf []float64) error
	Broadcast(buf []byte, root int) error
}

// solo is the collective of a job of one process.
type solo struct{}

func (solo) Rank() int                          { return 0 }
func (solo) Size() int                          { return 1 }
func (solo) AllReduceSum(buf []float32) error   { return nil }
func (solo) AllReduceSum64(buf []float64) error { return nil }
func (solo) Broadcast(buf []byte, root int) error {
	return nil
}

// runner is what the trainer needs of a stepper, fused or split.
type runner interface {
	Images() []float32
	Targets() []float32
	TeacherLogits() []float32
	Logits() []float32
	State(name string) []float32
	StateTensor(name string) *runtime.Tensor
	Snapshot() map[string][]float32
	SetState(map[string][]float32) error
	Close()
}

// split says whether the run takes the split step: with several processes
// or micro-batches per step. One process with one micro-batch keeps the
// fused step, the faster.
func (t *Trainer) split() bool { return t.comm.Size() > 1 || t.Config.AccumSteps > 1 }

// microBatches is the number of micro-batches of one step over the job.
func (t *Trainer) microBatches() int { return t.comm.Size() * max(t.Config.AccumSteps, 1) }

// pending is a step's micro-batch results, added to the epoch's sums once
// the update is known not to be skipped.
type pending struct {
	micro            int // micro-batches accumulated
	loss, hard, soft float64
	correct, seen    int
}

// accumulate runs the gradient graph on one prepared micro-batch.
func (t *Trainer) accumulate(p *prepared, sums *EpochSums) error {
	c := &t.Config
	if err := t.load(p, sums); err != nil {
		return err
	}
	if t.pend.micro == 0 {
		t.sp.BeginStep()
	}
	labels := append(t.labels[:0], p.labels...)
	if c.TeacherOverlap {
		p.recycle() // the next micro-batch and its teacher run during this one
	}
	losses, err := t.sp.Accumulate(t.hyper())
	if !c.TeacherOverlap {
		p.recycle()
	}
	if err != nil {
		return err
	}
	t.pend.micro++
	t.pend.loss += float64(losses[0])
	if len(losses) == 3 {
		t.pend.hard += float64(losses[1])
		t.pend.soft += float64(losses[2])
	}
	t.pend.correct += topKCorrect(t.sp.Logits(), labels, t.classes, 1)
	t.pend.seen += c.BatchSize
	return nil
}

// applyStep sums the accumulators over the processes and applies the
// update, which every process computes alike.
func (t *Trainer) applyStep(sums *EpochSums) error {
	c := &t.Config
	h := t.hyper()
	if t.comm.Size() > 1 {
		start := time.Now()
		if err := t.comm.AllReduceSum(t.sp.Sums()); err != nil {
			return err
		}
		sums.AllReduceSec += time.Since(start).Seconds()
	}
	finite, err := t.sp.Apply(h, t.microBatches())
	if err != nil {
		return err
	}
	pend := t.pend
	t.pend = pending{}
	if err := t.afterStep(finite, float64(pend.loss)); err != nil {
		return err
	}
	if !finite {
		sums.Skipped++
	} else {
		sums.Loss += pend.loss
		sums.Hard += pend.hard
		sums.Soft += pend.soft
		sums.Correct += pend.correct
		sums.Seen += pend.seen
	}
	sums.Images += c.AccumSteps * c.BatchSize
	t.meta.Step++
	t.meta.Batch += t.microBatches()
	t.progress(h.LR, sums)
	return nil
}

// agreeStop says whether any process wants to stop after this step, so
// that all stop at the same one.
func (t *Trainer) agreeStop(stop bool) (bool, error) {
	if t.comm.Size() == 1 {
		return stop, nil
	}
	v := []float64{0}
	if stop {
		v[0] = 1
	}
	err := t.comm.AllReduceSum64(v)
	return v[0] > 0, err
}

// globalSums adds the epoch's sums over the processes (the skipped steps,
// the same on every process, are not added).
func (t *Trainer) globalSums(s EpochSums) (EpochSums, error) {
	if t.comm.Size() == 1 {
		return s, nil
	}
	v := []float64{s.Loss, s.Hard, s.Soft, s.TeacherSec, float64(s.Correct), float64(s.Seen), float64(s.Unreadable),
		float64(s.Images), float64(s.ResumedImages), s.AllReduceSec, s.DataWaitSec, s.StepSec}
	if err := t.comm.AllReduceSum64(v); err != nil {
		return s, err
	}
	n := float64(t.comm.Size())
	return EpochSums{Loss: v[0], Hard: v[1], Soft: v[2], TeacherSec: v[3], Correct: int(v[4]), Seen: int(v[5]), Skipped: s.Skipped,
		Unreadable: int(v[6]), Images: int(v[7]), ResumedImages: int(v[8]), AllReduceSec: v[9] / n, DataWaitSec: v[10] / n, StepSec: v[11] / n}, nil
}

// checkSameWeights fails unless every process holds the same parameters
// (and frozen tensors), bit for bit: a cheap hash of them, rank 0's broadcast, the mismatches
// counted over the processes.
func (t *Trainer) checkSameWeights(when string) error {
	if t.comm.Size() == 1 {
		return nil
	}
	h := fnv.New64a()
	var b [4]byte
	hash := func(vs []float32) {
		for _, v := range vs {
			binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
			h.Write(b[:])
		}
	}
	for _, p := range t.step.Params {
		hash(t.run.State(p.Name))
	}
	// Frozen tensors are each process's constants, from its own --init file.
	frozen := make([]string, 0, len(t.step.Options.Frozen))
	for n := range t.step.Options.Frozen {
		frozen = append(frozen, n)
	}
	sort.Strings(frozen)
	for _, n := range frozen {
		hash(t.step.Options.Frozen[n])
	}
	mine := h.Sum(nil)
	root := append([]byte{}, mine...)
	if err := t.comm.Broadcast(root, 0); err != nil {
		return err
	}
	differ := []float64{0}
	if string(root) != string(mine) {
		differ[0] = 1
	}
	if err := t.comm.AllReduceSum64(differ); err != nil {
		return err
	}
	if differ[0] > 0 {
		return fmt.Errorf("%s: the weights of %g of %d processes differ from rank 0's; stopping (a kernel that is not deterministic, or a bug)", when, differ[0], t.comm.Size())
	}
	return nil
}
