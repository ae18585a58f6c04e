package data

import (
	"fmt"
	"math"
	"sync"
)

// Resampling is antialiased, as PIL's Image.resize (and so torchvision's
// Resize and RandomResizedCrop on PIL images, and timm's) does: a filter
// whose support widens with the downscaling factor, so that shrinking
// averages every source pixel instead of skipping some. Bilinear is a
// triangle filter; bicubic PIL's cubic convolution with a = -0.5, whose
// negative lobes can overshoot, so its passes clamp to 0-255 as PIL's
// 8-bit images do.

// Interp is a resampling filter.
type Interp string

// The filters.
const (
	Bilinear Interp = "bilinear"
	Bicubic  Interp = "bicubic"
)

// ParseInterp reads a filter name.
func ParseInterp(s string) (Interp, error) {
	switch i := Interp(s); i {
	case Bilinear, Bicubic:
		return i, nil
	}
	return "", fmt.Errorf("unknown interpolation %q (bilinear or bicubic)", s)
}

// support is the filter's half-width at scale 1.
func (i Interp) support() float64 {
	if i == Bicubic {
		return 2
	}
	return 1
}

// weight is the filter at distance x (in source pixels at scale 1).
func (i Interp) weight(x float64) float64 {
	x = math.Abs(x)
	if i == Bicubic {
		const a = -0.5
		switch {
		case x < 1:
			return ((a+2)*x-(a+3))*x*x + 1
		case x < 2:
			return (((x-5)*x+8)*x - 4) * a
		}
		return 0
	}
	return math.Max(1-x, 0)
}

// taps are the source indices and weights of one output position.
type taps struct {
	start int
	w     []float32
}

// filterTaps computes, for output positions [from, to) of an axis of length
// outLen that maps onto the source interval [lo, hi), the filter's taps.
// The taps stay inside [floor(lo), ceil(hi)): a crop is resampled from its
// own pixels only, as torchvision's crop-then-resize does.
func filterTaps(f Interp, lo, hi float64, inLen, outLen, from, to int) []taps {
	first, last := max(int(math.Floor(lo)), 0), min(int(math.Ceil(hi)), inLen)
	scale := (hi - lo) / float64(outLen)
	filterScale := math.Max(scale, 1)
	support := f.support() * filterScale
	inv := 1 / filterScale
	out := make([]taps, 0, to-from)
	for o := from; o < to; o++ {
		center := lo + (float64(o)+0.5)*scale
		xmin := max(int(center-support+0.5), first)
		xmax := min(int(center+support+0.5), last)
		t := taps{start: xmin, w: make([]float32, 0, max(xmax-xmin, 1))}
		var sum float64
		ws := make([]float64, 0, xmax-xmin)
		for x := xmin; x < xmax; x++ {
			w := f.weight((float64(x) - center + 0.5) * inv)
			ws = append(ws, w)
			sum += w
		}
		if sum == 0 { // degenerate box: take the nearest pixel
			t.start = min(max(int(center), first), last-1)
			t.w = append(t.w, 1)
		} else {
			for _, w := range ws {
				t.w = append(t.w, float32(w/sum))
			}
		}
		out = append(out, t)
	}
	return out
}

// scratch holds reusable float buffers, so that resampling does not
// allocate (and clear) two image-sized buffers per sample.
var scratch = sync.Pool{New: func() any { return new([]float32) }}

func getScratch(n int) *[]float32 {
	p := scratch.Get().(*[]float32)
	if cap(*p) < n {
		*p = make([]float32, n)
	}
	*p = (*p)[:n]
	return p
}

// resample maps the source box [x0,x1) x [y0,y1) onto an image of fullW x
// fullH with filter f and returns the window [wx, wx+ww) x [wy, wy+wh) of
// it as float32 RGB (interleaved, 0-255 scale). The result comes from a
// pool: hand it back with scratch.Put when done.
func resample(f Interp, src *RGB, x0, y0, x1, y1 float64, fullW, fullH, wx, wy, ww, wh int) *[]float32 {
	cols := filterTaps(f, x0, x1, src.W, fullW, wx, wx+ww)
	rows := filterTaps(f, y0, y1, src.H, fullH, wy, wy+wh)
	// Only the source rows the vertical pass reads.
	rmin, rmax := src.H, 0
	for _, r := range rows {
		rmin = min(rmin, r.start)
		rmax = max(rmax, r.start+len(r.w))
	}
	// Horizontal pass: (rmax-rmin) x ww.
	tmpP := getScratch((rmax - rmin) * ww * 3)
	defer scratch.Put(tmpP)
	tmp := *tmpP
	for y := rmin; y < rmax; y++ {
		srow := src.Pix[y*src.W*3 : (y+1)*src.W*3]
		drow := tmp[(y-rmin)*ww*3 : (y-rmin+1)*ww*3]
		for x, c := range cols {
			var r, g, b float32
			px := srow[c.start*3 : (c.start+len(c.w))*3]
			for k, w := range c.w {
				r += w * float32(px[3*k])
				g += w * float32(px[3*k+1])
				b += w * float32(px[3*k+2])
			}
			d := drow[3*x : 3*x+3]
			d[0], d[1], d[2] = r, g, b
		}
		if f == Bicubic {
			clamp255(drow)
		}
	}
	// Vertical pass.
	outP := getScratch(wh * ww * 3)
	out := *outP
	for y, rt := range rows {
		drow := out[y*ww*3 : (y+1)*ww*3]
		first := tmp[(rt.start-rmin)*ww*3 : (rt.start-rmin+1)*ww*3]
		w0 := rt.w[0]
		for i, v := range first {
			drow[i] = w0 * v
		}
		for k := 1; k < len(rt.w); k++ {
			w := rt.w[k]
			srow := tmp[(rt.start+k-rmin)*ww*3 : (rt.start+k-rmin+1)*ww*3]
			srow = srow[:len(drow)]
			for i, v := range srow {
				drow[i] += w * v
			}
		}
		if f == Bicubic {
			clamp255(drow)
		}
	}
	return outP
}

func clamp255(xs []float32) {
	for i, v := range xs {
		xs[i] = min(max(v, 0), 255)
	}
}
