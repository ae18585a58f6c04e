package models

import (
	"fmt"
	"strconv"
	"strings"
)

// Preprocessing is what a classifier expects of its input images, as its
// metadata states it (MetaMean, MetaStd, MetaCropPct, MetaInterpolation).
type Preprocessing struct {
	// Mean and Std normalize each RGB channel: (pixel - Mean) / Std, with
	// pixels on the 0-255 scale.
	Mean, Std [3]float32
	// CropPct is the validation crop's share of the resized shorter side:
	// resize that side to size/CropPct, then center-crop size x size.
	CropPct float64
	// Interpolation is the resampling filter, "bilinear" or "bicubic".
	Interpolation string
}

// Validation defaults of ortrain's models (data.EvalTransform's; a test
// keeps them equal).
const (
	CropPct       = 0.875 // 224/256
	Interpolation = "bilinear"
)

// DefaultPreprocessing is the seed's: ImageNet's mean and standard
// deviation, resize to 256 and crop 224 (at that size), bilinear.
func DefaultPreprocessing() Preprocessing {
	return Preprocessing{Mean: Mean, Std: Std, CropPct: CropPct, Interpolation: Interpolation}
}

// Metadata is p as model metadata entries.
func (p Preprocessing) Metadata() [][2]string {
	return [][2]string{
		{MetaMean, formatTriple(p.Mean)},
		{MetaStd, formatTriple(p.Std)},
		{MetaCropPct, strconv.FormatFloat(p.CropPct, 'g', -1, 64)},
		{MetaInterpolation, p.Interpolation},
	}
}

// String is a one-line description, such as "mean 123.68,116.779,103.939,
// std 58.393,57.12,57.375, crop 0.875, bilinear".
func (p Preprocessing) String() string {
	return fmt.Sprintf("mean %s, std %s, crop %g, %s", formatTriple(p.Mean), formatTriple(p.Std), p.CropPct, p.Interpolation)
}

// PreprocessingFromMetadata reads a model's preprocessing from its metadata;
// entries it lacks keep DefaultPreprocessing's values. It also returns the
// keys it found, so that a caller can say what came from where. A present
// but malformed entry is an error.
func PreprocessingFromMetadata(md map[string]string) (Preprocessing, []string, error) {
	p := DefaultPreprocessing()
	var found []string
	for _, key := range []string{MetaMean, MetaStd, MetaCropPct, MetaInterpolation} {
		v, ok := md[key]
		if !ok {
			continue
		}
		found = append(found, key)
		var err error
		switch key {
		case MetaMean:
			p.Mean, err = ParseTriple(v, false)
		case MetaStd:
			p.Std, err = ParseTriple(v, true)
		case MetaCropPct:
			p.CropPct, err = ParseCropPct(v)
		case MetaInterpolation:
			p.Interpolation, err = ParseInterpolation(v)
		}
		if err != nil {
			return p, found, fmt.Errorf("metadata %s: %w", key, err)
		}
	}
	return p, found, nil
}

// ParseTriple reads three comma-separated numbers, one per RGB channel;
// positive requires them above 0 (a standard deviation).
func ParseTriple(s string, positive bool) ([3]float32, error) {
	var out [3]float32
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return out, fmt.Errorf("%q: want three comma-separated numbers (R,G,B)", s)
	}
	for i, p := range parts {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 32)
		if err != nil || v != v || v > 1e30 || v < -1e30 {
			return out, fmt.Errorf("%q: %q is not a number", s, p)
		}
		if positive && v <= 0 {
			return out, fmt.Errorf("%q: %q must be above 0", s, p)
		}
		out[i] = float32(v)
	}
	return out, nil
}

// ParseCropPct reads a crop share in (0, 1].
func ParseCropPct(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || !(v > 0 && v <= 1) {
		return 0, fmt.Errorf("%q: want a crop share in (0, 1], such as 0.875", s)
	}
	return v, nil
}

// ParseInterpolation reads a resampling filter name.
func ParseInterpolation(s string) (string, error) {
	switch s = strings.ToLower(strings.TrimSpace(s)); s {
	case "bilinear", "bicubic":
		return s, nil
	}
	return "", fmt.Errorf("%q: want bilinear or bicubic", s)
}

func formatTriple(v [3]float32) string {
	parts := make([]string, 3)
	for i, x := range v {
		parts[i] = strconv.FormatFloat(float64(x), 'g', -1, 32)
	}
	return strings.Join(parts, ",")
}
