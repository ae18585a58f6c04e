package training

import (
	"fmt"
	"strings"

	"github.com/ortrain/ortrain/models"
	"github.com/ortrain/ortrain/training/data"
)

// PreprocessOverrides are a user's settings of a classifier's validation
// preprocessing; nil and empty fields keep the model's.
type PreprocessOverrides struct {
	// Mean and Std per RGB channel on the 0-255 scale; a triple whose
	// values are all below 1 is read on the 0-1 scale (timm's and
	// torchvision's convention) and multiplied by 255.
	Mean, Std     *[3]float32
	CropPct       *float64
	Interpolation string
}

// EvalPreprocessing is the validation transform of a classifier whose
// metadata is md (models.PreprocessingFromMetadata; defaults where it says
// nothing) with the overrides applied, and a line saying what it is and
// where it came from.
func EvalPreprocessing(md map[string]string, o PreprocessOverrides) (data.EvalTransform, string, error) {
	p, found, err := models.PreprocessingFromMetadata(md)
	if err != nil {
		return data.EvalTransform{}, "", err
	}
	p, flags, err := o.Apply(p)
	if err != nil {
		return data.EvalTransform{}, "", err
	}
	interp, err := data.ParseInterp(p.Interpolation)
	if err != nil {
		return data.EvalTransform{}, "", err
	}
	var source string
	switch {
	case len(found) == 0 && len(flags) == 0:
		source = "the model states none: ImageNet's defaults"
	case len(found) == 0:
		source = "given: " + strings.Join(flags, ", ") + "; the rest ImageNet's defaults (the model states none)"
	case len(flags) == 0:
		source = "from the model's metadata"
	default:
		source = "given: " + strings.Join(flags, ", ") + "; the rest from the model's metadata"
	}
	t := data.EvalTransform{CropPct: p.CropPct, Interp: interp, Norm: data.Norm{Mean: p.Mean, Std: p.Std}}
	return t, fmt.Sprintf("preprocessing: %s (%s)", p, source), nil
}

// Apply is p with the overrides set, and the names of those that were.
func (o PreprocessOverrides) Apply(p models.Preprocessing) (models.Preprocessing, []string, error) {
	var flags []string
	if o.Mean != nil {
		p.Mean, flags = from01(*o.Mean), append(flags, "mean")
	}
	if o.Std != nil {
		for _, v := range o.Std {
			if !(v > 0) {
				return p, nil, fmt.Errorf("std %v: every value must be above 0", *o.Std)
			}
		}
		p.Std, flags = from01(*o.Std), append(flags, "std")
	}
	if o.CropPct != nil {
		if !(*o.CropPct > 0 && *o.CropPct <= 1) {
			return p, nil, fmt.Errorf("crop share %g is not in (0, 1]", *o.CropPct)
		}
		p.CropPct, flags = *o.CropPct, append(flags, "crop share")
	}
	if o.Interpolation != "" {
		var err error
		if p.Interpolation, err = models.ParseInterpolation(o.Interpolation); err != nil {
			return p, nil, err
		}
		flags = append(flags, "interpolation")
	}
	return p, flags, nil
}

// from01 multiplies a triple by 255 when every value is below 1: a mean or
// standard deviation on the 0-1 scale. (On the 0-255 scale no real model
// normalizes by a deviation below 1, and a mean below 1 is 0 within a
// pixel's rounding.)
func from01(v [3]float32) [3]float32 {
	for _, x := range v {
		if x >= 1 || x < 0 {
			return v
		}
	}
	return [3]float32{v[0] * 255, v[1] * 255, v[2] * 255}
}
