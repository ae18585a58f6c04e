package data

import (
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"image"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ortrain/ortrain/internal/atomicfile"
)

// FashionMNISTDir is where Debian's dataset-fashion-mnist package puts the
// idx files.
const FashionMNISTDir = "/usr/share/datasets/fashion-mnist"

// FashionMNISTClasses are the dataset's labels, as folder names.
var FashionMNISTClasses = []string{"0-tshirt-top", "1-trouser", "2-pullover", "3-dress", "4-coat",
	"5-sandal", "6-shirt", "7-sneaker", "8-bag", "9-ankle-boot"}

// PrepareFashionMNIST writes the first trainPerClass training and
// valPerClass test images of each class as 28x28 grayscale PNGs in the
// ImageFolder layout (dst/train/<class>/, dst/val/<class>/). It is
// idempotent: a folder prepared with the same counts is left as it is.
func PrepareFashionMNIST(src, dst string, trainPerClass, valPerClass int) error {
	marker := filepath.Join(dst, ".ortrain-prepared")
	want := fmt.Sprintf("fashion-mnist train=%d val=%d\n", trainPerClass, valPerClass)
	if b, err := os.ReadFile(marker); err == nil && string(b) == want {
		return nil
	}
	if trainPerClass < 1 || valPerClass < 1 || trainPerClass > 6000 || valPerClass > 1000 {
		return fmt.Errorf("fashion-mnist: want 1 to 6000 training and 1 to 1000 validation images per class")
	}
	for _, split := range []struct {
		prefix, name string
		per          int
	}{{"train", "train", trainPerClass}, {"t10k", "val", valPerClass}} {
		imgs, w, h, err := readIdxImages(filepath.Join(src, split.prefix+"-images-idx3-ubyte.gz"))
		if err != nil {
			return err
		}
		labels, err := readIdxLabels(filepath.Join(src, split.prefix+"-labels-idx1-ubyte.gz"))
		if err != nil {
			return err
		}
		if len(labels) != len(imgs) {
			return fmt.Errorf("fashion-mnist %s: %d images, %d labels", split.prefix, len(imgs), len(labels))
		}
		count := make([]int, len(FashionMNISTClasses))
		for i, pix := range imgs {
			l := int(labels[i])
			if l >= len(count) || count[l] >= split.per {
				continue
			}
			dir := filepath.Join(dst, split.name, FashionMNISTClasses[l])
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("fashion-mnist: %w", err)
			}
			var b strings.Builder
			g := &image.Gray{Pix: pix, Stride: w, Rect: image.Rect(0, 0, w, h)}
			if err := png.Encode(&b, g); err != nil {
				return err
			}
			// Plain writes: the marker, written last, says the folder is complete.
			if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(i)+".png"), []byte(b.String()), 0o644); err != nil {
				return fmt.Errorf("fashion-mnist: %w", err)
			}
			count[l]++
		}
	}
	return atomicfile.Write(marker, []byte(want))
}

func openGz(path string) (io.Reader, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("fashion-mnist: %w (install it with: sudo apt-get install dataset-fashion-mnist)", err)
	}
	z, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("fashion-mnist %s: %w", path, err)
	}
	return z, func() { z.Close(); f.Close() }, nil
}

func readIdxImages(path string) ([][]uint8, int, int, error) {
	r, done, err := openGz(path)
	if err != nil {
		return nil, 0, 0, err
	}
	defer done()
	var hdr [4]uint32
	if err := binary.Read(r, binary.BigEndian, &hdr); err != nil || hdr[0] != 0x803 || hdr[1] > 1<<20 || hdr[2] > 1024 || hdr[3] > 1024 {
		return nil, 0, 0, fmt.Errorf("fashion-mnist %s: not an idx3 image file", path)
	}
	n, h, w := int(hdr[1]), int(hdr[2]), int(hdr[3])
	all := make([]uint8, n*h*w)
	if _, err := io.ReadFull(r, all); err != nil {
		return nil, 0, 0, fmt.Errorf("fashion-mnist %s: %w", path, err)
	}
	out := make([][]uint8, n)
	for i := range out {
		out[i] = all[i*h*w : (i+1)*h*w]
	}
	return out, w, h, nil
}

func readIdxLabels(path string) ([]uint8, error) {
	r, done, err := openGz(path)
	if err != nil {
		return nil, err
	}
	defer done()
	var hdr [2]uint32
	if err := binary.Read(r, binary.BigEndian, &hdr); err != nil || hdr[0] != 0x801 || hdr[1] > 1<<20 {
		return nil, fmt.Errorf("fashion-mnist %s: not an idx1 label file", path)
	}
	out := make([]uint8, hdr[1])
	if _, err := io.ReadFull(r, out); err != nil {
		return nil, fmt.Errorf("fashion-mnist %s: %w", path, err)
	}
	return out, nil
}
