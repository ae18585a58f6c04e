// Package classifier says whether an ONNX model is an image classifier.
//
// One is: one float32 input (N,3,H,W), float32 logits (N,K) as its first
// output. Its metadata may give class names and preprocessing. The teacher
// of distillation and ortrain's eval, predict and bench share the check. It
// imports runtime and models.
package classifier

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ortrain/ortrain/models"
	"github.com/ortrain/ortrain/runtime"
)

// Info is what a classifier's signature and metadata say.
type Info struct {
	Input, Logits string // the input's and the first output's names
	Outputs       int    // how many outputs the model has
	// Batch, Height, Width and Classes are the declared sizes, -1 where
	// dynamic.
	Batch, Height, Width, Classes int64
	// ClassNames are the metadata's (models.MetaClasses), nil when absent
	// or of another length than the logits.
	ClassNames []string
	// Metadata is the model's metadata, for its preprocessing
	// (models.PreprocessingFromMetadata) and image size.
	Metadata map[string]string
}

// Inspect checks a session's signature; the error, one line, names the
// model (path) and what is wrong with it.
func Inspect(sess *runtime.Session, path string) (Info, error) {
	fail := func(format string, a ...any) (Info, error) {
		return Info{}, fmt.Errorf("%s is not an image classifier: %s", path, fmt.Sprintf(format, a...))
	}
	if len(sess.Inputs) != 1 {
		names := make([]string, len(sess.Inputs))
		for i, in := range sess.Inputs {
			names[i] = in.Name
		}
		return fail("it has %d inputs (%s), an image classifier one", len(sess.Inputs), strings.Join(names, ", "))
	}
	in := sess.Inputs[0]
	switch {
	case in.DType != runtime.Float32:
		return fail("input %s is %v, want float32", in.Name, in.DType)
	case len(in.Shape) != 4:
		return fail("input %s has rank %d (shape %v), want (N,3,H,W)", in.Name, len(in.Shape), in.Shape)
	case in.Shape[1] != 3:
		return fail("input %s has %d channels, want 3", in.Name, in.Shape[1])
	case len(sess.Outputs) < 1:
		return fail("it has no output")
	}
	out := sess.Outputs[0]
	if out.DType != runtime.Float32 || len(out.Shape) != 2 {
		return fail("output %s is %v%v, want float32 logits (N,K)", out.Name, out.DType, out.Shape)
	}
	info := Info{Input: in.Name, Logits: out.Name, Outputs: len(sess.Outputs),
		Batch: in.Shape[0], Height: in.Shape[2], Width: in.Shape[3], Classes: out.Shape[1], Metadata: sess.Metadata}
	if s := sess.Metadata[models.MetaClasses]; s != "" {
		var names []string
		if err := json.Unmarshal([]byte(s), &names); err == nil && (info.Classes < 0 || int64(len(names)) == info.Classes) {
			info.ClassNames = names
		}
	}
	return info, nil
}
