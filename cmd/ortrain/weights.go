package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ortrain/ortrain/models"
	"github.com/ortrain/ortrain/training"
	"github.com/ortrain/ortrain/weights"
)

// cmdImport writes weights trained elsewhere (torchvision, timm, another
// ortrain run) as an inference model.
func cmdImport(args []string, stdout, stderr io.Writer) error {
	const synopsis = "import WEIGHTS --model resnet50b [--classes K] -o model.onnx"
	fs, help := flagSet("import")
	model := fs.String("model", "", "the network the weights are of (torchvision's resnet50 is resnet50b, timm's resnet50d is resnet50d; see docs/models.md)")
	classes := fs.Int("classes", 0, "classes of the classifier (0: as many as the weights' fc.weight has)")
	size := fs.Int("image-size", 224, "input size the model declares")
	batch := fs.Int("batch", 0, "fixed batch size (0: dynamic)")
	out := fs.StringP("output", "o", "", "ONNX file to write")
	fold := fs.Bool("fold-bn", false, "fold BatchNorm into the convolutions (for serving)")
	namesFile := fs.String("class-names", "", "text file with one class name per line, for the metadata")
	pf := addPreprocessFlags(fs)
	if err := parse(fs, help, args, synopsis, stdout); err != nil {
		return err
	}
	if fs.NArg() != 1 || *model == "" || *out == "" {
		return usageError{fmt.Errorf("want one weights file, --model and -o (ortrain %s)", synopsis)}
	}
	if _, _, err := models.ParseName(*model); err != nil {
		return usageError{err}
	}
	ov, err := pf.overrides()
	if err != nil {
		return err
	}
	pre, _, err := ov.Apply(models.DefaultPreprocessing())
	if err != nil {
		return usageError{err}
	}
	var names []string
	if *namesFile != "" {
		if names, err = readLines(*namesFile); err != nil {
			return err
		}
	}
	path := fs.Arg(0)
	ws, err := training.ReadWeights(path)
	if err != nil {
		return err
	}
	k := *classes
	if k == 0 {
		k = classesOf(ws)
	}
	mo := models.Options{Name: *model, Classes: k, ImageSize: *size, Batch: *batch}
	state, note, err := training.FitWeights(ws, mo, false)
	if err != nil {
		return fmt.Errorf("%s as %s: %w", path, *model, err)
	}
	if note != "" {
		fmt.Fprintf(stderr, "note: %s\n", note)
	}
	m, info, err := training.Export(state, training.ExportOptions{Model: mo, FoldBN: *fold, ClassNames: names, Preprocessing: &pre})
	if err != nil {
		return err
	}
	if err := m.Graph.WriteFile(*out, info); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%s, %d classes, %dx%d; %s)\n", *out, m.Name, m.Classes, m.ImageSize, m.ImageSize, pre)
	return nil
}

// classesOf is the class count of the weights' classifier (1000 when they
// have none to say).
func classesOf(ws weights.Set) int {
	if t, ok := ws["fc.weight"]; ok && len(t.Shape) == 2 && t.Shape[0] <= models.MaxClasses {
		return int(t.Shape[0])
	}
	return 1000
}

// readLines reads a file's non-empty lines.
func readLines(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("class names: %w", err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines, nil
}

// formatOf is the export format a file name asks for: safetensors or pth
// by extension, onnx otherwise.
func formatOf(path string) string {
	switch path = strings.ToLower(path); {
	case strings.HasSuffix(path, ".safetensors"):
		return "safetensors"
	case strings.HasSuffix(path, ".pth"), strings.HasSuffix(path, ".pt"):
		return "pth"
	}
	return "onnx"
}

// exportWeights writes a checkpoint's parameters and running statistics
// with torchvision's and timm's names, as safetensors or as a PyTorch
// state_dict file, for PyTorch's load_state_dict(strict=True).
func exportWeights(ck *training.Checkpoint, mo models.Options, out, format string) error {
	shapes, _, err := training.ModelState(mo)
	if err != nil {
		return err
	}
	ws := training.WeightsOf(ck.Tensors, shapes, ck.Meta.Step)
	if err := ws.Match(shapes); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if format == "pth" {
		return weights.WritePyTorch(out, ws)
	}
	classes, _ := json.Marshal(ck.Meta.Classes)
	meta := map[string]string{"format": "pt", models.MetaArchitecture: mo.Name, models.MetaClasses: string(classes)}
	return weights.WriteSafetensors(out, ws, meta)
}
