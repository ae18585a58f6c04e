//go:build !noturbo

package data

// JPEG decoding with libjpeg-turbo (Debian's libturbojpeg0-dev, which
// scripts/setup.sh installs), the fastest correct decoder within reach:
// 4.3x faster than Go's image/jpeg on 224px ImageNet JPEGs (164 against 702
// microseconds; docs/benchmarks.md) and the library PIL decodes with, so the
// pixels match torchvision's exactly. Build with -tags noturbo to use Go's
// decoder alone (no cgo library needed).

/*
#cgo LDFLAGS: -lturbojpeg
#include <turbojpeg.h>
#include <stdlib.h>

static int ortrain_header(tjhandle h, const unsigned char* buf, unsigned long n, int* w, int* hh) {
	int sub, cs;
	return tjDecompressHeader3(h, buf, n, w, hh, &sub, &cs);
}

static int ortrain_decode(tjhandle h, const unsigned char* buf, unsigned long n, unsigned char* out, int w, int hh) {
	return tjDecompress2(h, buf, n, out, w, 0, hh, TJPF_RGB, TJFLAG_STOPONWARNING);
}
*/
import "C"

import (
	"errors"
	"sync"
	"unsafe"
)

// JPEGDecoder names the decoder in use, for logs and benchmarks.
const JPEGDecoder = "libjpeg-turbo"

// turboHandles are decompressors; a handle serves one goroutine at a time.
var turboHandles = sync.Pool{New: func() any { return C.tjInitDecompress() }}

var errTurbo = errors.New("libjpeg-turbo could not decode the image")

// decodeJPEGFast decodes JPEG bytes to RGB with libjpeg-turbo. Any warning
// (a truncated file, say) is an error; the caller then lets Go's decoder
// have its say, which also handles what libjpeg-turbo will not convert to
// RGB (CMYK).
func decodeJPEGFast(b []byte) (*RGB, error) {
	h := turboHandles.Get().(C.tjhandle)
	defer turboHandles.Put(h)
	var w, hh C.int
	src := (*C.uchar)(unsafe.Pointer(&b[0]))
	if C.ortrain_header(h, src, C.ulong(len(b)), &w, &hh) != 0 {
		return nil, errTurbo
	}
	if w <= 0 || hh <= 0 || int64(w)*int64(hh) > MaxPixels {
		return nil, errTurbo
	}
	out := &RGB{W: int(w), H: int(hh), Pix: make([]uint8, int(w)*int(hh)*3)}
	if C.ortrain_decode(h, src, C.ulong(len(b)), (*C.uchar)(unsafe.Pointer(&out.Pix[0])), w, hh) != 0 {
		return nil, errTurbo
	}
	return out, nil
}
