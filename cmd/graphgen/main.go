// Command graphgen writes ONNX graphs of the ResNet family:
//
//	graphgen resnet50d > model.onnx
//	graphgen resnet18c --classes 10 --image-size 64 -o r18c.onnx --summary
//	graphgen --list
//
// It is a thin CLI over the models and graphgen packages.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/ortrain/ortrain/graphgen"
	"github.com/ortrain/ortrain/models"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// usageError marks errors that are the caller's: exit code 2.
type usageError struct{ error }

func run(args []string, stdout, stderr io.Writer) int {
	err := generate(args, stdout, stderr)
	if err == nil {
		return 0
	}
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, "graphgen: "+strings.ReplaceAll(err.Error(), "\n", " "))
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

func generate(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("graphgen", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	output := fs.StringP("output", "o", "", "write the model to this file (default: standard output)")
	classes := fs.Int("classes", 1000, "number of classes")
	imageSize := fs.Int("image-size", 224, "input height and width")
	batch := fs.String("batch", "dynamic", "batch size: a number, or dynamic for a symbolic dimension N")
	opset := fs.Int64("opset", graphgen.DefaultOpset, fmt.Sprintf("ONNX opset (%d to %d)", graphgen.MinOpset, graphgen.MaxOpset))
	seed := fs.Uint64("seed", 0, "seed of the Xavier-uniform initialization")
	zeroGamma := fs.Bool("zero-gamma", false, "initialize gamma of the last BatchNorm of each residual block to 0")
	summary := fs.Bool("summary", false, "print parameters and MACs per stage to standard error")
	list := fs.Bool("list", false, "list the model names and exit")
	help := fs.BoolP("help", "h", false, "show this help")
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		return usageError{fmt.Errorf("%w (see graphgen --help)", err)}
	}
	if *help {
		fmt.Fprintf(stdout, "Usage: graphgen MODEL [flags] > model.onnx\n\nMODEL is resnet18, resnet34, resnet50, resnet101 or resnet152 with an\noptional suffix b, c or d (the Bag of Tricks tweaks); see --list.\n\nFlags:\n%s", fs.FlagUsages())
		return pflag.ErrHelp
	}
	if *list {
		for _, n := range models.Names() {
			fmt.Fprintf(stdout, "%-11s %s\n", n, models.Describe(n))
		}
		return nil
	}
	if fs.NArg() != 1 {
		return usageError{fmt.Errorf("expected one model name, got %d arguments (known: %s)", fs.NArg(), strings.Join(models.Names(), ", "))}
	}
	b := 0
	if *batch != "dynamic" {
		n, err := strconv.Atoi(*batch)
		if err != nil || n < 1 {
			return usageError{fmt.Errorf("--batch must be a positive number or dynamic, got %q", *batch)}
		}
		b = n
	}
	if *opset < graphgen.MinOpset || *opset > graphgen.MaxOpset {
		return usageError{fmt.Errorf("--opset %d is not supported (choose %d to %d)", *opset, graphgen.MinOpset, graphgen.MaxOpset)}
	}
	if *output == "" {
		if f, ok := stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			return usageError{errors.New("refusing to write a binary model to a terminal; redirect it (graphgen MODEL > model.onnx) or use -o FILE")}
		}
	}
	if _, _, err := models.ParseName(fs.Arg(0)); err != nil {
		return usageError{err}
	}
	m, err := models.Build(models.Options{
		Name: fs.Arg(0), Classes: *classes, ImageSize: *imageSize, Batch: b,
		Opset: *opset, Seed: *seed, ZeroGamma: *zeroGamma,
	})
	if err != nil {
		return usageError{err}
	}
	if *summary {
		if err := m.WriteSummary(stderr); err != nil {
			return err
		}
	}
	info := graphgen.ModelInfo{Doc: m.Graph.Doc, Metadata: m.Metadata()}
	if *output != "" {
		return m.Graph.WriteFile(*output, info)
	}
	data, err := m.Graph.Marshal(info)
	if err != nil {
		return err
	}
	if _, err := stdout.Write(data); err != nil {
		return fmt.Errorf("write standard output: %w", err)
	}
	return nil
}
