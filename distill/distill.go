// Package distill runs knowledge distillation's teacher.
//
// The teacher is any ONNX image classifier (one made by graphgen, exported
// by ortrain, or exported from another framework), checked on load against
// the student's classes and
// batch shape, run frozen in its own ONNX Runtime session with its own
// execution provider and threads, giving logits for exactly the batch the
// student sees.
//
// It imports runtime (and nothing of training: training calls it through its
// Teacher interface, which *Teacher satisfies).
package distill

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ortrain/ortrain/classifier"
	"github.com/ortrain/ortrain/models"
	"github.com/ortrain/ortrain/runtime"
)

// Expect is what the student needs of a teacher.
type Expect struct {
	Classes   int // K of the student's logits
	Batch     int // images per batch
	ImageSize int // H = W of the student's input
	// Mean and Std are the normalization of the student's images (0-255
	// scale; zero: the seed's, models.Mean and models.Std).
	Mean, Std [3]float32
}

// Teacher is a loaded, checked teacher model.
type Teacher struct {
	Path string
	// Note says how the teacher's input differs from the student's and
	// what is done about it ("" when it does not).
	Note   string
	sess   *runtime.Session
	expect Expect
	in     *runtime.Tensor
	inData []float32
	out    *runtime.Tensor
	outBuf []float32
	// scale and shift renormalize the student's images for the teacher,
	// per channel, into renorm; nil when the two normalizations agree.
	scale, shift []float32
	renorm       []float32
}

// Load opens a teacher and checks it fits the student; the error names what
// differs.
func Load(path string, e Expect, opts runtime.Options) (*Teacher, error) {
	sess, err := runtime.NewSessionFromFile(path, nil, nil, opts)
	if err != nil {
		return nil, fmt.Errorf("teacher: %w", err)
	}
	t := &Teacher{Path: path, sess: sess, expect: e}
	if err := t.check(); err != nil {
		sess.Destroy()
		return nil, err
	}
	if err := t.normalization(); err != nil {
		sess.Destroy()
		return nil, err
	}
	if err := t.trial(); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// trial runs the teacher once on a batch of zeros of the student's shape:
// a model whose declared input shape is flexible (symbolic H and W) may
// still not compute at the student's size, and that must fail the start,
// not the first training step.
func (t *Teacher) trial() error {
	e := t.expect
	images := make([]float32, e.Batch*3*e.ImageSize*e.ImageSize)
	logits := make([]float32, e.Batch*e.Classes)
	err := t.Logits(images, e.Batch, logits)
	// Release the tensors over the trial buffers.
	t.in.Destroy()
	t.out.Destroy()
	t.in, t.out, t.inData, t.outBuf = nil, nil, nil, nil
	if err != nil {
		// Logits names the teacher already; keep ONNX Runtime's reason only.
		if inner := errors.Unwrap(err); inner != nil {
			err = inner
		}
		return fmt.Errorf("teacher %s: does not run on the student's batch (%d,3,%d,%d): %s", t.Path, e.Batch, e.ImageSize, e.ImageSize,
			strings.Join(strings.Fields(err.Error()), " "))
	}
	return nil
}

// check requires an image classifier with one output that fits the
// student's classes, batch and image size.
func (t *Teacher) check() error {
	e := t.expect
	info, err := classifier.Inspect(t.sess, "teacher "+t.Path)
	if err != nil {
		return err
	}
	fail := func(format string, a ...any) error {
		return fmt.Errorf("teacher %s: %s", t.Path, fmt.Sprintf(format, a...))
	}
	switch {
	case info.Outputs != 1:
		return fail("has %d outputs; a teacher has one, its logits (N,K)", info.Outputs)
	case info.Batch >= 0 && info.Batch != int64(e.Batch):
		return fail("input %s takes batches of %d, the student's are %d", info.Input, info.Batch, e.Batch)
	case info.Height >= 0 && info.Height != int64(e.ImageSize) || info.Width >= 0 && info.Width != int64(e.ImageSize):
		return fail("input %s is %dx%d, the student's images are %dx%d", info.Input, info.Height, info.Width, e.ImageSize, e.ImageSize)
	case info.Classes >= 0 && info.Classes != int64(e.Classes):
		return fail("output %s has %d classes, the student %d", info.Logits, info.Classes, e.Classes)
	}
	return nil
}

// normalization compares the teacher's normalization (its metadata's, when
// it states one) with the student's and sets up the renormalization:
// x_teacher = (x*std_s + mean_s - mean_t) / std_t per channel.
func (t *Teacher) normalization() error {
	p, found, err := models.PreprocessingFromMetadata(t.sess.Metadata)
	if err != nil {
		return fmt.Errorf("teacher %s: %w", t.Path, err)
	}
	mean, std := t.expect.Mean, t.expect.Std
	if mean == ([3]float32{}) && std == ([3]float32{}) {
		mean, std = models.Mean, models.Std
	}
	if len(found) == 0 || (p.Mean == mean && p.Std == std) {
		return nil
	}
	t.scale, t.shift = make([]float32, 3), make([]float32, 3)
	for c := 0; c < 3; c++ {
		t.scale[c] = std[c] / p.Std[c]
		t.shift[c] = (mean[c] - p.Mean[c]) / p.Std[c]
	}
	t.Note = fmt.Sprintf("the teacher expects images normalized by mean %s, std %s (its metadata); the student's batches are renormalized for it",
		fmtTriple(p.Mean), fmtTriple(p.Std))
	return nil
}

func fmtTriple(v [3]float32) string { return fmt.Sprintf("%g,%g,%g", v[0], v[1], v[2]) }

// Logits runs the teacher on n images (n x 3 x H x W) and writes n x K
// logits into dst. The input and output tensors wrap the caller's slices
// (no copies, unless the teacher needs its images renormalized) and are
// reused while the slices stay the same.
func (t *Teacher) Logits(images []float32, n int, dst []float32) error {
	e := t.expect
	per := 3 * e.ImageSize * e.ImageSize
	if len(images) < n*per || len(dst) < n*e.Classes {
		return fmt.Errorf("teacher: buffers too small for %d images", n)
	}
	if t.scale != nil {
		if len(t.renorm) < n*per {
			t.renorm = make([]float32, n*per)
		}
		plane := per / 3
		for i := 0; i < n*3; i++ {
			a, b := t.scale[i%3], t.shift[i%3]
			src, out := images[i*plane:(i+1)*plane], t.renorm[i*plane:(i+1)*plane]
			for j, x := range src {
				out[j] = a*x + b
			}
		}
		images = t.renorm
	}
	var err error
	if t.in == nil || &t.inData[0] != &images[0] || len(t.inData) != n*per {
		t.in.Destroy()
		t.inData = images[:n*per]
		if t.in, err = runtime.NewFloat32([]int64{int64(n), 3, int64(e.ImageSize), int64(e.ImageSize)}, t.inData); err != nil {
			return fmt.Errorf("teacher: %w", err)
		}
	}
	if t.out == nil || &t.outBuf[0] != &dst[0] || len(t.outBuf) != n*e.Classes {
		t.out.Destroy()
		t.outBuf = dst[:n*e.Classes]
		if t.out, err = runtime.NewFloat32([]int64{int64(n), int64(e.Classes)}, t.outBuf); err != nil {
			return fmt.Errorf("teacher: %w", err)
		}
	}
	if _, err := t.sess.Run([]*runtime.Tensor{t.in}, []*runtime.Tensor{t.out}); err != nil {
		return fmt.Errorf("teacher %s: %w", t.Path, err)
	}
	return nil
}

// Close releases the session and tensors.
func (t *Teacher) Close() {
	if t == nil {
		return
	}
	t.in.Destroy()
	t.out.Destroy()
	t.sess.Destroy()
}
