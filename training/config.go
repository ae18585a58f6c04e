package training

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ortrain/ortrain/internal/atomicfile"
	"github.com/ortrain/ortrain/models"
)

// Config is everything a run is made of. It is printed at the start, saved
// as config.json in the run folder and inside every checkpoint.
type Config struct {
	Data      string `json:"data"` // folder with train/ and val/
	Out       string `json:"out"`  // run folder
	Model     string `json:"model"`
	ImageSize int    `json:"image_size"`
	Epochs    int    `json:"epochs"`
	BatchSize int    `json:"batch_size"`
	// LR is the peak learning rate; 0 means LRBase * BatchSize / 256 (the
	// linear scaling rule).
	LR             float64   `json:"lr"`
	LRBase         float64   `json:"lr_base"`
	LRMode         string    `json:"lr_mode"` // step or cosine
	WarmupEpochs   float64   `json:"warmup_epochs"`
	LRSteps        []float64 `json:"lr_steps"` // step mode: epochs (30,60,90), or fractions of the run (0.25,0.5,0.75, the default)
	LRFactor       float64   `json:"lr_factor"`
	Momentum       float64   `json:"momentum"`
	WeightDecay    float64   `json:"weight_decay"`
	NoBiasDecay    bool      `json:"no_bias_decay"`
	ZeroGamma      bool      `json:"zero_gamma"`
	LabelSmoothing float64   `json:"label_smoothing"`
	SmoothingRule  string    `json:"smoothing_rule"` // paper or uniform
	MixupAlpha     float64   `json:"mixup_alpha"`
	FP16           bool      `json:"fp16"`
	Teacher        string    `json:"teacher,omitempty"`
	// Init is a weights file the run starts from instead of the random
	// initialization (ReadWeights' formats).
	Init string `json:"init,omitempty"`
	// FreezeBackbone trains the classifier alone: every other tensor is
	// held fixed, BatchNorm in inference mode (StepOptions.Frozen).
	// FreezeBN holds every BatchNorm's running statistics fixed and
	// normalizes by them; gamma and beta still train.
	FreezeBackbone bool    `json:"freeze_backbone,omitempty"`
	FreezeBN       bool    `json:"freeze_bn,omitempty"`
	KDTemperature  float64 `json:"kd_temperature"`
	KDHardWeight   float64 `json:"kd_hard_weight"`
	// BadLimit is the fraction of unreadable images an epoch tolerates.
	BadLimit float64 `json:"bad_limit"`
	// TeacherOverlap runs the teacher on the next batch during the
	// student's step (see docs/results/bench/history.md for whether that pays).
	TeacherOverlap bool   `json:"teacher_overlap"`
	Device         string `json:"device"`
	// PlainConv keeps ONNX Runtime's plain convolutions on the CPU: the
	// portable step graph, without the blocked 3x3 kernels
	// (StepOptions.NchwcBlock) and batch-wide products (BatchGemm).
	PlainConv bool   `json:"plain_conv,omitempty"`
	Threads   int    `json:"threads"`
	Workers   int    `json:"workers"`
	Seed      uint64 `json:"seed"`
	Opset     int64  `json:"opset"`
	KeepLast  int    `json:"keep_last"` // epoch checkpoints kept besides last and best
	Recipe    string `json:"recipe"`
	// AccumSteps micro-batches of BatchSize make a step on each process
	// (gradient accumulation); Processes is the data-parallel job's size
	// (set from MPI, not a flag). The global batch is their product.
	AccumSteps int `json:"accum_steps"`
	Processes  int `json:"processes"`
	// CheckpointEvery writes last.ckpt every so many steps within an
	// epoch too (0: at epoch ends only).
	CheckpointEvery int `json:"checkpoint_every"`
}

// GlobalBatch is the images of one optimizer step: processes x
// accumulation steps x batch size.
func (c *Config) GlobalBatch() int { return max(c.Processes, 1) * max(c.AccumSteps, 1) * c.BatchSize }

// DefaultConfig is a plain run: the paper's baseline optimizer settings.
func DefaultConfig() Config {
	return Config{Model: "resnet50d", ImageSize: 224, Epochs: 120, BatchSize: 32, LRBase: 0.1, LRMode: "step",
		LRSteps: []float64{0.25, 0.5, 0.75}, LRFactor: 0.1, Momentum: 0.9, WeightDecay: 1e-4,
		SmoothingRule: "paper", KDTemperature: 20, KDHardWeight: 0.5, Device: "cpu", Opset: 17, KeepLast: 3, BadLimit: 0.01,
		Out: "runs/train", AccumSteps: 1, Processes: 1}
}

// Recipes name the paper's settings. baseline: step decay at 30/60/90 of
// 120 epochs, no warmup. efficient (section 3): linear scaling, 5 warmup
// epochs, zero-gamma, no-bias-decay, FP16. tricks (section 5, on top of
// efficient): cosine decay, label smoothing 0.1, mixup 0.2, and
// distillation at T=20 when a teacher is given. finetune (not the
// paper's): from pretrained weights (Init), 15 epochs of cosine decay
// from lr 0.1 per 256 images without warmup, label smoothing 0.1,
// no-bias-decay, no mixup. The new classifier needs full-size steps: a
// tenth of them left it near chance in scripts/transfer.sh's few-shot
// runs (docs/results.md); no warmup, as the pretrained features are in
// a good region already; few epochs, as the data are few.
var Recipes = []string{"baseline", "efficient", "tricks", "finetune"}

// ApplyRecipe sets a recipe's fields; the CLI then applies the flags a user
// gave explicitly on top.
func (c *Config) ApplyRecipe(name string) error {
	base := DefaultConfig()
	keep := *c
	*c = base
	c.Data, c.Out, c.Model, c.ImageSize, c.Epochs, c.BatchSize = keep.Data, keep.Out, keep.Model, keep.ImageSize, keep.Epochs, keep.BatchSize
	c.Device, c.Threads, c.Workers, c.Seed, c.Teacher, c.Opset, c.KeepLast, c.BadLimit = keep.Device, keep.Threads, keep.Workers, keep.Seed, keep.Teacher, keep.Opset, keep.KeepLast, keep.BadLimit
	c.PlainConv, c.AccumSteps, c.Processes, c.CheckpointEvery, c.Init = keep.PlainConv, keep.AccumSteps, keep.Processes, keep.CheckpointEvery, keep.Init
	c.FreezeBackbone, c.FreezeBN = keep.FreezeBackbone, keep.FreezeBN
	c.Recipe = name
	switch name {
	case "baseline":
	case "efficient", "tricks":
		c.WarmupEpochs, c.ZeroGamma, c.NoBiasDecay, c.FP16 = 5, true, true, true
		if name == "tricks" {
			c.LRMode, c.LabelSmoothing, c.MixupAlpha = "cosine", 0.1, 0.2
		}
	case "finetune":
		c.Epochs, c.LRBase, c.LRMode, c.LabelSmoothing, c.NoBiasDecay, c.FP16 = 15, 0.1, "cosine", 0.1, true, true
	default:
		return fmt.Errorf("unknown recipe %q (%s)", name, strings.Join(Recipes, ", "))
	}
	return nil
}

// PeakLR is the learning rate the schedule peaks at: LR, or the linear
// scaling rule on the global batch.
func (c *Config) PeakLR() float64 {
	if c.LR > 0 {
		return c.LR
	}
	return ScaleLR(c.LRBase, c.GlobalBatch())
}

// SettingError says a setting is out of its range or conflicts with
// another; Setting is its name in config.json (a CLI maps it to its flag).
type SettingError struct {
	Setting string
	Problem string // "must be positive", ...
}

func (e *SettingError) Error() string { return e.Setting + " " + e.Problem }

// Validate checks ranges and combinations; the error is a *SettingError
// naming the first setting that is wrong.
func (c *Config) Validate() error {
	if _, _, err := models.ParseName(c.Model); err != nil {
		return &SettingError{"model", strings.TrimPrefix(err.Error(), "unknown model ")}
	}
	bad := func(cond bool, setting, format string, a ...any) error {
		if cond {
			return &SettingError{setting, fmt.Sprintf(format, a...)}
		}
		return nil
	}
	// NaN passes every range check below (each comparison is false).
	for _, f := range []struct {
		setting string
		v       float64
	}{{"lr", c.LR}, {"lr_base", c.LRBase}, {"warmup_epochs", c.WarmupEpochs}, {"lr_factor", c.LRFactor},
		{"momentum", c.Momentum}, {"weight_decay", c.WeightDecay}, {"label_smoothing", c.LabelSmoothing}, {"mixup_alpha", c.MixupAlpha},
		{"kd_temperature", c.KDTemperature}, {"kd_hard_weight", c.KDHardWeight}, {"bad_limit", c.BadLimit}} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			return &SettingError{f.setting, fmt.Sprintf("must be a finite number, got %g", f.v)}
		}
	}
	for _, v := range c.LRSteps {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return &SettingError{"lr_steps", fmt.Sprintf("must be finite numbers, got %v", c.LRSteps)}
		}
	}
	if err := (models.Options{Name: c.Model, Classes: 1, ImageSize: c.ImageSize}).Check(); err != nil {
		return &SettingError{"image_size", strings.TrimPrefix(err.Error(), "image size ")}
	}
	for _, err := range []error{
		bad(c.Data == "", "data", "is required"),
		bad(c.Out == "", "out", "is required"),
		bad(c.Epochs < 1, "epochs", "must be at least 1, got %d", c.Epochs),
		bad(c.BatchSize < 2 || c.BatchSize > models.MaxBatch, "batch_size", "must be between 2 and %d, got %d", models.MaxBatch, c.BatchSize),
		bad(c.LR < 0 || c.LRBase <= 0 && c.LR == 0, "lr", "must be positive"),
		bad(c.LRMode != "step" && c.LRMode != "cosine", "lr_mode", "must be step or cosine, got %q", c.LRMode),
		bad(c.WarmupEpochs < 0 || c.WarmupEpochs > float64(c.Epochs), "warmup_epochs", "must be between 0 and the epochs (%d)", c.Epochs),
		bad(c.LRFactor <= 0 || c.LRFactor > 1, "lr_factor", "must be in (0, 1]"),
		bad(c.Momentum < 0 || c.Momentum >= 1, "momentum", "must be in [0, 1)"),
		bad(c.WeightDecay < 0, "weight_decay", "must not be negative"),
		bad(c.LabelSmoothing < 0 || c.LabelSmoothing >= 1, "label_smoothing", "must be in [0, 1)"),
		bad(c.MixupAlpha < 0, "mixup_alpha", "must not be negative"),
		bad(c.Teacher != "" && c.KDTemperature <= 0, "kd_temperature", "must be positive"),
		bad(c.Recipe == "finetune" && c.Init == "", "init", "is required by the finetune recipe: the weights to start from"),
		bad(c.KDHardWeight < 0 || c.KDHardWeight > 1, "kd_hard_weight", "must be in [0, 1]"),
		bad(c.Threads < 0, "threads", "must not be negative"),
		bad(c.Workers < 0, "workers", "must not be negative"),
		bad(c.KeepLast < 0, "keep_last", "must not be negative"),
		bad(c.AccumSteps < 1 || c.AccumSteps > 1<<16, "accum_steps", "must be between 1 and 65536, got %d", c.AccumSteps),
		bad(c.Processes < 1, "processes", "must be at least 1, got %d", c.Processes),
		bad(c.CheckpointEvery < 0, "checkpoint_every", "must not be negative"),
		bad(c.BadLimit < 0 || c.BadLimit > 1, "bad_limit", "must be a fraction in [0, 1]"),
	} {
		if err != nil {
			return err
		}
	}
	if _, err := ParseSmoothing(c.SmoothingRule); err != nil {
		return &SettingError{"smoothing_rule", err.Error()}
	}
	return c.checkLRSteps()
}

// checkLRSteps: decay points are all epochs (whole, at most the run's) or
// all fractions of the run.
func (c *Config) checkLRSteps() error {
	fractions, epochs := 0, 0
	for _, s := range c.LRSteps {
		switch {
		case s > 0 && s < 1:
			fractions++
		case s >= 1 && s == math.Trunc(s) && s <= float64(c.Epochs):
			epochs++
		default:
			return &SettingError{"lr_steps", fmt.Sprintf("are epochs (whole, at most the run's %d) or fractions of the run in (0, 1), got %g", c.Epochs, s)}
		}
	}
	if fractions > 0 && epochs > 0 {
		return &SettingError{"lr_steps", fmt.Sprintf("mixes epochs and fractions: %v", c.LRSteps)}
	}
	return nil
}

// resumable are the settings a resumed run may change: where and how it
// runs, not what it computes.
var resumable = map[string]bool{"device": true, "threads": true, "workers": true, "plain_conv": true, "checkpoint_every": true}

// Resume is the configuration a resumed run continues with: saved, with
// the settings named in set (config.json names) taken from given. Setting
// anything but where and how it runs is an error naming the settings.
func Resume(saved, given Config, set []string) (Config, error) {
	var refused []string
	for _, name := range set {
		if !resumable[name] {
			refused = append(refused, name)
		}
	}
	if len(refused) > 0 {
		return saved, &SettingError{strings.Join(refused, ", "), "cannot change in a resumed run: it keeps its configuration"}
	}
	c := saved
	for _, name := range set {
		switch name {
		case "device":
			c.Device = given.Device
		case "threads":
			c.Threads = given.Threads
		case "workers":
			c.Workers = given.Workers
		case "plain_conv":
			c.PlainConv = given.PlainConv
		case "checkpoint_every":
			c.CheckpointEvery = given.CheckpointEvery
		}
	}
	return c, nil
}

// FitDevice turns a recipe's mixed precision off where it does not pay:
// on ONNX Runtime's CPU provider the float16 step runs its convolutions
// through float32 and is slower than the float32 step, without the blocked
// kernels (docs/benchmarks.md), so the recipes' FP16, the paper's GPU
// setting, applies on GPU providers only. It says so; "" when nothing
// changed. Call it for a new run whose precision the user did not set.
func (c *Config) FitDevice(cpu bool) string {
	if c.Recipe == "" || c.Recipe == "baseline" || !c.FP16 || !cpu {
		return ""
	}
	c.FP16 = false
	return "the recipe's FP16 is for GPUs: on the CPU the float32 step is the faster"
}

// FitWarmup scales a recipe's warmup to a run shorter than the paper's, in
// the paper's proportion (5 of 120 epochs), and says so; "" when nothing
// changed. Call it for a new run whose warmup the user did not set.
func (c *Config) FitWarmup() string {
	if c.Recipe == "" || c.WarmupEpochs <= float64(c.Epochs)*5/120 {
		return ""
	}
	c.WarmupEpochs = float64(c.Epochs) * 5 / 120
	return fmt.Sprintf("warmup scaled to %.3g epochs (the paper's 5 of 120)", c.WarmupEpochs)
}

// Print writes the resolved configuration, one setting a line.
func (c *Config) Print(w interface{ Write([]byte) (int, error) }) {
	b, _ := json.Marshal(c)
	var m map[string]any
	json.Unmarshal(b, &m)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %-16s %v\n", k, m[k])
	}
	fmt.Fprintf(w, "  %-16s %g\n", "(peak lr)", c.PeakLR())
}

// Schedule is the run's learning-rate schedule for epochs of the given
// number of steps: linear warmup over WarmupEpochs, then cosine decay or
// step decay at LRSteps (epochs, or fractions of the run).
func (c *Config) Schedule(steps int) (Schedule, error) {
	s := Schedule{Base: c.PeakLR(), Mode: c.LRMode, Warmup: int(math.Round(c.WarmupEpochs * float64(steps))),
		Total: steps * c.Epochs, Factor: c.LRFactor}
	seen := map[int]bool{}
	for _, f := range c.LRSteps {
		e := f // epochs, or a fraction of the run
		if f < 1 {
			e = math.Round(f * float64(c.Epochs))
		}
		// A short run can round two decay points onto one epoch: decay once.
		if m := int(e) * steps; !seen[m] && m > 0 && m < s.Total {
			seen[m] = true
			s.Milestones = append(s.Milestones, m)
		}
	}
	return s, s.Validate()
}

// SaveConfig writes config.json into the run folder.
func SaveConfig(c *Config) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(c.Out, "config.json"), append(b, '\n'))
}

// LoadConfig reads a run folder's config.json.
func LoadConfig(dir string) (*Config, error) {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("resume %s: %w", dir, err)
	}
	c := &Config{}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("resume %s: config.json: %w", dir, err)
	}
	c.AccumSteps, c.Processes = max(c.AccumSteps, 1), max(c.Processes, 1) // runs from before data parallelism
	return c, nil
}

func jsonRaw(v any) ([]byte, error) { return json.Marshal(v) }
