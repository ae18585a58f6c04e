// Command ortrain is the project's trainer and model tool. Sub-commands:
//
//	ortrain train --data DIR --recipe tricks   train, evaluate, checkpoint, export
//	ortrain info  --model m.onnx               inputs, outputs and metadata
//	ortrain import W.pth --model resnet50b -o m.onnx   pretrained weights as a model
//	ortrain bench --model m.onnx --batch 16    inference throughput in ONNX Runtime
//	ortrain bench-step --model resnet50        train-step throughput in ONNX Runtime
//	ortrain compare -o curves.png RUN...        accuracy and curves of several runs
//
// It is a thin CLI: the work is done by the runtime, models and training
// packages.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	"github.com/ortrain/ortrain/runtime"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// usageError marks mistakes in the command line: exit code 2.
type usageError struct{ error }

type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

func commands() map[string]command {
	return map[string]command{
		"info":       {"show a model's inputs, outputs and metadata", cmdInfo},
		"train":      {"train a model on an image folder", cmdTrain},
		"prepare":    {"write a dataset (fashion-mnist) as an image folder", cmdPrepare},
		"eval":       {"top-1/top-5 of any ONNX classifier on an image folder", cmdEval},
		"export":     {"write a checkpoint as an inference model.onnx, or its weights as safetensors or .pth", cmdExport},
		"import":     {"write torchvision, timm or other weights as an inference model.onnx", cmdImport},
		"predict":    {"top classes of images", cmdPredict},
		"bench":      {"measure inference throughput in ONNX Runtime", cmdBench},
		"bench-step": {"measure train-step throughput in ONNX Runtime", cmdBenchStep},
		"bench-data": {"measure the data pipeline's throughput", cmdBenchData},
		"compare":    {"final accuracy and curves of several runs side by side", cmdCompare},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: ortrain COMMAND [flags]\n\nCommands:")
	cmds := commands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-11s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun ortrain COMMAND --help for its flags.")
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return 0
	}
	cmd, ok := commands()[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "ortrain: unknown command %q (run ortrain --help)\n", args[0])
		return 2
	}
	err := cmd.run(args[1:], stdout, stderr)
	if err == nil || errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, "ortrain "+args[0]+": "+strings.Join(strings.Fields(err.Error()), " "))
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	var ie interruptedError
	if errors.As(err, &ie) {
		return exitCodeInterrupted
	}
	return 1
}

// flagSet makes a flag set that reports errors instead of printing them.
func flagSet(name string) (*pflag.FlagSet, *bool) {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	help := fs.BoolP("help", "h", false, "show this help")
	fs.SortFlags = false
	return fs, help
}

// parse parses flags, printing help on --help.
func parse(fs *pflag.FlagSet, help *bool, args []string, synopsis string, stdout io.Writer) error {
	if err := fs.Parse(args); err != nil {
		return usageError{fmt.Errorf("%w (see ortrain %s --help)", err, fs.Name())}
	}
	if *help {
		fmt.Fprintf(stdout, "Usage: ortrain %s\n\nFlags:\n%s", synopsis, fs.FlagUsages())
		return pflag.ErrHelp
	}
	return nil
}

// rtFlags are the ONNX Runtime settings every command that runs a model takes.
type rtFlags struct {
	lib, device, optLevel string
	threads, interThreads int
	fallback, parallel    bool
	config                []string
}

func addRuntimeFlags(fs *pflag.FlagSet) *rtFlags {
	f := &rtFlags{}
	fs.StringVar(&f.lib, "ort-lib", "", "path of libonnxruntime.so.1 (default: $"+runtime.LibraryEnv+", then where scripts/setup.sh installs it)")
	fs.StringVar(&f.device, "device", "cpu", "execution provider: cpu, cuda[:N] or tensorrt[:N]")
	fs.IntVar(&f.threads, "threads", 0, "intra-op threads (0: one per core)")
	fs.StringVar(&f.optLevel, "opt-level", "all", "graph optimization level: all, extended, basic or disabled")
	fs.BoolVar(&f.fallback, "allow-cpu-fallback", false, "run on the CPU when the chosen provider is unavailable")
	fs.BoolVar(&f.parallel, "parallel", false, "ONNX Runtime's parallel execution mode: independent nodes at the same time (slower for ResNet training on a CPU)")
	fs.IntVar(&f.interThreads, "inter-threads", 0, "threads running nodes at the same time, with --parallel (0: ONNX Runtime chooses)")
	fs.StringArrayVar(&f.config, "ort-config", nil, "ONNX Runtime session config entry KEY=VALUE (repeatable; ONNX Runtime does not check keys), e.g. session.set_denormal_as_zero=1")
	return f
}

// options checks the flags, initializes ONNX Runtime and turns the flags
// into session options.
func (f *rtFlags) options() (runtime.Options, error) {
	p, err := runtime.ParseProvider(f.device)
	if err != nil {
		return runtime.Options{}, usageError{err}
	}
	if f.threads < 0 {
		return runtime.Options{}, usageError{fmt.Errorf("--threads must be 0 (automatic) or positive, got %d", f.threads)}
	}
	if f.interThreads < 0 {
		return runtime.Options{}, usageError{fmt.Errorf("--inter-threads must be 0 (automatic) or positive, got %d", f.interThreads)}
	}
	if f.interThreads > 0 && !f.parallel {
		return runtime.Options{}, usageError{fmt.Errorf("--inter-threads needs --parallel (nodes run one at a time otherwise)")}
	}
	if err := runtime.CheckOptLevel(f.optLevel); err != nil {
		return runtime.Options{}, usageError{err}
	}
	var config [][2]string
	for _, e := range f.config {
		k, v, ok := strings.Cut(e, "=")
		if !ok || k == "" {
			return runtime.Options{}, usageError{fmt.Errorf("--ort-config wants KEY=VALUE, got %q", e)}
		}
		config = append(config, [2]string{k, v})
	}
	if err := runtime.Init(f.lib); err != nil {
		return runtime.Options{}, fmt.Errorf("%w (or --ort-lib PATH)", err)
	}
	return runtime.Options{IntraOpThreads: f.threads, InterOpThreads: f.interThreads, Parallel: f.parallel, Config: config,
		OptLevel: f.optLevel, Provider: p, AllowCPUFallback: f.fallback}, nil
}

// open loads the model named by --model with the runtime flags.
func (f *rtFlags) open(model string, stderr io.Writer) (*runtime.Session, error) {
	if model == "" {
		return nil, usageError{fmt.Errorf("--model is required")}
	}
	opts, err := f.options()
	if err != nil {
		return nil, err
	}
	sess, err := runtime.NewSessionFromFile(model, nil, nil, opts)
	if err != nil {
		return nil, providerAdvice(err)
	}
	warnFallback(sess, stderr)
	return sess, nil
}

func rtVersion() string { return runtime.Version() }

// providerAdvice adds what to do about an unavailable execution provider.
func providerAdvice(err error) error {
	if errors.Is(err, runtime.ErrProviderUnavailable) {
		return fmt.Errorf("%w; use --device cpu, or --allow-cpu-fallback", err)
	}
	return err
}

// warnFallback tells the user when a session runs on the CPU instead of the
// provider asked for (only with --allow-cpu-fallback).
func warnFallback(s *runtime.Session, stderr io.Writer) {
	if s.Fallback != "" {
		fmt.Fprintf(stderr, "warning: %s; running on cpu instead (--allow-cpu-fallback)\n", s.Fallback)
	}
}
