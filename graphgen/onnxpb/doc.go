// Package onnxpb holds the ONNX protobuf message types (ModelProto, GraphProto,
// NodeProto, TensorProto, ...) generated from Debian's onnx.proto.
//
// The proto package is `ortrain.onnx`, not `onnx`, so that these types can live
// in one binary with onnx-go's own generated `onnx` types; the wire format is
// the same. This package holds only generated code; it knows nothing of graphs
// or models.
package onnxpb

//go:generate ../../scripts/genproto.sh
