package data

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
)

// RGB is an 8-bit RGB image, pixels row-major and interleaved.
type RGB struct {
	W, H int
	Pix  []uint8 // len 3*W*H
}

// MaxPixels bounds the images the pipeline decodes (a 16k x 16k photo);
// larger ones are treated as bad input rather than exhausting memory.
const MaxPixels = 1 << 28

// DecodeFile reads a JPEG or PNG file (by content, not name) as RGB.
// Grayscale, CMYK, paletted, 16-bit and alpha images are converted to 8-bit
// RGB as PIL's convert("RGB") does: alpha dropped (a transparent palette
// entry keeps its colour). 16-bit values keep their high byte, where PIL 9
// clips 16-bit grayscale to 255: scaling is the faithful conversion.
func DecodeFile(path string) (*RGB, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	img, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	return img, nil
}

// Decode decodes JPEG or PNG bytes as RGB. JPEGs go to libjpeg-turbo first
// (see turbo.go); what it refuses goes to Go's decoders, whose error is
// reported when neither can read the file.
func Decode(b []byte) (*RGB, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("empty file")
	}
	if len(b) > 3 && b[0] == 0xff && b[1] == 0xd8 {
		if img, err := decodeJPEGFast(b); err == nil {
			return img, nil
		}
	}
	return decodeGo(b)
}

// decodeGo decodes with Go's image/jpeg and image/png.
func decodeGo(b []byte) (*RGB, error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || int64(cfg.Width)*int64(cfg.Height) > MaxPixels {
		return nil, fmt.Errorf("%s image of %dx%d pixels is empty or too large", format, cfg.Width, cfg.Height)
	}
	var img image.Image
	switch format {
	case "jpeg":
		img, err = jpeg.Decode(bytes.NewReader(b))
	case "png":
		img, err = png.Decode(bytes.NewReader(b))
	default:
		return nil, fmt.Errorf("unsupported image format %s", format)
	}
	if err != nil {
		return nil, err
	}
	return toRGB(img), nil
}

func toRGB(img image.Image) *RGB {
	r := img.Bounds()
	w, h := r.Dx(), r.Dy()
	out := &RGB{W: w, H: h, Pix: make([]uint8, 3*w*h)}
	p := out.Pix
	switch m := img.(type) {
	case *image.YCbCr:
		if cb, cr, ok := fancyChroma(m); ok {
			for y := 0; y < h; y++ {
				yrow := m.Y[y*m.YStride : y*m.YStride+w]
				for x, yy := range yrow {
					i := y*w + x
					o := p[3*i : 3*i+3]
					o[0], o[1], o[2] = ycbcrToRGB(yy, cb[i], cr[i])
				}
			}
			break
		}
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				yi := m.YOffset(r.Min.X+x, r.Min.Y+y)
				ci := m.COffset(r.Min.X+x, r.Min.Y+y)
				cr, cg, cb := color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
				o := 3 * (y*w + x)
				p[o], p[o+1], p[o+2] = cr, cg, cb
			}
		}
	case *image.Gray:
		for y := 0; y < h; y++ {
			row := m.Pix[y*m.Stride : y*m.Stride+w]
			for x, v := range row {
				o := 3 * (y*w + x)
				p[o], p[o+1], p[o+2] = v, v, v
			}
		}
	case *image.NRGBA:
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				i := y*m.Stride + 4*x
				o := 3 * (y*w + x)
				p[o], p[o+1], p[o+2] = m.Pix[i], m.Pix[i+1], m.Pix[i+2]
			}
		}
	case *image.Paletted:
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				c := color.NRGBAModel.Convert(m.Palette[m.ColorIndexAt(r.Min.X+x, r.Min.Y+y)]).(color.NRGBA)
				if rgba, ok := m.Palette[m.ColorIndexAt(r.Min.X+x, r.Min.Y+y)].(color.RGBA); ok && rgba.A == 0 {
					c = color.NRGBA{rgba.R, rgba.G, rgba.B, 0} // PNG's tRNS keeps the RGB of a clear entry
				}
				o := 3 * (y*w + x)
				p[o], p[o+1], p[o+2] = c.R, c.G, c.B
			}
		}
	case *image.RGBA:
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				i := y*m.Stride + 4*x
				o := 3 * (y*w + x)
				p[o], p[o+1], p[o+2] = m.Pix[i], m.Pix[i+1], m.Pix[i+2]
			}
		}
	default:
		// Paletted, 16-bit, CMYK and the rest: through the colour model,
		// non-premultiplied so that alpha is dropped, not composited.
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				c := color.NRGBA64Model.Convert(img.At(r.Min.X+x, r.Min.Y+y)).(color.NRGBA64)
				o := 3 * (y*w + x)
				p[o], p[o+1], p[o+2] = uint8(c.R>>8), uint8(c.G>>8), uint8(c.B>>8)
			}
		}
	}
	return out
}

// fancyChroma upsamples 4:2:0 and 4:2:2 chroma to full resolution with the
// triangle filter of libjpeg's "fancy upsampling" (its default, which PIL
// and so torchvision decode with), in libjpeg-turbo's integer arithmetic, so
// that our pixels match theirs; Go's decoder would replicate chroma samples.
// It returns ok=false for other layouts (decoded with replication).
func fancyChroma(m *image.YCbCr) (cb, cr []uint8, ok bool) {
	r := m.Bounds()
	w, h := r.Dx(), r.Dy()
	if r.Min.X != 0 || r.Min.Y != 0 {
		return nil, nil, false
	}
	switch m.SubsampleRatio {
	case image.YCbCrSubsampleRatio420, image.YCbCrSubsampleRatio422:
	default:
		return nil, nil, false
	}
	cw := (w + 1) / 2
	chh := h
	if m.SubsampleRatio == image.YCbCrSubsampleRatio420 {
		chh = (h + 1) / 2
	}
	up := func(plane []uint8) []uint8 {
		out := make([]uint8, w*h)
		row := make([]int, cw)
		for y := 0; y < h; y++ {
			// Vertical: the nearer chroma row weighs 3, the other 1
			// (4:2:0); 4:2:2 rows map one to one.
			if m.SubsampleRatio == image.YCbCrSubsampleRatio420 {
				c0 := y / 2
				c1 := c0 - 1
				if y%2 == 1 {
					c1 = c0 + 1
				}
				c1 = min(max(c1, 0), chh-1)
				for x := 0; x < cw; x++ {
					row[x] = 3*int(plane[c0*m.CStride+x]) + int(plane[c1*m.CStride+x])
				}
			} else {
				for x := 0; x < cw; x++ {
					row[x] = 4 * int(plane[y*m.CStride+x])
				}
			}
			// Horizontal, with libjpeg-turbo's rounding biases (8 and 7 of 16).
			o := out[y*w : (y+1)*w]
			put := func(i, v int) {
				if i < w {
					o[i] = uint8(v >> 4)
				}
			}
			if cw == 1 {
				put(0, row[0]*4+8)
				put(1, row[0]*4+7)
				continue
			}
			put(0, row[0]*4+8)
			put(1, row[0]*3+row[1]+7)
			for x := 1; x < cw-1; x++ {
				put(2*x, row[x]*3+row[x-1]+8)
				put(2*x+1, row[x]*3+row[x+1]+7)
			}
			put(2*(cw-1), row[cw-1]*3+row[cw-2]+8)
			put(2*(cw-1)+1, row[cw-1]*4+7)
		}
		return out
	}
	return up(m.Cb), up(m.Cr), true
}

// ycbcrToRGB is JFIF's conversion in the 16.16 fixed point of
// color.YCbCrToRGB (same results), written out so that it inlines.
func ycbcrToRGB(y, cb, cr uint8) (uint8, uint8, uint8) {
	yy1 := int32(y) * 0x10101
	cb1 := int32(cb) - 128
	cr1 := int32(cr) - 128
	r := yy1 + 91881*cr1
	g := yy1 - 22554*cb1 - 46802*cr1
	b := yy1 + 116130*cb1
	return clamp16(r), clamp16(g), clamp16(b)
}

func clamp16(v int32) uint8 {
	if uint32(v)&0xff000000 == 0 {
		return uint8(v >> 16)
	}
	if v < 0 {
		return 0
	}
	return 255
}
