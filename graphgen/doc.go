// Package graphgen owns the graph IR that every ONNX model of the project is
// built in: typed values with static or symbolic shapes, nodes, initializers
// and the opset, a builder with one method per operator we emit, shape
// inference for each of those operators, serialization to an ONNX ModelProto,
// and reverse-mode automatic differentiation (one gradient rule per operator).
//
// It knows nothing of ResNets, training loops, data or ONNX Runtime: models are
// described by the models package on top of this one, and graphs are run by the
// runtime package. It imports nothing else of ours.
//
// Errors are sticky: a builder method that meets a bad input records the first
// error, returns a placeholder value and lets the caller go on; Err and Model
// report it. So model code reads as straight-line code and never panics on a
// bad graph.
package graphgen
