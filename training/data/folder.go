package data

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Sample is one image and its class index.
type Sample struct {
	Path  string
	Label int
}

// Dataset is an ImageFolder: a folder per class, classes sorted by name.
type Dataset struct {
	Root    string
	Classes []string
	Samples []Sample
}

// imageExts are the file extensions read as images (case-insensitive).
var imageExts = map[string]bool{".jpg": true, ".jpeg": true, ".png": true}

// OpenFolder scans root/<class>/<image>. Hidden files and folders are
// skipped; a class folder without images, or a root without class folders,
// is an error.
func OpenFolder(root string) (*Dataset, error) {
	st, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("dataset %s: %w", root, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("dataset %s: not a folder", root)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("dataset %s: %w", root, err)
	}
	d := &Dataset{Root: root}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		// os.Stat follows symbolic links: a linked class folder counts, as
		// in torchvision's ImageFolder.
		if st, err := os.Stat(filepath.Join(root, e.Name())); err == nil && st.IsDir() {
			d.Classes = append(d.Classes, e.Name())
		}
	}
	sort.Strings(d.Classes)
	if len(d.Classes) == 0 {
		return nil, fmt.Errorf("dataset %s: no class folders (want %s/<class>/<image>)", root, root)
	}
	for label, c := range d.Classes {
		files, err := os.ReadDir(filepath.Join(root, c))
		if err != nil {
			return nil, fmt.Errorf("dataset %s: %w", root, err)
		}
		n := 0
		for _, f := range files {
			if strings.HasPrefix(f.Name(), ".") || !imageExts[strings.ToLower(filepath.Ext(f.Name()))] {
				continue
			}
			if st, err := os.Stat(filepath.Join(root, c, f.Name())); err != nil || st.IsDir() {
				continue
			}
			d.Samples = append(d.Samples, Sample{Path: filepath.Join(root, c, f.Name()), Label: label})
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("dataset %s: class folder %s has no .jpg, .jpeg or .png images", root, c)
		}
	}
	return d, nil
}

// OpenSplits opens root/train and root/val, which must hold the same classes.
func OpenSplits(root string) (train, val *Dataset, err error) {
	if train, err = OpenFolder(filepath.Join(root, "train")); err != nil {
		return nil, nil, err
	}
	if val, err = OpenFolder(filepath.Join(root, "val")); err != nil {
		return nil, nil, err
	}
	if strings.Join(train.Classes, "\x00") != strings.Join(val.Classes, "\x00") {
		return nil, nil, fmt.Errorf("dataset %s: train has %d classes and val %d, or their names differ (first difference: %s)",
			root, len(train.Classes), len(val.Classes), firstDifference(train.Classes, val.Classes))
	}
	return train, val, nil
}

func firstDifference(a, b []string) string {
	for i := 0; i < len(a) || i < len(b); i++ {
		var x, y string
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			return fmt.Sprintf("train %q, val %q", x, y)
		}
	}
	return "none"
}
