package data

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// Benchmarks of the pipeline's parts on a real 224px JPEG when one is at
// hand (../shared/data/imagenette, or $ORTRAIN_BENCH_JPEG); they skip
// otherwise. `go test ./training/data -bench . -run ^$`.
func benchJPEG(b *testing.B) []byte {
	p := os.Getenv("ORTRAIN_BENCH_JPEG")
	if p == "" {
		m, _ := filepath.Glob("../../../shared/data/imagenette/train/*/*.JPEG")
		if len(m) == 0 {
			b.Skip("no JPEG to benchmark on: set ORTRAIN_BENCH_JPEG")
		}
		p = m[0]
	}
	data, err := os.ReadFile(p)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

func BenchmarkDecode(b *testing.B) {
	data := benchJPEG(b)
	for i := 0; i < b.N; i++ {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTrainTransform(b *testing.B) {
	img, err := Decode(benchJPEG(b))
	if err != nil {
		b.Fatal(err)
	}
	tf := NewTrainTransform(224)
	dst := make([]float32, 3*224*224)
	r := rand.New(rand.NewPCG(1, 1))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tf.Apply(img, r, dst)
	}
}
