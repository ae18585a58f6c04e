//go:build cgo && !noturbo

package data

// JPEG decoding with libjpeg-turbo (Debian's libturbojpeg0-dev, which
// scripts/setup.sh installs), the fastest correct decoder within reach
// (about 4 times Go's image/jpeg, BenchmarkDecode) and the library PIL
// decodes with, so the pixels match torchvision's exactly. Build with -tags noturbo to use Go's
// decoder alone (no cgo library needed).

/*
#cgo LDFLAGS: -lturbojpeg
#if defined(__has_include) && !__has_include(<turbojpeg.h>)
#error "ortrain: libjpeg-turbo's header turbojpeg.h is missing: run scripts/setup.sh (Debian: apt-get install libturbojpeg0-dev), or build with -tags noturbo for Go's JPEG decoder"
#endif
#include <turbojpeg.h>
#include <stdlib.h>

static int ortrain_header(tjhandle h, const unsigned char* buf, unsigned long n, int* w, int* hh) {
	int sub, cs;
	return tjDecompressHeader3(h, buf, n, w, hh, &sub, &cs);
}

static int ortrain_decode(tjhandle h, const unsigned char* buf, unsigned long n, unsigned char* out, int w, int hh) {
	return tjDecompress2(h, buf, n, out, w, 0, hh, TJPF_RGB, TJFLAG_STOPONWARNING);
}

// The size tjDecompress2 gives when asked for 1/denom of the image (it
// scales in the DCT domain).
static void ortrain_scaled(int w, int hh, int denom, int* sw, int* sh) {
	tjscalingfactor f = {1, denom};
	*sw = TJSCALED(w, f);
	*sh = TJSCALED(hh, f);
}
*/
import "C"

import (
	"errors"
	"unsafe"
)

// JPEGDecoder names the decoder in use, for logs and benchmarks.
const JPEGDecoder = "libjpeg-turbo"

// turboHandles is a bounded free list of decompressors (a handle serves
// one goroutine at a time). Not a sync.Pool: the collector would drop
// handles without freeing their C memory.
var turboHandles = make(chan C.tjhandle, 64)

func getHandle() C.tjhandle {
	select {
	case h := <-turboHandles:
		return h
	default:
		return C.tjInitDecompress()
	}
}

func putHandle(h C.tjhandle) {
	select {
	case turboHandles <- h:
	default:
		C.tjDestroy(h)
	}
}

var errTurbo = errors.New("libjpeg-turbo could not decode the image")

// decodeJPEGFast decodes JPEG bytes to RGB with libjpeg-turbo. Any warning
// (a truncated file, say) is an error; the caller then lets Go's decoder
// have its say, which also handles what libjpeg-turbo will not convert to
// RGB (CMYK).
func decodeJPEGFast(b []byte) (*RGB, error) { return decodeJPEGScaled(b, 1) }

// decodeJPEGScaled decodes at 1/denom of the size (denom 1, 2, 4 or 8),
// scaling in the DCT domain. The pipeline decodes at full size (see
// docs/results/bench/history.md); the benchmarks measure what scaling would save.
func decodeJPEGScaled(b []byte, denom int) (*RGB, error) {
	h := getHandle()
	defer putHandle(h)
	var w, hh C.int
	src := (*C.uchar)(unsafe.Pointer(&b[0]))
	if C.ortrain_header(h, src, C.ulong(len(b)), &w, &hh) != 0 {
		return nil, errTurbo
	}
	if w <= 0 || hh <= 0 || int64(w)*int64(hh) > MaxPixels {
		return nil, errTurbo
	}
	if denom > 1 {
		C.ortrain_scaled(w, hh, C.int(denom), &w, &hh)
	}
	out := &RGB{W: int(w), H: int(hh), Pix: make([]uint8, int(w)*int(hh)*3)}
	if C.ortrain_decode(h, src, C.ulong(len(b)), (*C.uchar)(unsafe.Pointer(&out.Pix[0])), w, hh) != 0 {
		return nil, errTurbo
	}
	return out, nil
}
