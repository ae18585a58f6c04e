// Package graphgen builds, checks, writes and differentiates ONNX graphs.
//
// It owns the graph IR every model of the project is built in (typed values
// with static or symbolic shapes, nodes, initializers, the opset), a builder
// with one method per operator we emit, shape inference for each of them,
// serialization to an ONNX ModelProto, and reverse-mode automatic
// differentiation with one gradient rule per operator (gradrules.go). Two
// rewrites of standard ONNX precede differentiation, so that the gradients
// follow them: SubsamplePointwise and ConvsAsGemm (small planes as
// products over the batch). Two follow it: LowerBatchStats, still standard
// ONNX, and LowerNchwc, whose result is for ONNX Runtime's CPU provider
// alone (its blocked convolutions, an operator domain of its own).
//
// It knows nothing of ResNets, training loops or data, and does not depend on
// ONNX Runtime: models are described by the models package on top of this
// one, and graphs are run by the runtime package. It imports nothing else of
// ours but internal/atomicfile (its tests and kernel benchmarks do more).
// Where two standard formulations are equivalent, the one chosen is the
// faster on ONNX Runtime's CPU provider, by the kernel benchmarks in
// kernels_bench_test.go; the choices are made in few places (convGradForms,
// the lowering passes), apart from the rules' math.
//
// Errors are sticky: a builder method that meets a bad input records the first
// error, returns a placeholder value and lets the caller go on; Err and Model
// report it. So model code reads as straight-line code and never panics on a
// bad graph.
package graphgen
