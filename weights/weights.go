// Package weights reads and writes named network weights in the files other
// tools publish and load: safetensors (timm, Hugging Face), PyTorch
// state_dict files (.pth/.pt, torchvision's) and the initializers of ONNX
// models, and checks a set of weights against the names and shapes a
// network wants, as PyTorch's load_state_dict(strict=True) does.
//
// It is the only package that knows those formats. It knows nothing of
// ResNets, training or ortrain's own checkpoints: callers give it the
// names and shapes to match.
package weights

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/ortrain/ortrain/graphgen"
)

// Tensor is one named tensor: floating-point values as float32 (float16,
// bfloat16 and float64 files are converted), or integers (Int, for
// bookkeeping buffers such as BatchNorm's num_batches_tracked).
type Tensor struct {
	Shape []int64
	Data  []float32
	Int   []int64
}

// Elements is the product of the shape (1 for a scalar).
func (t Tensor) Elements() int64 { return graphgen.S(t.Shape...).NumElements() }

// Set is a state_dict: tensors by name.
type Set map[string]Tensor

// Names are the set's names, sorted.
func (s Set) Names() []string {
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Floats are the floating-point tensors' values by name (what a network's
// parameters and statistics are).
func (s Set) Floats() map[string][]float32 {
	m := make(map[string][]float32, len(s))
	for n, t := range s {
		if t.Int == nil {
			m[n] = t.Data
		}
	}
	return m
}

// Format is a weights file format.
type Format string

// The formats Read knows.
const (
	Safetensors Format = "safetensors"
	PyTorch     Format = "pytorch" // torch.save's zip archive of a pickle
	ONNX        Format = "onnx"
)

// Sniff says which format a file's first bytes are in; "" when none.
func Sniff(head []byte) Format {
	switch {
	case bytes.HasPrefix(head, []byte("PK\x03\x04")):
		return PyTorch
	case len(head) >= 9 && head[8] == '{' && leUint64(head) > 1:
		return Safetensors
	case len(head) >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5:
		return "pickle" // a bare pickle: the pre-1.6 torch.save format
	case looksLikeONNX(head):
		return ONNX
	}
	return ""
}

func leUint64(b []byte) uint64 {
	var v uint64
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

// looksLikeONNX recognizes a ModelProto's usual first field (ir_version,
// field 1, varint: byte 0x08) followed by a small version number.
func looksLikeONNX(head []byte) bool {
	return len(head) >= 2 && head[0] == 0x08 && head[1] > 0 && head[1] < 64
}

// Read reads the weights in path, in whichever format it is: safetensors,
// a PyTorch file, or an ONNX model. A PyTorch checkpoint that wraps its
// state_dict (under "state_dict", "model" or "module", as timm and many
// training scripts save) is unwrapped, and DataParallel's "module." prefix
// is removed.
func Read(path string) (Set, error) {
	s, err := read(path)
	if err != nil {
		return nil, fmt.Errorf("weights %s: %w", path, err)
	}
	return s, nil
}

func read(path string) (Set, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, unwrapPathError(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, errors.New("is a directory, not a weights file")
	}
	if st.Size() == 0 {
		return nil, errors.New("empty file")
	}
	head := make([]byte, 16)
	n, _ := io.ReadFull(f, head)
	var s Set
	format := Sniff(head[:n])
	if format == "" && strings.HasSuffix(strings.ToLower(path), ".onnx") {
		format = ONNX // a ModelProto whose first field is not ir_version
	}
	switch format {
	case Safetensors:
		s, err = readSafetensors(f, st.Size())
	case PyTorch:
		s, err = readPyTorch(f, st.Size())
	case ONNX:
		s, err = readONNX(f, st.Size())
	case "pickle":
		return nil, errors.New("a PyTorch file in the format before torch 1.6 (a bare pickle); re-save it in PyTorch: torch.save(torch.load(f), g)")
	default:
		return nil, errors.New("not a safetensors, PyTorch (.pth) or ONNX file")
	}
	if err != nil {
		return nil, err
	}
	if len(s) == 0 {
		return nil, errors.New("holds no tensors")
	}
	return stripPrefix(s, "module."), nil
}

// unwrapPathError drops the path os.Open puts in its error (Read adds it).
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// stripPrefix removes prefix from every name when every name has it (a
// model wrapped in DataParallel or DistributedDataParallel).
func stripPrefix(s Set, prefix string) Set {
	for n := range s {
		if !strings.HasPrefix(n, prefix) {
			return s
		}
	}
	out := make(Set, len(s))
	for n, t := range s {
		out[strings.TrimPrefix(n, prefix)] = t
	}
	return out
}

// Ignored reports whether a name is bookkeeping that loading skips:
// BatchNorm's num_batches_tracked, which PyTorch saves and no ResNet
// computes with.
func Ignored(name string) bool { return strings.HasSuffix(name, ".num_batches_tracked") }

// MismatchError lists how a set of weights differs from what a network
// wants, like PyTorch's load_state_dict(strict=True).
type MismatchError struct {
	Missing, Unexpected []string
	WrongShape          []string // "name: file [..], model [..]"
}

// most is how many names of each kind the message shows.
const most = 5

func (e *MismatchError) Error() string {
	var parts []string
	list := func(what string, names []string) {
		if len(names) == 0 {
			return
		}
		shown := names
		if len(shown) > most {
			shown = append(append([]string{}, names[:most]...), fmt.Sprintf("and %d more", len(names)-most))
		}
		parts = append(parts, fmt.Sprintf("%d %s (%s)", len(names), what, strings.Join(shown, ", ")))
	}
	list("missing", e.Missing)
	list("unexpected", e.Unexpected)
	list("of the wrong shape", e.WrongShape)
	return "weights do not fit the model: " + strings.Join(parts, "; ")
}

// Match checks s against the names and shapes a network wants: every name
// present with its shape, no name the network lacks (Ignored ones aside).
// The error is a *MismatchError.
func (s Set) Match(want map[string][]int64) error {
	e := &MismatchError{}
	for n, shape := range want {
		t, ok := s[n]
		switch {
		case !ok:
			e.Missing = append(e.Missing, n)
		case t.Int != nil:
			e.WrongShape = append(e.WrongShape, n+": integers, not floating-point values")
		case !sameShape(t.Shape, shape):
			e.WrongShape = append(e.WrongShape, fmt.Sprintf("%s: file %v, model %v", n, t.Shape, shape))
		}
	}
	for n := range s {
		if _, ok := want[n]; !ok && !Ignored(n) {
			e.Unexpected = append(e.Unexpected, n)
		}
	}
	if len(e.Missing)+len(e.Unexpected)+len(e.WrongShape) == 0 {
		return nil
	}
	sort.Strings(e.Missing)
	sort.Strings(e.Unexpected)
	sort.Strings(e.WrongShape)
	return e
}

func sameShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
