package models

import (
	"math"
	"testing"
)

// Reference counts: torchvision (resnet18 ... resnet152) and timm (resnet50d).
func TestParamCounts(t *testing.T) {
	want := map[string]int64{
		"resnet18":  11_689_512,
		"resnet34":  21_797_672,
		"resnet50":  25_557_032,
		"resnet101": 44_549_160,
		"resnet152": 60_192_808,
		"resnet50b": 25_557_032,
		"resnet50d": 25_576_264,
	}
	for name, n := range want {
		m, err := Build(Options{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if got := m.NumParams(); got != n {
			t.Errorf("%s: %d parameters, want %d", name, got, n)
		}
	}
}

func TestMACs(t *testing.T) {
	// torchvision's resnet50 (v1.5, which is our resnet50b) reports 4.09 GMACs
	// at 224, timm's resnet50d 4.35 G, and the paper 3.86 GFLOPs for the
	// original ResNet-50 (our resnet50).
	for _, c := range []struct {
		name string
		want float64
	}{{"resnet50", 3.86e9}, {"resnet50b", 4.09e9}, {"resnet50d", 4.35e9}} {
		m, err := Build(Options{Name: c.name})
		if err != nil {
			t.Fatal(err)
		}
		if got := float64(m.MACs()); math.Abs(got-c.want)/c.want > 0.01 {
			t.Errorf("%s: %.4g MACs, want %.4g +-1%%", c.name, got, c.want)
		}
	}
}
