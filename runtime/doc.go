// Package runtime is the project's only door to ONNX Runtime.
//
// Through github.com/yalue/onnxruntime_go it finds and loads the shared
// library, creates sessions with a thread count, a graph optimization level
// and an execution provider chosen by name, makes float32, float16, bool and
// int64 tensors (float16 outputs pre-allocated, since onnxruntime_go
// mis-sizes the ones it allocates), runs them, and reports a model's inputs,
// outputs and metadata.
//
// It knows nothing of graphs, models or training; it imports nothing of ours.
//
// ONNX Runtime has one environment per process, so Init is process-wide (the
// one piece of global state, owned by the library, not by us): it is safe to
// call more than once with the same library path.
package runtime
