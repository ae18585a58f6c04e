//go:build !cgo

package runtime

// ONNX Runtime is loaded through cgo (github.com/yalue/onnxruntime_go), and
// this build has none: Go turns cgo off when it finds no C compiler. The
// undefined name below is the error such a build stops at, and says what to
// do: install a C compiler (Debian: apt-get install gcc) and build with
// CGO_ENABLED=1.
const _ = ortrain_needs_cgo__install_gcc_and_build_with_CGO_ENABLED_1
