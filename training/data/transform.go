package data

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Normalization of the seed (RGB, 0-255 scale); models.Mean and models.Std
// state the same contract for the networks (a test keeps them equal).
var (
	Mean = [3]float32{123.68, 116.779, 103.939}
	Std  = [3]float32{58.393, 57.12, 57.375}
)

// Norm is a per-channel normalization, (pixel - Mean) / Std, on the 0-255
// pixel scale.
type Norm struct{ Mean, Std [3]float32 }

// SeedNorm is the seed's normalization, the one ortrain's models expect.
var SeedNorm = Norm{Mean: Mean, Std: Std}

// orSeed is n, or SeedNorm when n is the zero value.
func (n Norm) orSeed() Norm {
	if n == (Norm{}) {
		return SeedNorm
	}
	return n
}

// AlexNet's PCA lighting: ImageNet's RGB eigenvalues (0-1 scale) and
// eigenvectors (columns).
var (
	pcaEigval = [3]float64{0.2175, 0.0188, 0.0045}
	pcaEigvec = [3][3]float64{
		{-0.5675, 0.7192, 0.4009},
		{-0.5808, -0.0045, -0.8140},
		{-0.5836, -0.6948, 0.4203},
	}
)

// TrainTransform is the seed's training pipeline, in order: random-resized
// crop to Size, horizontal flip, brightness, saturation and hue scaling, PCA
// lighting, normalization. Pixel values are not clipped between the steps
// (float pipeline, as GluonCV's).
type TrainTransform struct {
	Size               int
	ScaleMin, ScaleMax float64 // crop area as a fraction of the image: 0.08, 1
	RatioMin, RatioMax float64 // crop aspect ratio w/h: 3/4, 4/3
	FlipProb           float64 // 0.5
	// Jitter: brightness and saturation are scaled by factors drawn
	// uniformly from [1-Jitter, 1+Jitter] (0.4 gives the seed's [0.6,
	// 1.4]). Hue is "scaled" the way MXNet's HueJitterAug (GluonCV) does:
	// the colour rotates in YIQ space by pi*(f-1) for a factor f drawn
	// from the same range, i.e. by up to 0.4*pi either way.
	Jitter float64
	// Lighting is the standard deviation of the PCA noise coefficients (0.1).
	Lighting float64
}

// NewTrainTransform is the seed's pipeline at the given crop size.
func NewTrainTransform(size int) TrainTransform {
	return TrainTransform{Size: size, ScaleMin: 0.08, ScaleMax: 1, RatioMin: 3.0 / 4, RatioMax: 4.0 / 3,
		FlipProb: 0.5, Jitter: 0.4, Lighting: 0.1}
}

// Crop chooses a random-resized-crop box for a w x h image the way
// torchvision does: up to 10 tries of an area fraction drawn uniformly from
// [ScaleMin, ScaleMax] and a log-uniform aspect ratio in [RatioMin,
// RatioMax], then the whole image clipped to the ratio range, centered.
func (t TrainTransform) Crop(w, h int, r *rand.Rand) (x, y, cw, ch int) {
	area := float64(w * h)
	logLo, logHi := math.Log(t.RatioMin), math.Log(t.RatioMax)
	for i := 0; i < 10; i++ {
		target := area * (t.ScaleMin + r.Float64()*(t.ScaleMax-t.ScaleMin))
		ratio := math.Exp(logLo + r.Float64()*(logHi-logLo))
		cw = int(math.RoundToEven(math.Sqrt(target * ratio))) // Python's round
		ch = int(math.RoundToEven(math.Sqrt(target / ratio)))
		if cw > 0 && cw <= w && ch > 0 && ch <= h {
			return r.IntN(w - cw + 1), r.IntN(h - ch + 1), cw, ch
		}
	}
	in := float64(w) / float64(h)
	switch {
	case in < t.RatioMin:
		cw, ch = w, int(math.RoundToEven(float64(w)/t.RatioMin))
	case in > t.RatioMax:
		ch, cw = h, int(math.RoundToEven(float64(h)*t.RatioMax))
	default:
		cw, ch = w, h
	}
	return (w - cw) / 2, (h - ch) / 2, cw, ch
}

// Draw is one sample's random choices.
type Draw struct {
	X, Y, W, H                       int     // crop box in the source image
	Flip                             bool    // mirror left-right
	Brightness, Saturation, HueAngle float64 // factors; hue as a fraction of pi
	Lighting                         [3]float64
}

// Draw makes the random choices for a w x h image, in a fixed order from r.
func (t TrainTransform) Draw(w, h int, r *rand.Rand) Draw {
	var d Draw
	d.X, d.Y, d.W, d.H = t.Crop(w, h, r)
	d.Flip = r.Float64() < t.FlipProb
	d.Brightness = 1 + t.Jitter*(2*r.Float64()-1)
	d.Saturation = 1 + t.Jitter*(2*r.Float64()-1)
	d.HueAngle = t.Jitter * (2*r.Float64() - 1)
	if t.Lighting > 0 {
		var a [3]float64
		for i := range a {
			a[i] = r.NormFloat64() * t.Lighting * pcaEigval[i]
		}
		for c := 0; c < 3; c++ {
			for k := 0; k < 3; k++ {
				d.Lighting[c] += pcaEigvec[c][k] * a[k] * 255
			}
		}
	}
	return d
}

// Apply transforms img with the random stream r and writes the normalized
// result into dst as CHW (3*Size*Size values).
func (t TrainTransform) Apply(img *RGB, r *rand.Rand, dst []float32) error {
	return t.ApplyDraw(img, t.Draw(img.W, img.H, r), dst)
}

// ApplyDraw transforms img with the given choices.
func (t TrainTransform) ApplyDraw(img *RGB, d Draw, dst []float32) error {
	s := t.Size
	if len(dst) != 3*s*s {
		return fmt.Errorf("transform: destination holds %d values, want %d", len(dst), 3*s*s)
	}
	px := resample(Bilinear, img, float64(d.X), float64(d.Y), float64(d.X+d.W), float64(d.Y+d.H), s, s, 0, 0, s, s)
	defer scratch.Put(px)
	m := mul3(hue3(d.HueAngle), mul3(saturate3(d.Saturation), scale3(d.Brightness)))
	writeCHW(*px, s, s, m, d.Lighting, d.Flip, SeedNorm, dst)
	return nil
}

// writeCHW applies out = m*rgb + shift per pixel, normalizes and writes CHW,
// mirrored left-right when flip is set.
func writeCHW(px []float32, w, h int, m [3][3]float64, shift [3]float64, flip bool, n Norm, dst []float32) {
	var mf [3][3]float32
	var bf [3]float32
	for c := 0; c < 3; c++ {
		for k := 0; k < 3; k++ {
			mf[c][k] = float32(m[c][k]) / n.Std[c]
		}
		bf[c] = (float32(shift[c]) - n.Mean[c]) / n.Std[c]
	}
	plane := w * h
	d0, d1, d2 := dst[:plane], dst[plane:2*plane], dst[2*plane:3*plane]
	for y := 0; y < h; y++ {
		row := px[y*w*3 : (y+1)*w*3]
		for x := 0; x < w; x++ {
			sx := x
			if flip {
				sx = w - 1 - x
			}
			p := row[3*sx : 3*sx+3]
			r, g, b := p[0], p[1], p[2]
			i := y*w + x
			d0[i] = mf[0][0]*r + mf[0][1]*g + mf[0][2]*b + bf[0]
			d1[i] = mf[1][0]*r + mf[1][1]*g + mf[1][2]*b + bf[1]
			d2[i] = mf[2][0]*r + mf[2][1]*g + mf[2][2]*b + bf[2]
		}
	}
}

func mul3(a, b [3][3]float64) [3][3]float64 {
	var o [3][3]float64
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ {
			for k := 0; k < 3; k++ {
				o[i][j] += a[i][k] * b[k][j]
			}
		}
	}
	return o
}

func scale3(f float64) [3][3]float64 {
	return [3][3]float64{{f, 0, 0}, {0, f, 0}, {0, 0, f}}
}

// saturate3 blends with the luma gray: gray*(1-f) + rgb*f.
func saturate3(f float64) [3][3]float64 {
	luma := [3]float64{0.299, 0.587, 0.114}
	var m [3][3]float64
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ {
			m[i][j] = luma[j] * (1 - f)
		}
		m[i][i] += f
	}
	return m
}

// toYIQ is the NTSC RGB to YIQ transform, with four decimals so that the I
// and Q rows sum to exactly zero (MXNet's three-decimal table gives gray a
// trace of chroma, which a rotation then turns into colour).
var toYIQ = [3][3]float64{{0.299, 0.587, 0.114}, {0.5959, -0.2746, -0.3213}, {0.2115, -0.5227, 0.3112}}

// hue3 rotates chroma in YIQ space by pi*alpha (MXNet's HueJitterAug). The
// way back is the exact inverse of toYIQ, so that a zero rotation is the
// identity and gray stays gray under any rotation.
func hue3(alpha float64) [3][3]float64 {
	u, w := math.Cos(alpha*math.Pi), math.Sin(alpha*math.Pi)
	rot := [3][3]float64{{1, 0, 0}, {0, u, -w}, {0, w, u}}
	return mul3(inverse3(toYIQ), mul3(rot, toYIQ))
}

func inverse3(m [3][3]float64) [3][3]float64 {
	det := m[0][0]*(m[1][1]*m[2][2]-m[1][2]*m[2][1]) - m[0][1]*(m[1][0]*m[2][2]-m[1][2]*m[2][0]) + m[0][2]*(m[1][0]*m[2][1]-m[1][1]*m[2][0])
	var inv [3][3]float64
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ {
			a, b := (j+1)%3, (j+2)%3
			c, d := (i+1)%3, (i+2)%3
			inv[i][j] = (m[a][c]*m[b][d] - m[a][d]*m[b][c]) / det
		}
	}
	return inv
}

// DefaultCropPct is the validation crop's share of the resized shorter side,
// 224/256 (torchvision's, GluonCV's and timm's default).
const DefaultCropPct = 0.875

// EvalTransform is the validation pipeline: resize the shorter side to
// Size/CropPct (antialiased), center-crop Size x Size, normalize. Zero
// fields take the defaults: DefaultCropPct, Bilinear, SeedNorm.
type EvalTransform struct {
	Size    int
	CropPct float64
	Interp  Interp
	Norm    Norm
}

// Apply writes the normalized CHW center crop of img into dst.
func (t EvalTransform) Apply(img *RGB, dst []float32) error {
	s := t.Size
	if len(dst) != 3*s*s {
		return fmt.Errorf("transform: destination holds %d values, want %d", len(dst), 3*s*s)
	}
	crop, interp := t.CropPct, t.Interp
	if crop == 0 {
		crop = DefaultCropPct
	}
	if interp == "" {
		interp = Bilinear
	}
	if crop <= 0 || crop > 1 {
		return fmt.Errorf("transform: crop share %g is not in (0, 1]", crop)
	}
	// Python's round (half to even) throughout, as torchvision computes
	// Resize(round(Size*256/224)) in its reference scripts.
	short := int(math.RoundToEven(float64(s) / crop))
	w, h := short, short
	if img.W < img.H {
		h = int(float64(short) * float64(img.H) / float64(img.W)) // torchvision truncates the long side
	} else if img.H < img.W {
		w = int(float64(short) * float64(img.W) / float64(img.H))
	}
	if w < s || h < s {
		return fmt.Errorf("transform: resized image %dx%d is smaller than the %d crop", w, h, s)
	}
	top := int(math.RoundToEven(float64(h-s) / 2))
	left := int(math.RoundToEven(float64(w-s) / 2))
	px := resample(interp, img, 0, 0, float64(img.W), float64(img.H), w, h, left, top, s, s)
	defer scratch.Put(px)
	writeCHW(*px, s, s, scale3(1), [3]float64{}, false, t.Norm.orSeed(), dst)
	return nil
}
