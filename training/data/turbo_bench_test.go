//go:build cgo && !noturbo

package data

import (
	"bytes"
	"image/jpeg"
	"testing"
)

func largeJPEG(b *testing.B) []byte {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, testImage(1600, 1200, 1), &jpeg.Options{Quality: 90}); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// What DCT-domain downscaling saves: `go test ./training/data -bench
// JPEGScaling -run ^$`.
func BenchmarkJPEGScaling(b *testing.B) {
	for _, c := range []struct {
		name  string
		data  func(*testing.B) []byte
		denom int
	}{{"224px/full", benchJPEG, 1}, {"1600px/full", largeJPEG, 1}, {"1600px/half", largeJPEG, 2}, {"1600px/quarter", largeJPEG, 4}} {
		b.Run(c.name, func(b *testing.B) {
			data := c.data(b)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := decodeJPEGScaled(data, c.denom); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("1600px/go", func(b *testing.B) {
		data := largeJPEG(b)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := decodeGo(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
