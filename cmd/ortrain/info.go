package main

import (
	"fmt"
	"io"
	"sort"

	"github.com/ortrain/ortrain/runtime"
)

func cmdInfo(args []string, stdout, stderr io.Writer) error {
	const synopsis = "info --model MODEL.onnx"
	fs, help := flagSet("info")
	model := fs.String("model", "", "ONNX model file")
	rt := addRuntimeFlags(fs)
	if err := parse(fs, help, args, synopsis, stdout); err != nil {
		return err
	}
	sess, err := rt.open(*model, stderr)
	if err != nil {
		return err
	}
	defer sess.Destroy()
	fmt.Fprintf(stdout, "model     %s\nruntime   ONNX Runtime %s on %s\n", *model, runtime.Version(), sess.Provider)
	for _, in := range sess.Inputs {
		fmt.Fprintf(stdout, "input     %v\n", in)
	}
	for _, out := range sess.Outputs {
		fmt.Fprintf(stdout, "output    %v\n", out)
	}
	keys := make([]string, 0, len(sess.Metadata))
	for k := range sess.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(stdout, "metadata  %s = %s\n", k, sess.Metadata[k])
	}
	return nil
}
