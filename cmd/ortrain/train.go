package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/ortrain/ortrain/distill"
	"github.com/ortrain/ortrain/runtime"
	"github.com/ortrain/ortrain/training"
)

// recipeFromArgs finds --recipe before the flags are defined, so that the
// recipe can set the defaults that explicit flags then override.
func recipeFromArgs(args []string) (string, error) {
	var found []string
	for i, a := range args {
		if a == "--" {
			break
		}
		if v, ok := strings.CutPrefix(a, "--recipe="); ok {
			found = append(found, v)
		} else if a == "--recipe" && i+1 < len(args) {
			found = append(found, args[i+1])
		}
	}
	if len(found) > 1 {
		return "", fmt.Errorf("--recipe given %d times", len(found))
	}
	if len(found) == 1 {
		return found[0], nil
	}
	return "", nil
}

// exitCodeInterrupted is the status of a run stopped by SIGINT or SIGTERM
// after its checkpoint was written (128 + SIGINT, as shells report it).
const exitCodeInterrupted = 130

type interruptedError struct{ out string }

func (e interruptedError) Error() string {
	return fmt.Sprintf("interrupted; checkpoint written, resume with: ortrain train --resume %s", e.out)
}

func cmdTrain(args []string, stdout, stderr io.Writer) error {
	const synopsis = "train --data DIR [--model resnet50d] [--recipe baseline|efficient|tricks] [flags]"
	cfg := training.DefaultConfig()
	r, err := recipeFromArgs(args)
	if err != nil {
		return usageError{err}
	}
	if r != "" {
		if err := cfg.ApplyRecipe(r); err != nil {
			return usageError{err}
		}
	}
	fs, help := flagSet("train")
	fs.StringVar(&cfg.Data, "data", "", "image folder with train/<class>/* and val/<class>/*")
	fs.StringVar(&cfg.Out, "out", cfg.Out, "run folder: config, metrics, plots, checkpoints, model.onnx")
	resume := fs.String("resume", "", "continue the run in this folder from its last checkpoint")
	overwrite := fs.Bool("overwrite", false, "start a new run in --out even if it holds one (its checkpoints are replaced)")
	fs.StringVar(&cfg.Recipe, "recipe", cfg.Recipe, "paper settings: baseline, efficient or tricks (flags given override them)")
	fs.StringVar(&cfg.Model, "model", cfg.Model, "network (see graphgen --list)")
	fs.IntVar(&cfg.ImageSize, "image-size", cfg.ImageSize, "training and evaluation crop size")
	fs.IntVar(&cfg.Epochs, "epochs", cfg.Epochs, "epochs")
	fs.IntVar(&cfg.BatchSize, "batch-size", cfg.BatchSize, "batch size")
	fs.Float64Var(&cfg.LR, "lr", cfg.LR, "peak learning rate (0: --lr-base x batch / 256)")
	fs.Float64Var(&cfg.LRBase, "lr-base", cfg.LRBase, "learning rate per 256 images (linear scaling rule)")
	fs.StringVar(&cfg.LRMode, "lr-mode", cfg.LRMode, "decay after warmup: step or cosine")
	fs.Float64Var(&cfg.WarmupEpochs, "warmup-epochs", cfg.WarmupEpochs, "linear warmup from 0, in epochs")
	fs.Float64SliceVar(&cfg.LRSteps, "lr-steps", cfg.LRSteps, "step mode: decay epochs (30,60,90) or fractions of the run (0.25,0.5,0.75)")
	fs.Float64Var(&cfg.LRFactor, "lr-factor", cfg.LRFactor, "step mode: decay factor")
	fs.Float64Var(&cfg.Momentum, "momentum", cfg.Momentum, "Nesterov momentum")
	fs.Float64Var(&cfg.WeightDecay, "wd", cfg.WeightDecay, "weight decay")
	fs.BoolVar(&cfg.NoBiasDecay, "no-bias-decay", cfg.NoBiasDecay, "no weight decay on biases and BatchNorm gamma/beta")
	fs.BoolVar(&cfg.ZeroGamma, "zero-gamma", cfg.ZeroGamma, "zero gamma of the last BatchNorm of each residual block")
	fs.Float64Var(&cfg.LabelSmoothing, "label-smoothing", cfg.LabelSmoothing, "label smoothing epsilon")
	fs.StringVar(&cfg.SmoothingRule, "smoothing-rule", cfg.SmoothingRule, "paper (eps/(K-1) off target) or uniform (eps/K, PyTorch's)")
	fs.Float64Var(&cfg.MixupAlpha, "mixup-alpha", cfg.MixupAlpha, "mixup Beta(alpha, alpha); 0 turns mixup off")
	fs.BoolVar(&cfg.FP16, "fp16", cfg.FP16, "mixed precision: float16 compute, float32 master weights, dynamic loss scaling")
	fs.BoolVar(&cfg.PlainConv, "plain-conv", cfg.PlainConv, "on the CPU, keep ONNX Runtime's plain convolutions: the portable step graph, without its blocked (NCHWc) 3x3 kernels (slower)")
	fs.StringVar(&cfg.Teacher, "teacher", cfg.Teacher, "distill from this ONNX classifier (frozen)")
	fs.Float64Var(&cfg.KDTemperature, "kd-temperature", cfg.KDTemperature, "distillation temperature T")
	fs.Float64Var(&cfg.KDHardWeight, "kd-hard-weight", cfg.KDHardWeight, "weight of the hard loss; the soft one gets 1 minus it")
	fs.BoolVar(&cfg.TeacherOverlap, "teacher-overlap", cfg.TeacherOverlap, "score the next batch with the teacher during the student's step")
	teacherDevice := fs.String("teacher-device", "", "execution provider of the teacher (default: --device)")
	teacherThreads := fs.Int("teacher-threads", 0, "intra-op threads of the teacher (0: one per core)")
	fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "decoding goroutines (0: one per core)")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of initialization, data order, augmentation and mixup")
	fs.Int64Var(&cfg.Opset, "opset", cfg.Opset, "ONNX opset of the graphs")
	fs.IntVar(&cfg.KeepLast, "keep", cfg.KeepLast, "epoch checkpoints kept besides last and best")
	fs.Float64Var(&cfg.BadLimit, "bad-limit", cfg.BadLimit, "fraction of unreadable images an epoch tolerates before stopping")
	rt := addRuntimeFlags(fs)
	if err := parse(fs, help, args, synopsis, stdout); err != nil {
		return err
	}
	if *resume != "" {
		// Where and how it runs may change; what it computes may not.
		allowed := map[string]bool{"resume": true, "device": true, "threads": true, "workers": true, "ort-lib": true, "opt-level": true,
			"allow-cpu-fallback": true, "teacher-device": true, "teacher-threads": true,
			"parallel": true, "inter-threads": true, "ort-config": true, "plain-conv": true}
		var changed []string
		fs.Visit(func(f *pflag.Flag) {
			if !allowed[f.Name] {
				changed = append(changed, "--"+f.Name)
			}
		})
		if len(changed) > 0 {
			return usageError{fmt.Errorf("a resumed run keeps its configuration; drop %s", strings.Join(changed, ", "))}
		}
		saved, err := training.LoadConfig(*resume)
		if err != nil {
			return err
		}
		workers, plain := cfg.Workers, cfg.PlainConv
		cfg = *saved
		if fs.Changed("workers") {
			cfg.Workers = workers
		}
		if fs.Changed("plain-conv") {
			cfg.PlainConv = plain
		}
		cfg.Out = *resume
	}
	if *resume == "" && cfg.Recipe != "" && !fs.Changed("warmup-epochs") && cfg.WarmupEpochs > float64(cfg.Epochs)*5/120 {
		// The paper warms up 5 of 120 epochs; a shorter run keeps the proportion.
		cfg.WarmupEpochs = float64(cfg.Epochs) * 5 / 120
		fmt.Fprintf(stderr, "note: warmup scaled to %.3g epochs (the paper's 5 of 120); give --warmup-epochs to choose\n", cfg.WarmupEpochs)
	}
	if *resume == "" {
		if cfg.Data != "" {
			abs, err := filepath.Abs(cfg.Data)
			if err != nil {
				return err
			}
			cfg.Data = abs // a resume from another directory finds the same data
		}
		if !*overwrite {
			if _, err := os.Stat(filepath.Join(cfg.Out, "config.json")); err == nil {
				return usageError{fmt.Errorf("%s already holds a run; continue it with --resume %s, or start over with --overwrite", cfg.Out, cfg.Out)}
			}
		}
	}
	cfg.Device, cfg.Threads = rt.device, rt.threads
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	opts, err := rt.options()
	if err != nil {
		return err
	}
	tr := &training.Trainer{Config: cfg, Log: stderr}
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		w, _, _ := term.GetSize(int(f.Fd()))
		tr.Prog = training.Progress{W: stderr, Terminal: true, Width: w}
	} else {
		tr.Prog = training.Progress{W: stderr, Every: 50}
	}
	var teacher *distill.Teacher
	if cfg.Teacher != "" {
		// Its own session: own provider and threads, frozen.
		topts := opts
		if *teacherDevice != "" {
			p, err := runtime.ParseProvider(*teacherDevice)
			if err != nil {
				return usageError{err}
			}
			topts.Provider = p
		}
		if *teacherThreads < 0 {
			return usageError{fmt.Errorf("--teacher-threads must not be negative")}
		}
		topts.IntraOpThreads = *teacherThreads
		// Checked by Setup before any step or file: classes, input rank and
		// size must fit, and one forward at the student's shape must run.
		tr.LoadTeacher = func(classes int) (training.Teacher, error) {
			var err error
			teacher, err = distill.Load(cfg.Teacher, distill.Expect{Classes: classes, Batch: cfg.BatchSize, ImageSize: cfg.ImageSize}, topts)
			return teacher, err
		}
	}
	err = tr.Setup(opts, *resume != "")
	if teacher != nil {
		defer teacher.Close()
	}
	if err != nil {
		return providerAdvice(err)
	}
	defer tr.Close()
	// The configuration is printed once everything has been checked, so that
	// a refused input is the only line a failed start prints.
	fmt.Fprintf(stderr, "ortrain train: %s on %s (ONNX Runtime %s)\n", cfg.Model, cfg.Data, rtVersion())
	cfg.Print(stderr)
	if tr.Convolutions != "" {
		fmt.Fprintf(stderr, "  %-16s %s\n", "(convolutions)", tr.Convolutions)
	}
	if teacher != nil && teacher.Note != "" {
		fmt.Fprintf(stderr, "  %-16s %s\n", "(teacher)", teacher.Note)
	}
	if *resume == "" {
		if err := training.SaveConfig(&cfg); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = tr.Run(ctx)
	if errors.Is(err, training.ErrInterrupted) {
		return interruptedError{cfg.Out}
	}
	return err
}
