package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/spf13/pflag"

	"github.com/ortrain/ortrain/classifier"
	"github.com/ortrain/ortrain/models"
	"github.com/ortrain/ortrain/runtime"
	"github.com/ortrain/ortrain/training"
	"github.com/ortrain/ortrain/training/data"
)

// classifier describes an image classifier session: input size, classes.
type imageClassifier struct {
	sess    *runtime.Session
	size    int
	k       int
	classes []string           // from metadata; nil when the model has none
	eval    data.EvalTransform // the validation transform at size
}

// asClassifier checks that a session is an image classifier and reads its
// size and class names; sizeFlag is used when the model's H and W are
// dynamic, else its metadata's size.
func asClassifier(sess *runtime.Session, path string, sizeFlag int) (*imageClassifier, error) {
	info, err := classifier.Inspect(sess, path)
	if err != nil {
		return nil, err
	}
	c := &imageClassifier{sess: sess, k: int(info.Classes), classes: info.ClassNames}
	h, w := info.Height, info.Width
	switch {
	case h > 0 && w > 0 && h != w:
		return nil, fmt.Errorf("%s takes %dx%d images; only square inputs are supported", path, h, w)
	case h > 0:
		c.size = int(h)
	case sizeFlag > 0:
		c.size = sizeFlag
	default:
		if v, err := strconv.Atoi(info.Metadata[models.MetaImageSize]); err == nil && v > 0 {
			c.size = v
		} else {
			return nil, fmt.Errorf("%s has a dynamic image size; give --image-size", path)
		}
	}
	return c, nil
}

// openClassifier loads a model, checks that it is an image classifier and
// sets up its preprocessing (the model's own, with the flags' overrides),
// which it reports on stderr.
func openClassifier(rt *rtFlags, pf *preprocessFlags, model string, size int, stderr io.Writer) (*imageClassifier, error) {
	over, err := pf.overrides()
	if err != nil {
		return nil, err
	}
	sess, err := rt.open(model, stderr)
	if err != nil {
		return nil, err
	}
	c, err := asClassifier(sess, model, size)
	if err == nil {
		var note string
		c.eval, note, err = training.EvalPreprocessing(sess.Metadata, over)
		if err != nil {
			err = fmt.Errorf("%s: %w", model, err)
		} else {
			c.eval.Size = c.size
			fmt.Fprintln(stderr, note)
			if _, found, _ := models.PreprocessingFromMetadata(sess.Metadata); len(found) == 0 && over == (training.PreprocessOverrides{}) {
				fmt.Fprintln(stderr, "--mean, --std, --crop-pct and --interpolation set them")
			}
		}
	}
	if err != nil {
		sess.Destroy()
		return nil, err
	}
	return c, nil
}

// preprocessFlags override a classifier's validation preprocessing.
type preprocessFlags struct {
	fs        *pflag.FlagSet
	mean, std []float32
	cropPct   float64
	interp    string
}

func addPreprocessFlags(fs *pflag.FlagSet) *preprocessFlags {
	f := &preprocessFlags{fs: fs}
	fs.Float32SliceVar(&f.mean, "mean", nil, "R,G,B mean to subtract, on the 0-255 scale or, when all below 1, the 0-1 scale (default: the model's metadata, else ImageNet's)")
	fs.Float32SliceVar(&f.std, "std", nil, "R,G,B standard deviation to divide by, scales as --mean (default: the model's metadata, else ImageNet's)")
	fs.Float64Var(&f.cropPct, "crop-pct", 0, "center crop's share of the resized shorter side (default: the model's metadata, else 0.875 = 224/256)")
	fs.StringVar(&f.interp, "interpolation", "", "resize filter: bilinear or bicubic (default: the model's metadata, else bilinear)")
	return f
}

func (f *preprocessFlags) overrides() (training.PreprocessOverrides, error) {
	var o training.PreprocessOverrides
	for _, t := range []struct {
		name string
		v    []float32
		dst  **[3]float32
	}{{"mean", f.mean, &o.Mean}, {"std", f.std, &o.Std}} {
		if !f.fs.Changed(t.name) {
			continue
		}
		if len(t.v) != 3 {
			return o, usageError{fmt.Errorf("--%s takes three values (R,G,B), got %d", t.name, len(t.v))}
		}
		*t.dst = &[3]float32{t.v[0], t.v[1], t.v[2]}
	}
	if f.fs.Changed("crop-pct") {
		o.CropPct = &f.cropPct
	}
	o.Interpolation = f.interp
	return o, nil
}

func (c *imageClassifier) name(i int) string {
	if i < len(c.classes) {
		return c.classes[i]
	}
	return "class " + strconv.Itoa(i)
}

func cmdPredict(args []string, stdout, stderr io.Writer) error {
	const synopsis = "predict --model MODEL.onnx IMAGE..."
	fs, help := flagSet("predict")
	model := fs.String("model", "", "ONNX image classifier (ortrain export, graphgen, or another framework's)")
	size := fs.Int("image-size", 0, "input size when the model's is dynamic")
	top := fs.Int("top", 5, "classes to print per image")
	pf := addPreprocessFlags(fs)
	rt := addRuntimeFlags(fs)
	if err := parse(fs, help, args, synopsis, stdout); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError{fmt.Errorf("give one or more image files")}
	}
	c, err := openClassifier(rt, pf, *model, *size, stderr)
	if err != nil {
		return err
	}
	defer c.sess.Destroy()
	per := 3 * c.size * c.size
	buf := make([]float32, per)
	failed := 0
	for _, path := range fs.Args() {
		img, err := data.DecodeFile(path)
		if err == nil {
			err = c.eval.Apply(img, buf)
		}
		var logits []float32
		if err == nil {
			logits, err = c.run(buf, 1)
		}
		if err != nil {
			fmt.Fprintf(stderr, "ortrain predict: %v\n", err)
			failed++
			continue
		}
		probs := softmax(logits)
		idx := make([]int, len(probs))
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool { return probs[idx[a]] > probs[idx[b]] })
		fmt.Fprintf(stdout, "%s:", filepath.Base(path))
		for _, i := range idx[:min(*top, len(idx))] {
			fmt.Fprintf(stdout, "  %s %.1f%%", c.name(i), 100*probs[i])
		}
		fmt.Fprintln(stdout)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d images could not be classified", failed, fs.NArg())
	}
	return nil
}

// run classifies n preprocessed images.
func (c *imageClassifier) run(images []float32, n int) ([]float32, error) {
	in, err := runtime.NewFloat32([]int64{int64(n), 3, int64(c.size), int64(c.size)}, images)
	if err != nil {
		return nil, err
	}
	defer in.Destroy()
	return c.sess.RunFirstFloat32([]*runtime.Tensor{in})
}

func softmax(z []float32) []float64 {
	m := math.Inf(-1)
	for _, v := range z {
		m = math.Max(m, float64(v))
	}
	out := make([]float64, len(z))
	var s float64
	for i, v := range z {
		out[i] = math.Exp(float64(v) - m)
		s += out[i]
	}
	for i := range out {
		out[i] /= s
	}
	return out
}

func cmdEval(args []string, stdout, stderr io.Writer) error {
	const synopsis = "eval --model MODEL.onnx --data DIR [--batch-size 32]"
	fs, help := flagSet("eval")
	model := fs.String("model", "", "ONNX image classifier")
	dir := fs.String("data", "", "image folder: DIR/val/<class>/* if DIR/val exists, else DIR/<class>/*")
	batch := fs.Int("batch-size", 32, "images per run")
	size := fs.Int("image-size", 0, "input size when the model's is dynamic")
	workers := fs.Int("workers", 0, "decoding goroutines (0: one per core)")
	pf := addPreprocessFlags(fs)
	rt := addRuntimeFlags(fs)
	if err := parse(fs, help, args, synopsis, stdout); err != nil {
		return err
	}
	if *dir == "" {
		return usageError{fmt.Errorf("--data is required")}
	}
	if *batch < 1 {
		return usageError{fmt.Errorf("--batch-size must be positive")}
	}
	ds, err := openSplitOrFolder(*dir, "val")
	if err != nil {
		return err
	}
	root := ds.Root
	c, err := openClassifier(rt, pf, *model, *size, stderr)
	if err != nil {
		return err
	}
	defer c.sess.Destroy()
	if c.k != len(ds.Classes) {
		return fmt.Errorf("%s has %d classes, %s has %d", *model, c.k, root, len(ds.Classes))
	}
	if c.classes != nil {
		for i, n := range c.classes {
			if n != ds.Classes[i] {
				fmt.Fprintf(stderr, "warning: class %d is %q in the model and %q in the data\n", i, n, ds.Classes[i])
				break
			}
		}
	}
	l := &data.Loader{Data: ds, Batch: *batch, Size: c.size, Workers: *workers, Eval: c.eval}
	l.BadLimit = 1 // evaluation reports unreadable images instead of stopping
	res, err := training.EvaluateBatches(l, c.sess, make([]*runtime.Tensor, 1), c.k, false)
	if err != nil {
		return err
	}
	for i, f := range res.Unreadable {
		if i == 3 {
			fmt.Fprintf(stderr, "warning: %d more unreadable images skipped\n", len(res.Unreadable)-3)
			break
		}
		fmt.Fprintf(stderr, "warning: unreadable image %s skipped\n", f)
	}
	fmt.Fprintf(stdout, "%s on %s (%d images): top-1 %.2f%%, top-5 %.2f%%, loss %.4f\n", filepath.Base(*model), root, res.Images, 100*res.Top1, 100*res.Top5, res.Loss)
	return nil
}

func cmdExport(args []string, stdout, stderr io.Writer) error {
	const synopsis = "export --checkpoint RUN/checkpoints/best.ckpt -o model.onnx [--fold-bn] [--format onnx|safetensors|pth]"
	fs, help := flagSet("export")
	ckpt := fs.String("checkpoint", "", "checkpoint file (a run's checkpoints/best.ckpt or last.ckpt)")
	out := fs.StringP("output", "o", "", "file to write")
	format := fs.String("format", "", "onnx (an inference model), or safetensors or pth (the weights, named as in torchvision and timm, for PyTorch's load_state_dict); default: from -o's extension, else onnx")
	fold := fs.Bool("fold-bn", false, "fold BatchNorm into the convolutions (for serving; onnx)")
	batch := fs.Int("batch", 0, "fixed batch size (0: dynamic; onnx)")
	if err := parse(fs, help, args, synopsis, stdout); err != nil {
		return err
	}
	if *ckpt == "" || *out == "" {
		return usageError{fmt.Errorf("--checkpoint and -o are required")}
	}
	if *format == "" {
		*format = formatOf(*out)
	}
	if *format != "onnx" && *format != "safetensors" && *format != "pth" {
		return usageError{fmt.Errorf("--format is onnx, safetensors or pth, got %q", *format)}
	}
	if *format != "onnx" && (*fold || *batch != 0) {
		return usageError{fmt.Errorf("--fold-bn and --batch shape an ONNX model; %s holds the weights alone", *format)}
	}
	ck, err := training.ReadCheckpoint(*ckpt)
	if err != nil {
		return err
	}
	var cfg training.Config
	if err := json.Unmarshal(ck.Meta.Config, &cfg); err != nil {
		return fmt.Errorf("checkpoint %s: configuration: %w", *ckpt, err)
	}
	mo := models.Options{Name: ck.Meta.Model, Classes: len(ck.Meta.Classes), ImageSize: ck.Meta.ImageSize, Batch: *batch, Opset: cfg.Opset}
	if *format != "onnx" {
		if err := exportWeights(ck, mo, *out, *format); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s (%s weights, %d classes, epoch %d)\n", *out, ck.Meta.Model, len(ck.Meta.Classes), ck.Meta.Epoch)
		return nil
	}
	m, info, err := training.Export(ck.Tensors, training.ExportOptions{
		Model:      mo,
		FoldBN:     *fold,
		ClassNames: ck.Meta.Classes,
	})
	if err != nil {
		return err
	}
	if err := m.Graph.WriteFile(*out, info); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%s, %d classes, epoch %d, val top-1 %.2f%%)\n", *out, ck.Meta.Model, len(ck.Meta.Classes), ck.Meta.Epoch, 100*ck.Meta.LastTop1)
	return nil
}

// openSplitOrFolder opens DIR/<split> when it exists, else DIR itself.
func openSplitOrFolder(dir, split string) (*data.Dataset, error) {
	if dir == "" {
		return nil, usageError{fmt.Errorf("--data is required")}
	}
	root := dir
	if st, err := os.Stat(filepath.Join(dir, split)); err == nil && st.IsDir() {
		root = filepath.Join(dir, split)
	}
	return data.OpenFolder(root)
}

func openTrainOrFolder(dir string) (*data.Dataset, error) { return openSplitOrFolder(dir, "train") }
