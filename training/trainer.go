package training

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/ortrain/ortrain/models"
	"github.com/ortrain/ortrain/runtime"
	"github.com/ortrain/ortrain/training/data"
)

// Teacher gives the logits of a frozen teacher for a batch of images
// (n x 3 x H x W, normalized as the student's) into dst (n x K). The
// distill package implements it; training knows only this interface.
type Teacher interface {
	Logits(images []float32, n int, dst []float32) error
}

// ErrInterrupted is returned by Run after a clean stop on request: the
// current step finished and a checkpoint was written.
var ErrInterrupted = errors.New("training interrupted; checkpoint written")

// Trainer runs one training job.
type Trainer struct {
	Config  Config
	Log     io.Writer // configuration, epoch summaries
	Prog    Progress
	Teacher Teacher
	// Convolutions says, after Setup, how the step's convolutions run on
	// the CPU: "blocked (ONNX Runtime NCHWc, block 16)" or "plain (why)";
	// empty on other providers.
	Convolutions string
	// LoadTeacher, when set and the configuration names a teacher, is called
	// by Setup with the number of classes in the data, before the run
	// folder is made, so that a teacher that does not fit fails the start
	// without leaving anything behind. Its result becomes Teacher; the
	// caller closes it.
	LoadTeacher func(classes int) (Teacher, error)
	// StopAfter stops the run (as an interruption) after this many steps
	// in this process; 0 never. Tests use it to simulate a kill.
	StopAfter int
	// Comm connects the processes of a data-parallel job (nil: one
	// process). Its size must be Config.Processes. Rank 0 alone writes the
	// run folder and logs; every process computes the same update.
	Comm Collective

	comm       Collective
	train, val *data.Dataset
	step       *Step
	run        runner        // st or sp
	st         *Stepper      // the fused step
	sp         *SplitStepper // the split step (split)
	pend       pending
	eval       *runtime.Session
	evalNames  []string
	sched      Schedule
	scaler     *LossScaler
	hist       []EpochRecord
	meta       CheckpointMeta
	classes    int
	// shapes are the model's state_dict: its tensors' shapes by name.
	shapes map[string][]int64
	done   int   // steps run by this process (for StopAfter)
	labels []int // scratch: the labels of the batch being stepped
}

// checkpoint file names in <out>/checkpoints/.
const (
	lastCheckpoint = "last.ckpt"
	bestCheckpoint = "best.ckpt"
)

// CheckpointDir is where a run keeps its checkpoints.
func CheckpointDir(out string) string { return filepath.Join(out, "checkpoints") }

// Setup opens the data, builds the graphs and sessions, and loads the
// checkpoint when resuming. rt are the ONNX Runtime options of the student.
// Nothing is written before every check has passed: a failed start leaves
// no run folder behind.
func (t *Trainer) Setup(rt runtime.Options, resume bool) error {
	c := &t.Config
	if err := c.Validate(); err != nil {
		return err
	}
	t.comm = t.Comm
	if t.comm == nil {
		t.comm = solo{}
	}
	if t.comm.Size() != c.Processes {
		return fmt.Errorf("the run is configured for %d processes and runs on %d", c.Processes, t.comm.Size())
	}
	if err := t.openData(); err != nil {
		return err
	}
	if t.stepsPerEpoch() < 1 {
		return fmt.Errorf("dataset %s: %d training images, fewer than one step of %d (%d processes x %d micro-batches of %d)",
			c.Data, len(t.train.Samples), c.GlobalBatch(), c.Processes, c.AccumSteps, c.BatchSize)
	}
	full, ck, err := t.startState(resume)
	if err != nil {
		return err
	}
	so := t.stepOptions(rt)
	so.Frozen = t.frozenPart(full)
	if t.step, err = BuildStep(so); err != nil {
		return err
	}
	state, err := t.resumeFrom(ck, full)
	if err != nil {
		return err
	}
	if err := t.newRunner(so, state, rt); err != nil {
		return err
	}
	if err := t.checkSameWeights("at the start"); err != nil {
		return err
	}
	if t.sched, err = c.Schedule(t.stepsPerEpoch()); err != nil {
		return err
	}
	if err := t.setupEval(rt); err != nil {
		return err
	}
	if c.Teacher != "" && t.LoadTeacher != nil {
		if t.Teacher, err = t.LoadTeacher(t.classes); err != nil {
			return err
		}
	}
	if t.comm.Rank() != 0 {
		return nil // rank 0 writes the run folder
	}
	return t.makeRunFolder()
}

// newRunner loads the step into ONNX Runtime: fused for one process with
// one micro-batch per step, split otherwise (the step graph built for the
// fused one gives the state's names and shapes either way).
func (t *Trainer) newRunner(so StepOptions, state map[string][]float32, rt runtime.Options) error {
	if !t.split() {
		st, err := NewStepper(t.step, state, rt)
		t.st, t.run = st, st
		return err
	}
	gs, us, err := BuildSplitStep(so)
	if err != nil {
		return err
	}
	sp, err := NewSplitStepper(gs, us, state, rt)
	t.sp, t.run = sp, sp
	return err
}

// openData opens the training and validation folders.
func (t *Trainer) openData() error {
	c := &t.Config
	train, val, err := data.OpenSplits(c.Data)
	if err != nil {
		return err
	}
	t.train, t.val, t.classes = train, val, len(train.Classes)
	if len(train.Samples) < c.BatchSize {
		return fmt.Errorf("dataset %s: %d training images, fewer than one batch of %d", c.Data, len(train.Samples), c.BatchSize)
	}
	return nil
}

// stepOptions are the train step's options, and on the CPU the choice of
// its convolutions (Convolutions says which and why).
func (t *Trainer) stepOptions(rt runtime.Options) StepOptions {
	c := &t.Config
	mo := models.Options{Name: c.Model, Classes: t.classes, ImageSize: c.ImageSize, Batch: c.BatchSize,
		Seed: c.Seed, ZeroGamma: c.ZeroGamma, Opset: c.Opset}
	so := StepOptions{Model: mo, Distill: c.Teacher != "", NoBiasDecay: c.NoBiasDecay, FP16: c.FP16}
	switch {
	case !rt.Provider.CPU(): // the portable graph; nothing to say
	case c.FP16:
		t.Convolutions = "plain (the float16 step)"
	case c.PlainConv:
		t.Convolutions = "plain (as asked)"
	default:
		if err := so.UseCPUKernels(rt); err != nil {
			t.Convolutions = fmt.Sprintf("plain (%v), small planes as batch-wide products", err)
		} else {
			t.Convolutions = fmt.Sprintf("blocked (ONNX Runtime NCHWc, block %d), small planes as batch-wide products", so.NchwcBlock)
		}
	}
	return so
}

// makeRunFolder makes the run folder and removes temporary files of a
// checkpoint write that a crash interrupted.
func (t *Trainer) makeRunFolder() error {
	dir := CheckpointDir(t.Config.Out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("run folder %s: %w", t.Config.Out, err)
	}
	stale, _ := filepath.Glob(filepath.Join(dir, ".*.tmp*"))
	for _, f := range stale {
		os.Remove(f)
	}
	return nil
}

// ClassNames are the dataset's classes (after Setup).
func (t *Trainer) ClassNames() []string { return t.train.Classes }

// stepsPerEpoch is the optimizer steps of an epoch: the training images
// over the global batch (a last partial step dropped).
func (t *Trainer) stepsPerEpoch() int { return len(t.train.Samples) / t.Config.GlobalBatch() }

// Close releases the sessions.
func (t *Trainer) Close() {
	if t.run != nil {
		t.run.Close()
	}
	t.eval.Destroy()
}

// Run trains from where the state is to the last epoch, evaluating and
// checkpointing after each epoch, and exports the final model.
func (t *Trainer) Run(ctx context.Context) error {
	c := &t.Config
	loader := &data.Loader{Data: t.train, Batch: c.BatchSize, Size: c.ImageSize, Train: true,
		Aug: data.NewTrainTransform(c.ImageSize), Workers: c.Workers, Seed: c.Seed, BadLimit: c.BadLimit,
		Ranks: t.comm.Size(), Rank: t.comm.Rank(), Limit: t.stepsPerEpoch() * t.microBatches()}
	for epoch := t.meta.Epoch; epoch < c.Epochs; epoch++ {
		start := time.Now()
		sums, interrupted, err := t.trainEpoch(ctx, loader, epoch)
		if err != nil {
			return err
		}
		if sums, err = t.globalSums(sums); err != nil {
			return err
		}
		if interrupted {
			t.Prog.End()
			t.meta.Partial = sums
			if err := t.saveCheckpoint(lastCheckpoint); err != nil {
				return err
			}
			return ErrInterrupted
		}
		trainSec := time.Since(start).Seconds() // the rate is of training alone
		evalStart := time.Now()
		ev, err := t.Evaluate()
		if err != nil {
			return err
		}
		evalSec := time.Since(evalStart).Seconds()
		if err := t.checkSameWeights(fmt.Sprintf("after epoch %d", epoch+1)); err != nil {
			return err
		}
		rec := t.epochRecord(epoch, sums, ev, trainSec, evalSec, time.Since(start).Seconds())
		t.hist = append(t.hist, rec)
		t.meta.Epoch, t.meta.Batch, t.meta.LastTop1, t.meta.Partial = epoch+1, 0, ev.Top1, EpochSums{}
		fmt.Fprintln(t.Log, t.epochLine(rec, ev))
		if err := t.endOfEpoch(ev.Top1); err != nil {
			return err
		}
		if stop, err := t.agreeStop(ctx.Err() != nil); err != nil || stop {
			if err == nil {
				err = ErrInterrupted
			}
			return err
		}
	}
	return t.exportFinal()
}

// trainEpoch trains on the epoch's batches from where a resumed run left
// it, and says whether it stopped early (interrupted, or StopAfter). With
// several processes the sums are this process's.
func (t *Trainer) trainEpoch(ctx context.Context, loader *data.Loader, epoch int) (sums EpochSums, interrupted bool, err error) {
	c := &t.Config
	first := t.meta.Batch // micro-batches of the epoch done (every process's)
	if first > 0 && t.comm.Rank() == 0 {
		sums = t.meta.Partial // the part of this epoch done before a resume, summed over the processes
		sums.ResumedImages = sums.Images
	}
	t.Prog.Begin(fmt.Sprintf("epoch %d/%d", epoch+1, c.Epochs), t.stepsPerEpoch(), first/t.microBatches())
	loaderCtx, cancel := context.WithCancel(context.Background())
	ch, err := loader.Epoch(loaderCtx, epoch, first)
	if err != nil {
		cancel()
		return sums, false, err
	}
	batches := t.prepare(loaderCtx, ch, epoch)
	defer func() {
		cancel()
		for p := range batches { // drain: the pipeline stops at the cancellation
			p.recycle()
		}
		for range ch {
		}
	}()
	micro := 0
	waited := time.Now() // since the last batch was done with: the time until the next is waiting
	for p := range batches {
		start := time.Now()
		sums.DataWaitSec += start.Sub(waited).Seconds()
		applied := true
		if !t.split() {
			err = t.trainBatch(p, &sums)
		} else if err = t.accumulate(p, &sums); err == nil {
			if micro++; micro == c.AccumSteps {
				micro = 0
				err = t.applyStep(&sums)
			} else {
				applied = false
			}
		}
		if err != nil {
			return sums, false, err
		}
		sums.StepSec += time.Since(start).Seconds()
		waited = time.Now()
		if !applied {
			continue
		}
		t.done++
		stop, err := t.agreeStop(ctx.Err() != nil || (t.StopAfter > 0 && t.done >= t.StopAfter))
		if err != nil || stop {
			return sums, stop, err
		}
		if err := t.checkpointMidEpoch(sums); err != nil {
			return sums, false, err
		}
		waited = time.Now()
	}
	return sums, false, nil
}

// checkpointMidEpoch writes last.ckpt every CheckpointEvery steps within
// an epoch (not at its last step: the epoch's end writes one), with the
// epoch's sums so far over every process.
func (t *Trainer) checkpointMidEpoch(sums EpochSums) error {
	c := &t.Config
	if c.CheckpointEvery <= 0 || t.meta.Step%c.CheckpointEvery != 0 || t.meta.Batch >= t.stepsPerEpoch()*t.microBatches() {
		return nil
	}
	global, err := t.globalSums(sums)
	if err != nil {
		return err
	}
	t.meta.Partial = global
	return t.saveCheckpoint(lastCheckpoint)
}

// load copies a prepared batch into the stepper's inputs and reports its
// unreadable images.
func (t *Trainer) load(p *prepared, sums *EpochSums) error {
	if p.err != nil {
		return p.err
	}
	copy(t.run.Images(), p.images)
	copy(t.run.Targets(), p.targets)
	if t.Teacher != nil {
		copy(t.run.TeacherLogits(), p.teacher)
		sums.TeacherSec += p.teacherSec
	}
	sums.Unreadable += len(p.unreadable)
	for _, f := range p.unreadable {
		if sums.Unreadable <= 3 {
			fmt.Fprintf(t.Log, "warning: unreadable image %s, replaced\n", f)
		}
	}
	return nil
}

// hyper are the scalars of the next step.
func (t *Trainer) hyper() Hyper {
	c := &t.Config
	h := Hyper{LR: float32(t.sched.LR(t.meta.Step)), Momentum: float32(c.Momentum), WeightDecay: float32(c.WeightDecay),
		KDTemperature: float32(c.KDTemperature), KDHardWeight: float32(c.KDHardWeight)}
	if t.scaler != nil {
		h.LossScale = t.scaler.Scale
	}
	return h
}

// afterStep updates the loss scale; in float32 a step whose gradients are
// not finite is an error (with FP16 it is skipped and the scale halved).
func (t *Trainer) afterStep(finite bool, loss float64) error {
	if t.scaler != nil {
		return t.scaler.Update(finite)
	}
	if !finite {
		return fmt.Errorf("step %d: the loss or a gradient is not finite (loss %g); lower the learning rate", t.meta.Step, loss)
	}
	return nil
}

// progress updates the progress line after a step.
func (t *Trainer) progress(lr float32, sums *EpochSums) {
	c := &t.Config
	extra := ""
	if t.scaler != nil {
		extra = fmt.Sprintf("  scale %g", t.scaler.Scale)
	}
	t.Prog.Update(t.meta.Batch/t.microBatches(), c.GlobalBatch(), sums.Loss/math.Max(float64(sums.Seen/c.BatchSize), 1), float64(lr), extra)
}

// trainBatch runs one fused step on a prepared batch and adds it to the
// epoch's sums. With FP16 a step whose gradients overflowed is skipped (the
// loss scaler halves the scale); in float32 it is an error.
func (t *Trainer) trainBatch(p *prepared, sums *EpochSums) error {
	c := &t.Config
	if err := t.load(p, sums); err != nil {
		return err
	}
	labels := append(t.labels[:0], p.labels...)
	index := p.index
	if c.TeacherOverlap {
		p.recycle() // the next batch and its teacher run during this step
	}
	h := t.hyper()
	res, err := t.st.Run(h)
	if !c.TeacherOverlap {
		p.recycle()
	}
	if err != nil {
		return err
	}
	if err := t.afterStep(res.Finite, float64(res.Losses[0])); err != nil {
		return err
	}
	if !res.Finite {
		sums.Skipped++
	} else {
		sums.Loss += float64(res.Losses[0])
		if len(res.Losses) == 3 {
			sums.Hard += float64(res.Losses[1])
			sums.Soft += float64(res.Losses[2])
		}
		sums.Correct += topKCorrect(t.st.Logits(), labels, t.classes, 1)
		sums.Seen += c.BatchSize
	}
	sums.Images += c.BatchSize
	t.meta.Step++
	t.meta.Batch = index + 1
	t.progress(h.LR, sums)
	return nil
}

// epochRecord is the metrics line of a finished epoch.
func (t *Trainer) epochRecord(epoch int, sums EpochSums, ev EvalResult, trainSec, evalSec, sec float64) EpochRecord {
	c := &t.Config
	nb := math.Max(float64(sums.Seen/c.BatchSize), 1)
	rec := EpochRecord{Epoch: epoch + 1, Step: t.meta.Step, LR: t.sched.LR(max(t.meta.Step-1, 0)),
		TrainLoss: sums.Loss / nb, TrainTop1: float64(sums.Correct) / math.Max(float64(sums.Seen), 1),
		ValTop1: ev.Top1, ValTop5: ev.Top5, ValLoss: ev.Loss,
		ImagesPerS: float64(sums.Images-sums.ResumedImages) / trainSec, // this process's images
		Skipped:    sums.Skipped, Unreadable: sums.Unreadable, Seconds: sec,
		DataWaitSeconds: sums.DataWaitSec, StepSeconds: sums.StepSec, EvalSeconds: evalSec}
	if t.Teacher != nil {
		rec.TrainHard, rec.TrainSoft = sums.Hard/nb, sums.Soft/nb
		rec.TeacherMS = 1000 * sums.TeacherSec / float64(max(sums.Images/c.BatchSize, 1))
	}
	if t.scaler != nil {
		rec.LossScale = float64(t.scaler.Scale)
	}
	if steps := (sums.Images - sums.ResumedImages) / c.GlobalBatch(); t.comm.Size() > 1 && steps > 0 {
		rec.AllReduceMS = 1000 * sums.AllReduceSec / float64(steps)
	}
	return rec
}

// epochLine is the log line of a finished epoch.
func (t *Trainer) epochLine(rec EpochRecord, ev EvalResult) string {
	notes := ""
	if rec.Unreadable > 0 {
		notes += fmt.Sprintf(", %d unreadable images replaced", rec.Unreadable)
	}
	if len(ev.Unreadable) > 0 {
		notes += fmt.Sprintf(", %d unreadable validation images skipped (%s)", len(ev.Unreadable), ev.Unreadable[0])
	}
	if rec.Skipped > 0 {
		notes += fmt.Sprintf(", %d steps skipped for overflow", rec.Skipped)
	}
	if t.Teacher != nil {
		notes += fmt.Sprintf(", loss hard %.4f soft %.4f, teacher %.0f ms/batch", rec.TrainHard, rec.TrainSoft, rec.TeacherMS)
	}
	return fmt.Sprintf("epoch %d/%d: train loss %.4f, val top-1 %.2f%%, top-5 %.2f%%, val loss %.4f, %.1f img/s, %.0fs (steps %.0fs, waiting for data %.0fs, evaluation %.0fs)%s",
		rec.Epoch, t.Config.Epochs, rec.TrainLoss, 100*rec.ValTop1, 100*rec.ValTop5, rec.ValLoss, rec.ImagesPerS, rec.Seconds,
		rec.StepSeconds, rec.DataWaitSeconds, rec.EvalSeconds, notes)
}

// prepared is a batch ready for a step: images, soft targets (smoothed,
// mixed) and the teacher's logits.
type prepared struct {
	images, targets, teacher []float32
	labels                   []int
	index                    int
	unreadable               []string
	teacherSec               float64
	err                      error
	recycle                  func()
}

// prepare turns the loader's batches into prepared ones on a goroutine,
// through one staging buffer: while the trainer holds it the next batch
// waits, and once the trainer hands it back (before its step with
// TeacherOverlap, after it otherwise) the next batch is staged and the
// teacher scores it. So with TeacherOverlap the teacher's forward for batch
// b+1 runs alongside the student's step b. Mixup draws from (seed, epoch,
// batch), so the result does not depend on timing.
func (t *Trainer) prepare(ctx context.Context, ch <-chan *data.Batch, epoch int) <-chan *prepared {
	c := &t.Config
	k := t.classes
	per := 3 * c.ImageSize * c.ImageSize
	smoothing, _ := ParseSmoothing(c.SmoothingRule)
	out := make(chan *prepared)
	free := make(chan *prepared, 1)
	p := &prepared{images: make([]float32, c.BatchSize*per), targets: make([]float32, c.BatchSize*k),
		labels: make([]int, c.BatchSize)}
	if t.Teacher != nil {
		p.teacher = make([]float32, c.BatchSize*k)
	}
	p.recycle = func() { free <- p }
	free <- p
	go func() {
		defer close(out)
		for b := range ch {
			var p *prepared
			select {
			case p = <-free:
			case <-ctx.Done():
				b.Release()
				return
			}
			p.err = b.Err
			if p.err == nil {
				copy(p.images, b.Images[:c.BatchSize*per])
				copy(p.labels, b.Labels[:c.BatchSize])
				p.index, p.unreadable = b.Index, append(p.unreadable[:0], b.Unreadable...)
			}
			b.Release()
			if p.err == nil {
				p.err = SmoothTargets(p.targets, p.labels, k, float32(c.LabelSmoothing), smoothing)
			}
			if p.err == nil && c.MixupAlpha > 0 {
				r := rand.New(rand.NewPCG(c.Seed^0x6d697875, uint64(epoch)<<32|uint64(p.index)))
				lam := float32(SampleBeta(r, c.MixupAlpha, c.MixupAlpha))
				p.err = Mixup(p.images, p.targets, c.BatchSize, k, lam)
			}
			if p.err == nil && t.Teacher != nil {
				ts := time.Now()
				if err := t.Teacher.Logits(p.images, c.BatchSize, p.teacher); err != nil {
					p.err = fmt.Errorf("teacher: %w", err)
				}
				p.teacherSec = time.Since(ts).Seconds()
			}
			select {
			case out <- p:
			case <-ctx.Done():
				return
			}
			if p.err != nil {
				return
			}
		}
	}()
	return out
}

// endOfEpoch writes metrics, plots and checkpoints (last, best, epoch N,
// pruning old epoch checkpoints beyond KeepLast).
func (t *Trainer) endOfEpoch(top1 float64) error {
	c := &t.Config
	best := top1 > t.meta.BestTop1
	if best {
		t.meta.BestTop1 = top1
	}
	if t.comm.Rank() != 0 {
		return nil // rank 0 writes the run folder
	}
	if err := WriteMetrics(c.Out, t.hist); err != nil {
		return err
	}
	if err := t.saveCheckpoint(lastCheckpoint); err != nil {
		return err
	}
	if best {
		if err := t.saveCheckpoint(bestCheckpoint); err != nil {
			return err
		}
	}
	if c.KeepLast > 0 {
		if err := t.saveCheckpoint(fmt.Sprintf("epoch-%04d.ckpt", t.meta.Epoch)); err != nil {
			return err
		}
		old, _ := filepath.Glob(filepath.Join(CheckpointDir(c.Out), "epoch-*.ckpt"))
		sort.Strings(old)
		for len(old) > c.KeepLast {
			os.Remove(old[0])
			old = old[1:]
		}
	}
	return nil
}

func (t *Trainer) saveCheckpoint(name string) error {
	cfg, err := jsonRaw(t.Config)
	if err != nil {
		return err
	}
	t.meta.Config = cfg
	t.meta.Shapes = t.stateShapes()
	if t.scaler != nil {
		s := *t.scaler
		t.meta.Scaler = &s
	}
	if t.comm.Rank() != 0 {
		return nil // every process holds the same state; rank 0 writes it
	}
	return WriteCheckpoint(filepath.Join(CheckpointDir(t.Config.Out), name), &Checkpoint{Meta: t.meta, Tensors: t.fullState()})
}

// exportFinal writes model.onnx: the inference graph with the final weights
// and the class names.
func (t *Trainer) exportFinal() error {
	c := &t.Config
	if t.comm.Rank() != 0 {
		return nil
	}
	m, info, err := Export(t.fullState(), ExportOptions{
		Model:      models.Options{Name: c.Model, Classes: t.classes, ImageSize: c.ImageSize, Opset: c.Opset},
		ClassNames: t.train.Classes})
	if err != nil {
		return err
	}
	p := filepath.Join(c.Out, "model.onnx")
	if err := m.Graph.WriteFile(p, info); err != nil {
		return err
	}
	fmt.Fprintf(t.Log, "wrote %s\n", p)
	return nil
}
