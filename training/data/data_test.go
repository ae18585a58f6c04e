package data

import (
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ortrain/ortrain/internal/testutil"
)

// testImage draws smooth colour gradients with some texture, so that
// resampling differences show.
func testImage(w, h int, seed uint64) *image.NRGBA {
	r := rand.New(rand.NewPCG(seed, 1))
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	fx, fy := 0.05+0.1*r.Float64(), 0.05+0.1*r.Float64()
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			v := func(p float64) uint8 {
				return uint8(127 + 120*math.Sin(float64(x)*fx+float64(y)*fy+p))
			}
			img.SetNRGBA(x, y, color.NRGBA{v(0), v(2), v(4), uint8(128 + r.IntN(128))})
		}
	}
	return img
}

func writeImage(t *testing.T, path string, img image.Image) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if strings.HasSuffix(path, ".png") {
		err = png.Encode(f, img)
	} else {
		err = jpeg.Encode(f, img, &jpeg.Options{Quality: 95})
	}
	if err != nil {
		t.Fatal(err)
	}
}

// The validation transform equals torchvision's Resize(256)+CenterCrop(224)
// on PIL images within 2/255 per pixel on average (acceptance), for JPEG and
// PNG images of several sizes and kinds (landscape, portrait, gray, 16-bit,
// paletted, with alpha).
func TestEvalTransformMatchesTorchvision(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	add := func(name string, img image.Image) {
		p := filepath.Join(dir, name)
		writeImage(t, p, img)
		paths = append(paths, p)
	}
	add("land.jpg", testImage(500, 375, 1))
	add("port.jpg", testImage(217, 333, 2))
	add("small.png", testImage(150, 120, 3)) // upscaled
	add("alpha.png", testImage(300, 300, 4))
	gray := image.NewGray(image.Rect(0, 0, 320, 240))
	g16 := image.NewRGBA64(image.Rect(0, 0, 260, 300))
	pal := image.NewPaletted(image.Rect(0, 0, 256, 256), color.Palette{color.RGBA{10, 200, 30, 255}, color.RGBA{250, 20, 90, 255}, color.RGBA{40, 40, 240, 255}})
	src := testImage(320, 300, 5)
	for y := 0; y < 300; y++ {
		for x := 0; x < 320; x++ {
			c := src.NRGBAAt(x, y)
			if x < 320 && y < 240 {
				gray.SetGray(x, y, color.Gray{c.R})
			}
			if x < 260 {
				g16.SetRGBA64(x, y, color.RGBA64{uint16(c.R) * 257, uint16(c.G)*257 + 100, uint16(c.B) * 257, 65535})
			}
			if x < 256 && y < 256 {
				pal.SetColorIndex(x, y, uint8((x/7+y/5)%3))
			}
		}
	}
	add("gray.png", gray)
	add("gray.jpg", gray)
	add("rgb16.png", g16)
	add("pal.png", pal)
	cmyk := filepath.Join(dir, "cmyk.jpg")
	testutil.RunOracle(t, "make_cmyk.py", filepath.Join(dir, "land.jpg"), cmyk)
	paths = append(paths, cmyk)

	const size = 224
	for _, c := range []struct {
		tf   EvalTransform
		args []string
	}{
		{EvalTransform{Size: size}, nil},
		{EvalTransform{Size: size, CropPct: 0.95, Interp: Bicubic, Norm: Norm{Mean: [3]float32{127.5, 127.5, 127.5}, Std: [3]float32{63.75, 63.75, 63.75}}},
			[]string{"--crop-pct", "0.95", "--interpolation", "bicubic", "--mean", "127.5,127.5,127.5", "--std", "63.75,63.75,63.75"}},
	} {
		out := t.TempDir()
		testutil.RunOracle(t, "tv_eval.py", append(append(c.args, fmt.Sprint(size), out), paths...)...)
		for i, p := range paths {
			img, err := DecodeFile(p)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]float32, 3*size*size)
			if err := c.tf.Apply(img, got); err != nil {
				t.Fatal(err)
			}
			want := testutil.ReadFloats(t, filepath.Join(out, fmt.Sprintf("%d.bin", i)))
			std := c.tf.Norm.orSeed().Std
			var sum, worst float64
			for j := range got {
				d := math.Abs(float64(got[j]-want[j])) * float64(std[j/(size*size)]) // back to pixel units
				sum += d
				worst = math.Max(worst, d)
			}
			mean := sum / float64(len(got))
			if c.tf.Interp == Bicubic { // closer than the other filter is
				other := c.tf
				other.Interp = Bilinear
				if err := other.Apply(img, got); err != nil {
					t.Fatal(err)
				}
				var osum float64
				for j := range got {
					osum += math.Abs(float64(got[j]-want[j])) * float64(std[j/(size*size)])
				}
				if o := osum / float64(len(got)); o <= mean {
					t.Errorf("%s: bilinear is as close to torchvision's bicubic (%.3f/255) as our bicubic (%.3f/255)", filepath.Base(p), o, mean)
				}
			}
			if mean > 2 {
				t.Errorf("%s %v: mean difference from torchvision %.3f/255 (> 2/255), worst %.1f", filepath.Base(p), c.args, mean, worst)
			} else {
				t.Logf("%s %v: mean difference from torchvision %.3f/255, worst %.1f", filepath.Base(p), c.args, mean, worst)
			}
		}
	}
}

func TestCropDistribution(t *testing.T) {
	tf := NewTrainTransform(224)
	r := rand.New(rand.NewPCG(1, 2))
	const n = 20000
	var logRatioSum, areaSum float64
	fallbacks := 0
	for i := 0; i < n; i++ {
		x, y, w, h := tf.Crop(400, 400, r)
		if x < 0 || y < 0 || x+w > 400 || y+h > 400 || w < 1 || h < 1 {
			t.Fatalf("crop %d,%d %dx%d outside the image", x, y, w, h)
		}
		area := float64(w*h) / (400 * 400)
		ratio := float64(w) / float64(h)
		if w == 400 && h == 400 {
			fallbacks++
			continue
		}
		// rounding of w and h moves the area and ratio slightly off the range
		if area < 0.08*0.97 || area > 1.0001 || ratio < 0.75*0.97 || ratio > 4.0/3*1.03 {
			t.Fatalf("crop %dx%d: area %.4f ratio %.4f out of range", w, h, area, ratio)
		}
		logRatioSum += math.Log(ratio)
		areaSum += area
	}
	// Log-uniform aspect on a square image: the log ratio is symmetric
	// around 0 (rejection of crops that do not fit is symmetric too).
	if m := logRatioSum / float64(n-fallbacks); math.Abs(m) > 0.03 {
		t.Errorf("mean log aspect ratio %.4f, want near 0", m)
	}
	// Accepted areas: uniform on [0.08, 1] minus the large crops that do not
	// fit; their mean lies well inside (0.40, 0.54).
	if m := areaSum / float64(n-fallbacks); m < 0.40 || m > 0.54 {
		t.Errorf("mean area fraction %.3f", m)
	}
	// A very thin image forces the fallback: center crop at the ratio bound.
	x, y, w, h := tf.Crop(1000, 20, r)
	if w != int(math.RoundToEven(20*4.0/3)) || h != 20 || x != (1000-w)/2 || y != 0 {
		t.Errorf("fallback crop %d,%d %dx%d", x, y, w, h)
	}
}

func TestDrawStatistics(t *testing.T) {
	tf := NewTrainTransform(224)
	r := rand.New(rand.NewPCG(3, 4))
	const n = 20000
	flips := 0
	var light [3]float64
	var light2 [3]float64
	minB, maxB := 2.0, 0.0
	for i := 0; i < n; i++ {
		d := tf.Draw(256, 256, r)
		if d.Flip {
			flips++
		}
		for _, f := range []float64{d.Brightness, d.Saturation, 1 + d.HueAngle} {
			minB, maxB = math.Min(minB, f), math.Max(maxB, f)
		}
		for c := 0; c < 3; c++ {
			light[c] += d.Lighting[c]
			light2[c] += d.Lighting[c] * d.Lighting[c]
		}
	}
	sigma := math.Sqrt(n * 0.25)
	if math.Abs(float64(flips)-n/2) > 3*sigma {
		t.Errorf("%d flips of %d, want %d +- %.0f", flips, n, n/2, 3*sigma)
	}
	if minB < 0.6 || maxB > 1.4 || minB > 0.61 || maxB < 1.39 {
		t.Errorf("jitter factors span [%.3f, %.3f], want [0.6, 1.4]", minB, maxB)
	}
	// PCA noise: zero mean; the variance of channel c is
	// sum_k (V[c][k] * 0.1 * lambda_k * 255)^2.
	for c := 0; c < 3; c++ {
		var want float64
		for k := 0; k < 3; k++ {
			v := pcaEigvec[c][k] * 0.1 * pcaEigval[k] * 255
			want += v * v
		}
		mean := light[c] / n
		variance := light2[c]/n - mean*mean
		if math.Abs(mean) > 4*math.Sqrt(want/n) || math.Abs(variance-want)/want > 0.05 {
			t.Errorf("lighting channel %d: mean %.4f variance %.4f, want 0 and %.4f", c, mean, variance, want)
		}
	}
}

// With neutral choices the transform is a resize and the seed's exact
// normalization: (pixel - mean) / std per channel.
func TestNormalizationConstants(t *testing.T) {
	img := &RGB{W: 4, H: 4, Pix: make([]uint8, 48)}
	for i := 0; i < 16; i++ {
		img.Pix[3*i], img.Pix[3*i+1], img.Pix[3*i+2] = 200, 100, 50
	}
	tf := NewTrainTransform(4)
	dst := make([]float32, 48)
	d := Draw{X: 0, Y: 0, W: 4, H: 4, Brightness: 1, Saturation: 1}
	if err := tf.ApplyDraw(img, d, dst); err != nil {
		t.Fatal(err)
	}
	want := []float64{(200 - 123.68) / 58.393, (100 - 116.779) / 57.12, (50 - 103.939) / 57.375}
	for c := 0; c < 3; c++ {
		for i := 0; i < 16; i++ {
			if math.Abs(float64(dst[c*16+i])-want[c]) > 5e-5 { // float32 arithmetic
				t.Fatalf("channel %d: %g, want %g", c, dst[c*16+i], want[c])
			}
		}
	}
	// Saturation 0 gives the luma gray in every channel; brightness 0.5 halves.
	d.Saturation, d.Brightness = 0, 0.5
	tf.ApplyDraw(img, d, dst)
	gray := 0.5 * (0.299*200 + 0.587*100 + 0.114*50)
	for c := 0; c < 3; c++ {
		if got := float64(dst[c*16])*float64(Std[c]) + float64(Mean[c]); math.Abs(got-gray) > 1e-3 {
			t.Errorf("channel %d after saturation 0, brightness 0.5: %g, want %g", c, got, gray)
		}
	}
	if m := hue3(0); math.Abs(m[0][0]-1) > 1e-12 || math.Abs(m[1][2]) > 1e-12 || math.Abs(m[2][0]) > 1e-12 {
		t.Errorf("zero hue rotation is not the identity: %v", m)
	}
	// A hue rotation keeps a gray pixel gray.
	d = Draw{W: 4, H: 4, Brightness: 1, Saturation: 1, HueAngle: 0.4}
	for i := range img.Pix {
		img.Pix[i] = 90
	}
	tf.ApplyDraw(img, d, dst)
	for c := 0; c < 3; c++ {
		if got := float64(dst[c*16])*float64(Std[c]) + float64(Mean[c]); math.Abs(got-90) > 0.1 {
			t.Errorf("hue rotation changed gray to %g in channel %d", got, c)
		}
	}
}

func TestBadImages(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.jpg")
	writeImage(t, good, testImage(64, 48, 9))
	b, _ := os.ReadFile(good)
	cases := map[string][]byte{"empty.jpg": nil, "truncated.jpg": b[:len(b)/3], "text.png": []byte("not an image at all")}
	for name, data := range cases {
		p := filepath.Join(dir, name)
		os.WriteFile(p, data, 0o644)
		if _, err := DecodeFile(p); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := DecodeFile(filepath.Join(dir, "missing.jpg")); err == nil {
		t.Error("missing file decoded")
	}
}

func TestOpenSplits(t *testing.T) {
	root := t.TempDir()
	mk := func(split, class string, n int) {
		d := filepath.Join(root, split, class)
		os.MkdirAll(d, 0o755)
		for i := 0; i < n; i++ {
			writeImage(t, filepath.Join(d, fmt.Sprintf("%d.jpg", i)), testImage(40, 40, uint64(i)))
		}
	}
	mk("train", "b", 2)
	mk("train", "a", 3)
	mk("val", "a", 1)
	mk("val", "b", 1)
	os.WriteFile(filepath.Join(root, "train", "a", "notes.txt"), []byte("x"), 0o644)
	train, val, err := OpenSplits(root)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(train.Classes, ",") != "a,b" || len(train.Samples) != 5 || len(val.Samples) != 2 || train.Samples[0].Label != 0 || train.Samples[4].Label != 1 {
		t.Errorf("train %v %d, val %d", train.Classes, len(train.Samples), len(val.Samples))
	}
	mk("val", "c", 1)
	if _, _, err := OpenSplits(root); err == nil || !strings.Contains(err.Error(), "classes") {
		t.Errorf("mismatched classes: %v", err)
	}
	os.MkdirAll(filepath.Join(root, "train", "d"), 0o755)
	if _, err := OpenFolder(filepath.Join(root, "train")); err == nil || !strings.Contains(err.Error(), "no .jpg") {
		t.Errorf("empty class: %v", err)
	}
	if _, err := OpenFolder(filepath.Join(root, "nope")); err == nil {
		t.Error("missing folder opened")
	}
}

func TestYCbCrMatchesStdlib(t *testing.T) {
	for y := 0; y < 256; y++ {
		for cb := 0; cb < 256; cb++ {
			for cr := 0; cr < 256; cr++ {
				r, g, b := ycbcrToRGB(uint8(y), uint8(cb), uint8(cr))
				wr, wg, wb := color.YCbCrToRGB(uint8(y), uint8(cb), uint8(cr))
				if r != wr || g != wg || b != wb {
					t.Fatalf("YCbCr(%d,%d,%d): %d,%d,%d want %d,%d,%d", y, cb, cr, r, g, b, wr, wg, wb)
				}
			}
		}
	}
}

// Go's decoding path (the fallback, and the decoder of -tags noturbo)
// matches libjpeg-turbo's within a level on average: same fancy chroma
// upsampling, slightly different IDCT rounding.
func TestGoDecoderMatchesTurbo(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.jpg")
	writeImage(t, p, testImage(333, 217, 7))
	b, _ := os.ReadFile(p)
	fast, err := decodeJPEGFast(b)
	if err != nil {
		t.Skipf("built without libjpeg-turbo: %v", err)
	}
	slow, err := decodeGo(b)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for i := range fast.Pix {
		sum += math.Abs(float64(fast.Pix[i]) - float64(slow.Pix[i]))
	}
	if mean := sum / float64(len(fast.Pix)); mean > 1 {
		t.Errorf("Go and libjpeg-turbo decodes differ by %.3f levels on average", mean)
	} else {
		t.Logf("Go and libjpeg-turbo decodes differ by %.3f levels on average", mean)
	}
}

// The random crop is resampled from the crop's own pixels, as torchvision's
// crop-then-resize is (no filter taps outside the box, edges included).
func TestCropMatchesPIL(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.png")
	writeImage(t, src, testImage(300, 200, 11))
	img, err := DecodeFile(src)
	if err != nil {
		t.Fatal(err)
	}
	boxes := [][4]int{{10, 20, 150, 100}, {0, 0, 300, 200}, {250, 150, 40, 50}, {37, 11, 61, 170}}
	var lines []string
	for _, b := range boxes {
		lines = append(lines, fmt.Sprintf("%s %d %d %d %d 64", src, b[0], b[1], b[2], b[3]))
	}
	bf := filepath.Join(dir, "boxes.txt")
	os.WriteFile(bf, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	out := t.TempDir()
	testutil.RunOracle(t, "tv_crop.py", out, bf)
	for i, b := range boxes {
		px := resample(Bilinear, img, float64(b[0]), float64(b[1]), float64(b[0]+b[2]), float64(b[1]+b[3]), 64, 64, 0, 0, 64, 64)
		want := testutil.ReadFloats(t, filepath.Join(out, fmt.Sprintf("%d.bin", i)))
		var sum, worst float64
		for j, v := range *px {
			d := math.Abs(float64(v) - float64(want[j]))
			sum += d
			worst = math.Max(worst, d)
		}
		scratch.Put(px)
		if mean := sum / float64(len(want)); mean > 0.6 || worst > 1.5 {
			t.Errorf("box %v: differs from PIL's crop+resize by %.3f on average, %.2f at worst", b, mean, worst)
		}
	}
}

// Aspect ratios of crops that always fit are log-uniform: ten equal bins of
// log(w/h) over [log 3/4, log 4/3] each get a tenth of the draws.
func TestCropAspectLogUniform(t *testing.T) {
	tf := NewTrainTransform(224)
	tf.ScaleMax = 0.3 // every crop fits a square image
	r := rand.New(rand.NewPCG(7, 7))
	const n = 50000
	var bins [10]int
	lo, hi := math.Log(3.0/4), math.Log(4.0/3)
	for i := 0; i < n; i++ {
		_, _, w, h := tf.Crop(5000, 5000, r)
		b := int(10 * (math.Log(float64(w)/float64(h)) - lo) / (hi - lo))
		bins[min(max(b, 0), 9)]++
	}
	sigma := math.Sqrt(n * 0.1 * 0.9)
	for i, c := range bins {
		if math.Abs(float64(c)-n/10) > 4*sigma {
			t.Errorf("bin %d holds %d of %d draws, want %d +- %.0f (log-uniform aspect)", i, c, n, n/10, 4*sigma)
		}
	}
}

func TestPaletteTransparencyKeepsColour(t *testing.T) {
	pal := image.NewPaletted(image.Rect(0, 0, 2, 1), color.Palette{color.NRGBA{217, 219, 206, 0}, color.NRGBA{10, 20, 30, 255}})
	pal.SetColorIndex(1, 0, 1)
	p := filepath.Join(t.TempDir(), "p.png")
	writeImage(t, p, pal)
	img, err := DecodeFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := img.Pix[:6]; got[0] != 217 || got[1] != 219 || got[2] != 206 || got[3] != 10 {
		t.Errorf("palette pixels %v, want the transparent entry's colour (217,219,206) then (10,20,30)", got)
	}
}

func TestSymlinkedClassFolders(t *testing.T) {
	real := t.TempDir()
	for _, c := range []string{"a", "b"} {
		os.MkdirAll(filepath.Join(real, c), 0o755)
		writeImage(t, filepath.Join(real, c, "x.png"), testImage(40, 40, 1))
	}
	root := t.TempDir()
	os.Symlink(filepath.Join(real, "a"), filepath.Join(root, "a"))
	os.Symlink(filepath.Join(real, "b"), filepath.Join(root, "b"))
	d, err := OpenFolder(root)
	if err != nil || len(d.Classes) != 2 || len(d.Samples) != 2 {
		t.Fatalf("linked class folders: %v %+v", err, d)
	}
}
