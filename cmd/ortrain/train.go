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
	"github.com/ortrain/ortrain/parallel"
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

// runFlags are the flags of ortrain train that are no setting of the run's
// configuration, and say only where and how it runs: a resumed run may
// change them.
var runFlags = map[string]bool{"resume": true, "ort-lib": true, "opt-level": true, "allow-cpu-fallback": true,
	"parallel": true, "inter-threads": true, "ort-config": true, "teacher-device": true, "teacher-threads": true}

// flagOfSetting and settingOfFlag translate between config.json's names and
// the flags of ortrain train: the same words, but for two.
var flagOfSetting = map[string]string{"weight_decay": "wd", "keep_last": "keep"}

func flagName(setting string) string {
	if f, ok := flagOfSetting[setting]; ok {
		return f
	}
	return strings.ReplaceAll(setting, "_", "-")
}

func settingName(flag string) string {
	for s, f := range flagOfSetting {
		if f == flag {
			return s
		}
	}
	return strings.ReplaceAll(flag, "-", "_")
}

// flagError names the flag of a configuration setting in error.
func flagError(err error) error {
	var se *training.SettingError
	if !errors.As(err, &se) {
		return err
	}
	names := strings.Split(se.Setting, ", ")
	for i, n := range names {
		names[i] = "--" + flagName(n)
	}
	return fmt.Errorf("%s %s", strings.Join(names, ", "), se.Problem)
}

// resumedConfig is the saved configuration of the run in dir, with what
// the flags given may change (training.Resume); other flags are refused.
func resumedConfig(fs *pflag.FlagSet, dir string, given training.Config) (training.Config, error) {
	var settings, refused []string
	fs.Visit(func(f *pflag.Flag) {
		switch {
		case runFlags[f.Name]:
		case f.Name == "overwrite" || f.Name == "help":
			refused = append(refused, "--"+f.Name)
		default:
			settings = append(settings, settingName(f.Name))
		}
	})
	saved, err := training.LoadConfig(dir)
	if err != nil {
		return given, err
	}
	cfg, err := training.Resume(*saved, given, settings)
	var se *training.SettingError
	if errors.As(err, &se) {
		for _, n := range strings.Split(se.Setting, ", ") {
			refused = append(refused, "--"+flagName(n))
		}
	} else if err != nil {
		return given, err
	}
	if len(refused) > 0 {
		return given, usageError{fmt.Errorf("a resumed run keeps its configuration; drop %s", strings.Join(refused, ", "))}
	}
	cfg.Out = dir
	return cfg, nil
}

// exitCodeInterrupted is the status of a run stopped by SIGINT or SIGTERM
// after its checkpoint was written (128 + SIGINT, as shells report it).
const exitCodeInterrupted = 130

type interruptedError struct{ out string }

func (e interruptedError) Error() string {
	return fmt.Sprintf("interrupted; checkpoint written, resume with: ortrain train --resume %s", e.out)
}

func cmdTrain(args []string, stdout, stderr io.Writer) error {
	const synopsis = "train --data DIR [--model resnet50d] [--recipe baseline|efficient|tricks|finetune] [flags]"
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
	tf := addTrainFlags(fs, &cfg)
	rt := addRuntimeFlags(fs)
	if err := parse(fs, help, args, synopsis, stdout); err != nil {
		return err
	}
	comm, err := parallel.Init()
	if err != nil {
		return err
	}
	err = train(fs, tf, rt, cfg, comm, stderr)
	if err != nil && comm.Size() > 1 && !errors.As(err, &interruptedError{}) {
		// The other processes may wait in a collective: end the job.
		fmt.Fprintf(stderr, "ortrain train (rank %d of %d): %v\n", comm.Rank(), comm.Size(), err)
		comm.Abort(1)
	}
	if cerr := comm.Close(); err == nil {
		err = cerr
	}
	return err
}

// train runs ortrain train as one process of a job of comm.Size(); rank 0
// alone prints its progress and writes the run folder.
func train(fs *pflag.FlagSet, tf *trainFlags, rt *rtFlags, cfg training.Config, comm parallel.Comm, stderr io.Writer) error {
	cfg.Processes = comm.Size()
	log := stderr
	if comm.Rank() != 0 {
		log = io.Discard
	}
	cfg, err := runConfig(fs, tf, cfg, log, comm.Rank() == 0)
	if err != nil {
		return err
	}
	if cfg.Processes != comm.Size() {
		return usageError{fmt.Errorf("%s was trained on %d processes; resume it with mpirun -np %d", tf.resume, cfg.Processes, cfg.Processes)}
	}
	cfg.Device, cfg.Threads = rt.device, rt.threads // how this process runs
	if err := cfg.Validate(); err != nil {
		return usageError{flagError(err)}
	}
	opts, err := rt.options()
	if err != nil {
		return err
	}
	if tf.resume == "" && !fs.Changed("fp16") {
		if note := cfg.FitDevice(opts.Provider.CPU()); note != "" {
			fmt.Fprintf(log, "note: %s; give --fp16 to force it\n", note)
		}
	}
	if !opts.Provider.CPU() && comm.Size() > 1 && !strings.Contains(rt.device, ":") {
		opts.Provider.Device = parallel.LocalRank() // one GPU per process of a machine
	}
	tr := &training.Trainer{Config: cfg, Log: log, Prog: progressFor(log), Comm: comm}
	var teacher *distill.Teacher
	if cfg.Teacher != "" {
		if tr.LoadTeacher, err = teacherLoader(tf, cfg, opts, &teacher); err != nil {
			return err
		}
	}
	err = tr.Setup(opts, tf.resume != "")
	if teacher != nil {
		defer teacher.Close()
	}
	if err != nil {
		return providerAdvice(err)
	}
	defer tr.Close()
	// The configuration is printed once everything has been checked, so that
	// a refused input is the only line a failed start prints.
	fmt.Fprintf(log, "ortrain train: %s on %s (ONNX Runtime %s)\n", cfg.Model, cfg.Data, rtVersion())
	cfg.Print(log)
	if tr.Convolutions != "" {
		fmt.Fprintf(log, "  %-16s %s\n", "(convolutions)", tr.Convolutions)
	}
	if teacher != nil && teacher.Note != "" {
		fmt.Fprintf(log, "  %-16s %s\n", "(teacher)", teacher.Note)
	}
	if tf.resume == "" && comm.Rank() == 0 {
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

// trainFlags are ortrain train's flags that are no configuration setting.
type trainFlags struct {
	resume, teacherDevice string
	overwrite             bool
	teacherThreads        int
}

// addTrainFlags defines ortrain train's flags; those of the configuration
// write into cfg, whose values (a recipe's) are their defaults.
func addTrainFlags(fs *pflag.FlagSet, cfg *training.Config) *trainFlags {
	tf := &trainFlags{}
	fs.StringVar(&cfg.Data, "data", "", "image folder with train/<class>/* and val/<class>/*")
	fs.StringVar(&cfg.Out, "out", cfg.Out, "run folder: config, metrics, plots, checkpoints, model.onnx")
	fs.StringVar(&tf.resume, "resume", "", "continue the run in this folder from its last checkpoint")
	fs.BoolVar(&tf.overwrite, "overwrite", false, "start a new run in --out even if it holds one (its checkpoints are replaced)")
	fs.StringVar(&cfg.Recipe, "recipe", cfg.Recipe, "settings: the paper's baseline, efficient or tricks, or finetune (from --init weights); flags given override them")
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
	fs.BoolVar(&cfg.PlainConv, "plain-conv", cfg.PlainConv, "on the CPU, keep ONNX Runtime's plain convolutions: the portable step graph, without its blocked (NCHWc) 3x3 kernels and batch-wide products on small planes (slower)")
	fs.StringVar(&cfg.Init, "init", cfg.Init, "start from these weights (safetensors, PyTorch .pth, ONNX, or an ortrain checkpoint) instead of a random initialization; a classifier of another class count is initialized anew")
	fs.BoolVar(&cfg.FreezeBackbone, "freeze-backbone", cfg.FreezeBackbone, "train the classifier (fc) alone: every other weight and statistic held fixed, BatchNorm in inference mode")
	fs.BoolVar(&cfg.FreezeBN, "freeze-bn", cfg.FreezeBN, "BatchNorm normalizes by its running statistics, which stay fixed (gamma and beta still train)")
	fs.StringVar(&cfg.Teacher, "teacher", cfg.Teacher, "distill from this ONNX classifier (frozen)")
	fs.Float64Var(&cfg.KDTemperature, "kd-temperature", cfg.KDTemperature, "distillation temperature T")
	fs.Float64Var(&cfg.KDHardWeight, "kd-hard-weight", cfg.KDHardWeight, "weight of the hard loss; the soft one gets 1 minus it")
	fs.BoolVar(&cfg.TeacherOverlap, "teacher-overlap", cfg.TeacherOverlap, "score the next batch with the teacher during the student's step")
	fs.StringVar(&tf.teacherDevice, "teacher-device", "", "execution provider of the teacher (default: --device)")
	fs.IntVar(&tf.teacherThreads, "teacher-threads", 0, "intra-op threads of the teacher (0: one per core)")
	fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "decoding goroutines (0: one per core)")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of initialization, data order, augmentation and mixup")
	fs.Int64Var(&cfg.Opset, "opset", cfg.Opset, "ONNX opset of the graphs")
	fs.IntVar(&cfg.KeepLast, "keep", cfg.KeepLast, "epoch checkpoints kept besides last and best")
	fs.Float64Var(&cfg.BadLimit, "bad-limit", cfg.BadLimit, "fraction of unreadable images an epoch tolerates before stopping")
	fs.IntVar(&cfg.AccumSteps, "accum-steps", cfg.AccumSteps, "micro-batches of --batch-size per step on each process (gradient accumulation); the global batch is processes x this x --batch-size")
	fs.IntVar(&cfg.CheckpointEvery, "checkpoint-every", cfg.CheckpointEvery, "also write last.ckpt every so many steps within an epoch (0: at epoch ends)")
	return tf
}

// runConfig is the configuration of the run: the resumed one's, or a new
// one's with the recipe's warmup fitted to the run, its data path made
// absolute (a resume from another directory finds the same data) and its
// run folder checked (by the process that will write it, owner).
func runConfig(fs *pflag.FlagSet, tf *trainFlags, cfg training.Config, stderr io.Writer, owner bool) (training.Config, error) {
	if tf.resume != "" {
		return resumedConfig(fs, tf.resume, cfg)
	}
	if !fs.Changed("warmup-epochs") {
		if note := cfg.FitWarmup(); note != "" {
			fmt.Fprintf(stderr, "note: %s; give --warmup-epochs to choose\n", note)
		}
	}
	for _, p := range []*string{&cfg.Data, &cfg.Init} {
		if *p != "" {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return cfg, err
			}
			*p = abs
		}
	}
	if owner && !tf.overwrite {
		if _, err := os.Stat(filepath.Join(cfg.Out, "config.json")); err == nil {
			return cfg, usageError{fmt.Errorf("%s already holds a run; continue it with --resume %s, or start over with --overwrite", cfg.Out, cfg.Out)}
		}
	}
	return cfg, nil
}

// progressFor is a progress bar redrawn in place on a terminal, a line
// every 50 batches otherwise.
func progressFor(w io.Writer) training.Progress {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		cols, _, _ := term.GetSize(int(f.Fd()))
		return training.Progress{W: w, Terminal: true, Width: cols}
	}
	return training.Progress{W: w, Every: 50}
}

// teacherLoader loads the teacher in its own session (own provider and
// threads, frozen) when Setup asks, before any step or file, so that one
// that does not fit the student fails the start; *loaded is the teacher,
// for the caller to close.
func teacherLoader(tf *trainFlags, cfg training.Config, opts runtime.Options, loaded **distill.Teacher) (func(int) (training.Teacher, error), error) {
	if tf.teacherDevice != "" {
		p, err := runtime.ParseProvider(tf.teacherDevice)
		if err != nil {
			return nil, usageError{err}
		}
		opts.Provider = p
	}
	if tf.teacherThreads < 0 {
		return nil, usageError{fmt.Errorf("--teacher-threads must not be negative")}
	}
	opts.IntraOpThreads = tf.teacherThreads
	return func(classes int) (training.Teacher, error) {
		t, err := distill.Load(cfg.Teacher, distill.Expect{Classes: classes, Batch: cfg.BatchSize, ImageSize: cfg.ImageSize}, opts)
		*loaded = t
		return t, err
	}, nil
}
