//go:build cgo

package runtime

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	ort "github.com/yalue/onnxruntime_go"
)

// Provider is an execution provider chosen by name: cpu, cuda[:N] or
// tensorrt[:N].
type Provider struct {
	Kind   string // "cpu", "cuda" or "tensorrt"
	Device int
}

// CPU says whether p is the CPU provider (the zero Provider is).
func (p Provider) CPU() bool { return p.Kind == "cpu" || p.Kind == "" }

func (p Provider) String() string {
	if p.CPU() {
		return "cpu"
	}
	return p.Kind + ":" + strconv.Itoa(p.Device)
}

// ParseProvider reads cpu, cuda, cuda:1, tensorrt:0 and the like.
func ParseProvider(s string) (Provider, error) {
	kind, dev, hasDev := strings.Cut(strings.ToLower(strings.TrimSpace(s)), ":")
	p := Provider{Kind: kind}
	switch kind {
	case "cpu":
		if hasDev {
			return Provider{}, fmt.Errorf("device %q: cpu takes no device number", s)
		}
		return p, nil
	case "cuda", "tensorrt":
		if hasDev {
			n, err := strconv.Atoi(dev)
			if err != nil || n < 0 {
				return Provider{}, fmt.Errorf("device %q: bad device number %q", s, dev)
			}
			p.Device = n
		}
		return p, nil
	}
	return Provider{}, fmt.Errorf("unknown device %q (use cpu, cuda[:N] or tensorrt[:N])", s)
}

// Options configure a session.
type Options struct {
	// IntraOpThreads is the thread count inside an operator (0: ONNX Runtime
	// chooses, one per physical core).
	IntraOpThreads int
	// InterOpThreads is the thread count across operators (0: default).
	InterOpThreads int
	// OptLevel is the graph optimization level: "all" (default),
	// "extended", "basic" or "disabled".
	OptLevel string
	// Provider is the execution provider (default cpu).
	Provider Provider
	// AllowCPUFallback lets a session whose provider is unavailable run on
	// the CPU instead of failing.
	AllowCPUFallback bool
	// ProfilePrefix turns on ONNX Runtime's profiler, writing a JSON trace
	// whose name starts with it.
	ProfilePrefix string
	// DisableMemPattern turns off memory-pattern planning (needed when
	// input shapes change between runs on some providers).
	DisableMemPattern bool
	// DisableCPUArena makes ONNX Runtime allocate CPU memory directly
	// instead of from its arena.
	DisableCPUArena bool
	// Parallel selects ONNX Runtime's parallel execution mode, which runs
	// independent nodes at the same time on InterOpThreads threads (the
	// default is one node at a time). On the 2-core CPU it about doubles
	// the time of a ResNet-50 train step (docs/results/bench/history.md); it is here for
	// machines and graphs where it pays.
	Parallel bool
	// Config are ONNX Runtime session configuration entries
	// (AddSessionConfigEntry), in order, each as {key, value}.
	Config [][2]string
}

// IOInfo describes one model input or output.
type IOInfo struct {
	Name  string
	DType DType
	Shape []int64 // -1 for a dynamic dimension
}

func (i IOInfo) String() string {
	return fmt.Sprintf("%s %v%v", i.Name, i.DType, i.Shape)
}

// Session is a model loaded into ONNX Runtime with fixed input and output
// name lists.
type Session struct {
	sess     *ort.DynamicAdvancedSession
	Inputs   []IOInfo
	Outputs  []IOInfo
	Provider Provider // the provider actually in use
	// Fallback says why the session runs on the CPU instead of the
	// provider asked for (empty when it did not fall back).
	Fallback string
	Metadata map[string]string
}

// CheckOptLevel validates a graph optimization level name.
func CheckOptLevel(s string) error {
	_, err := optLevel(s)
	return err
}

func optLevel(s string) (ort.GraphOptimizationLevel, error) {
	switch s {
	case "", "all":
		return ort.GraphOptimizationLevelEnableAll, nil
	case "extended":
		return ort.GraphOptimizationLevelEnableExtended, nil
	case "basic":
		return ort.GraphOptimizationLevelEnableBasic, nil
	case "disabled", "none":
		return ort.GraphOptimizationLevelDisableAll, nil
	}
	return 0, fmt.Errorf("unknown graph optimization level %q (all, extended, basic or disabled)", s)
}

func sessionOptions(o Options, p Provider) (*ort.SessionOptions, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			so.Destroy()
		}
	}()
	// Errors come back to the caller as values; ONNX Runtime's own log
	// lines would only repeat them, in colour, on standard error.
	if err := so.SetLogSeverityLevel(ort.LoggingLevelFatal); err != nil {
		return nil, err
	}
	lvl, err := optLevel(o.OptLevel)
	if err != nil {
		return nil, err
	}
	if err := so.SetGraphOptimizationLevel(lvl); err != nil {
		return nil, err
	}
	if o.IntraOpThreads > 0 {
		if err := so.SetIntraOpNumThreads(o.IntraOpThreads); err != nil {
			return nil, err
		}
	}
	if o.InterOpThreads > 0 {
		if err := so.SetInterOpNumThreads(o.InterOpThreads); err != nil {
			return nil, err
		}
	}
	if o.Parallel {
		if err := so.SetExecutionMode(ort.ExecutionModeParallel); err != nil {
			return nil, err
		}
	}
	for _, kv := range o.Config {
		if err := so.AddSessionConfigEntry(kv[0], kv[1]); err != nil {
			return nil, fmt.Errorf("session config %s=%s: %w", kv[0], kv[1], err)
		}
	}
	if o.DisableMemPattern {
		if err := so.SetMemPattern(false); err != nil {
			return nil, err
		}
	}
	if o.DisableCPUArena {
		if err := so.SetCpuMemArena(false); err != nil {
			return nil, err
		}
	}
	if o.ProfilePrefix != "" {
		if err := so.EnableProfiling(o.ProfilePrefix); err != nil {
			return nil, err
		}
	}
	if err := appendProvider(so, p); err != nil {
		return nil, providerError(p, err)
	}
	ok = true
	return so, nil
}

// appendProvider adds a GPU execution provider on its device (the CPU
// provider needs nothing).
func appendProvider(so *ort.SessionOptions, p Provider) error {
	device := map[string]string{"device_id": strconv.Itoa(p.Device)}
	switch p.Kind {
	case "cuda":
		co, err := ort.NewCUDAProviderOptions()
		if err != nil {
			return err
		}
		defer co.Destroy()
		if err := co.Update(device); err != nil {
			return err
		}
		return so.AppendExecutionProviderCUDA(co)
	case "tensorrt":
		to, err := ort.NewTensorRTProviderOptions()
		if err != nil {
			return err
		}
		defer to.Destroy()
		if err := to.Update(device); err != nil {
			return err
		}
		return so.AppendExecutionProviderTensorRT(to)
	}
	return nil
}

// ErrProviderUnavailable is wrapped by errors about a missing provider.
var ErrProviderUnavailable = errors.New("execution provider unavailable")

func providerError(p Provider, err error) error {
	msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", " ")
	return fmt.Errorf("%w: %s is not available in this ONNX Runtime build or on this machine (%s)", ErrProviderUnavailable, p, msg)
}

// NewSession loads model bytes, with the given input and output names in the
// order Run takes them (nil: all, in the model's order).
func NewSession(model []byte, inputs, outputs []string, o Options) (*Session, error) {
	if !ort.IsInitialized() {
		return nil, errNotInit
	}
	if len(model) == 0 {
		return nil, errors.New("empty model")
	}
	ins, outs, err := ort.GetInputOutputInfoWithONNXData(model)
	if err != nil {
		return nil, fmt.Errorf("read model: %s", oneLine(err))
	}
	s := &Session{Inputs: ioInfos(ins), Outputs: ioInfos(outs)}
	if inputs == nil {
		inputs = names(s.Inputs)
	}
	if outputs == nil {
		outputs = names(s.Outputs)
	}
	if s.Inputs, err = pick(s.Inputs, inputs, "input"); err != nil {
		return nil, err
	}
	if s.Outputs, err = pick(s.Outputs, outputs, "output"); err != nil {
		return nil, err
	}
	p := o.Provider
	if p.Kind == "" {
		p.Kind = "cpu"
	}
	so, err := sessionOptions(o, p)
	if err != nil && errors.Is(err, ErrProviderUnavailable) && o.AllowCPUFallback {
		s.Fallback = err.Error()
		p = Provider{Kind: "cpu"}
		so, err = sessionOptions(o, p)
	}
	if err != nil {
		return nil, err
	}
	defer so.Destroy()
	sess, err := ort.NewDynamicAdvancedSessionWithONNXData(model, inputs, outputs, so)
	if err != nil {
		return nil, fmt.Errorf("create session: %s", oneLine(err))
	}
	s.sess, s.Provider = sess, p
	if md, err := sess.GetModelMetadata(); err == nil {
		s.Metadata = map[string]string{}
		if keys, err := md.GetCustomMetadataMapKeys(); err == nil {
			for _, k := range keys {
				if v, ok, err := md.LookupCustomMetadataMap(k); err == nil && ok {
					s.Metadata[k] = v
				}
			}
		}
		md.Destroy()
	}
	return s, nil
}

// NewSessionFromFile reads a model file and loads it as NewSession does.
func NewSessionFromFile(path string, inputs, outputs []string, o Options) (*Session, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	s, err := NewSession(data, inputs, outputs, o)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return s, nil
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

func ioInfos(in []ort.InputOutputInfo) []IOInfo {
	out := make([]IOInfo, len(in))
	for i, x := range in {
		out[i] = IOInfo{Name: x.Name, DType: dtypeOf(x.DataType), Shape: append([]int64{}, x.Dimensions...)}
		if x.OrtValueType != ort.ONNXTypeTensor {
			out[i].DType = Other
		}
	}
	return out
}

func names(infos []IOInfo) []string {
	out := make([]string, len(infos))
	for i, x := range infos {
		out[i] = x.Name
	}
	return out
}

func pick(all []IOInfo, want []string, what string) ([]IOInfo, error) {
	byName := map[string]IOInfo{}
	for _, x := range all {
		byName[x.Name] = x
	}
	out := make([]IOInfo, len(want))
	for i, n := range want {
		x, ok := byName[n]
		if !ok {
			return nil, fmt.Errorf("model has no %s named %q (it has %s)", what, n, strings.Join(names(all), ", "))
		}
		out[i] = x
	}
	return out, nil
}

// Run executes the model. outputs may hold nil entries: ONNX Runtime then
// allocates those (float32, int64 and bool only; pre-allocate float16) and
// Run returns them in their place.
func (s *Session) Run(inputs, outputs []*Tensor) ([]*Tensor, error) {
	if s == nil || s.sess == nil {
		return nil, errors.New("run: the session is closed")
	}
	if len(inputs) != len(s.Inputs) {
		return nil, fmt.Errorf("run: %d inputs given, the session takes %d", len(inputs), len(s.Inputs))
	}
	if outputs == nil {
		outputs = make([]*Tensor, len(s.Outputs))
	}
	if len(outputs) != len(s.Outputs) {
		return nil, fmt.Errorf("run: %d outputs given, the session makes %d", len(outputs), len(s.Outputs))
	}
	in := make([]ort.Value, len(inputs))
	for i, t := range inputs {
		if t == nil || t.value == nil {
			return nil, fmt.Errorf("run: input %s is missing", s.Inputs[i].Name)
		}
		in[i] = t.value
	}
	out := make([]ort.Value, len(outputs))
	for i, t := range outputs {
		if t != nil {
			out[i] = t.value
		} else if s.Outputs[i].DType == Float16 {
			return nil, fmt.Errorf("run: float16 output %s must be pre-allocated", s.Outputs[i].Name)
		}
	}
	if err := s.sess.Run(in, out); err != nil {
		return nil, fmt.Errorf("run: %s", oneLine(err))
	}
	res := make([]*Tensor, len(outputs))
	var werr error
	for i, t := range outputs {
		if t != nil {
			res[i] = t
			continue
		}
		if werr != nil { // after a failure, release what ONNX Runtime allocated
			out[i].Destroy()
			continue
		}
		w, err := wrap(out[i])
		if err != nil {
			werr = fmt.Errorf("run: output %s: %w", s.Outputs[i].Name, err)
			continue
		}
		res[i] = w
	}
	if werr != nil {
		for j, r := range res {
			if outputs[j] == nil && r != nil {
				r.Destroy()
			}
		}
		return nil, werr
	}
	return res, nil
}

// RunFirstFloat32 runs the session with ONNX Runtime allocating every
// output and returns a copy of the first one's float32 values, releasing
// the outputs.
func (s *Session) RunFirstFloat32(inputs []*Tensor) ([]float32, error) {
	outs, err := s.Run(inputs, nil)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, o := range outs {
			o.Destroy()
		}
	}()
	if len(outs) == 0 {
		return nil, errors.New("run: the session has no outputs")
	}
	return append([]float32{}, outs[0].Float32s()...), nil
}

func wrap(v ort.Value) (*Tensor, error) {
	switch t := v.(type) {
	case *ort.Tensor[float32]:
		return &Tensor{value: t, dtype: Float32, shape: t.GetShape(), f32: t}, nil
	case *ort.Tensor[int64]:
		return &Tensor{value: t, dtype: Int64, shape: t.GetShape(), i64: t}, nil
	case *ort.Tensor[bool]:
		return &Tensor{value: t, dtype: Bool, shape: t.GetShape(), bl: t}, nil
	}
	v.Destroy()
	return nil, fmt.Errorf("unsupported output type %T", v)
}

// Destroy releases the session.
func (s *Session) Destroy() {
	if s != nil && s.sess != nil {
		s.sess.Destroy()
		s.sess = nil
	}
}
