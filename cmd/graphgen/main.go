// Command graphgen writes ONNX graphs of the ResNet family and their
// training steps:
//
//	graphgen resnet50d > model.onnx
//	graphgen resnet18c --classes 10 --image-size 64 -o r18c.onnx --summary
//	graphgen train-step resnet50d --batch 32 --fp16 -o step.onnx
//	graphgen --list
//
// It is a thin CLI over the models, graphgen and training packages.
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
	var err error
	if len(args) > 0 && args[0] == "train-step" {
		err = trainStep(args[1:], stdout, stderr)
	} else {
		err = generate(args, stdout, stderr)
	}
	if err == nil || errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, "graphgen: "+strings.Join(strings.Fields(err.Error()), " "))
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// checkSizes checks the model options by the models package's limits (the
// one place they are kept), naming the flags, and the opset.
func checkSizes(classes, imageSize int, opset int64) error {
	if opset < graphgen.MinOpset || opset > graphgen.MaxOpset {
		return usageError{fmt.Errorf("--opset %d is not supported (choose %d to %d)", opset, graphgen.MinOpset, graphgen.MaxOpset)}
	}
	if err := (models.Options{Classes: classes, ImageSize: imageSize}).Check(); err != nil {
		r := strings.NewReplacer("classes", "--classes", "image size", "--image-size", "batch", "--batch")
		return usageError{errors.New(r.Replace(err.Error()))}
	}
	return nil
}

// refuseTerminal stops binary output from going to a terminal, whether by
// standard output or by -o naming one (/dev/tty).
func refuseTerminal(output string, stdout io.Writer) error {
	if output != "" && output != "-" {
		if st, err := os.Stat(output); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			if f, err := os.OpenFile(output, os.O_WRONLY, 0); err == nil {
				tty := term.IsTerminal(int(f.Fd()))
				f.Close()
				if tty {
					return usageError{fmt.Errorf("refusing to write a binary model to the terminal %s", output)}
				}
			}
		}
		return nil
	}
	if f, ok := stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return usageError{errors.New("refusing to write a binary model to a terminal; redirect it (graphgen ... > model.onnx) or use -o FILE")}
	}
	return nil
}

// writeGraph serializes to a file (atomically, see graphgen.WriteFile) or,
// for "" and "-", to standard output.
func writeGraph(g *graphgen.Graph, info graphgen.ModelInfo, output string, stdout io.Writer) error {
	if output != "" && output != "-" {
		return g.WriteFile(output, info)
	}
	data, err := g.Marshal(info)
	if err != nil {
		return err
	}
	if _, err := stdout.Write(data); err != nil {
		return fmt.Errorf("write standard output: %w", err)
	}
	return nil
}

func generate(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("graphgen", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	output := fs.StringP("output", "o", "", "write the model to this file (default or -: standard output)")
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
		fmt.Fprintf(stdout, "Usage: graphgen MODEL [flags] > model.onnx\n       graphgen train-step MODEL --batch N [flags] > step.onnx\n\nMODEL is resnet18, resnet34, resnet50, resnet101 or resnet152 with an\noptional suffix b, c or d (the Bag of Tricks tweaks); see --list.\n\nFlags:\n%s", fs.FlagUsages())
		return pflag.ErrHelp
	}
	if *list {
		if fs.NArg() > 0 {
			return usageError{fmt.Errorf("--list takes no model name, got %q", fs.Arg(0))}
		}
		for _, n := range models.Names() {
			fmt.Fprintf(stdout, "%-11s %s\n", n, models.Describe(n))
		}
		return nil
	}
	if fs.NArg() != 1 {
		return usageError{fmt.Errorf("expected one model name, got %d arguments (known: %s)", fs.NArg(), strings.Join(models.Names(), ", "))}
	}
	if _, _, err := models.ParseName(fs.Arg(0)); err != nil {
		return usageError{err}
	}
	b := 0
	if *batch != "dynamic" {
		n, err := strconv.Atoi(*batch)
		if err != nil || n < 1 || n > 1<<20 {
			return usageError{fmt.Errorf("--batch must be a positive number or dynamic, got %q", *batch)}
		}
		b = n
	}
	if err := checkSizes(*classes, *imageSize, *opset); err != nil {
		return err
	}
	if err := refuseTerminal(*output, stdout); err != nil {
		return err
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
	return writeGraph(m.Graph, graphgen.ModelInfo{Doc: m.Graph.Doc, Metadata: m.Metadata()}, *output, stdout)
}
