package data

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func makeFolder(t *testing.T, classes, per int, bad map[string]bool) *Dataset {
	t.Helper()
	root := t.TempDir()
	for c := 0; c < classes; c++ {
		dir := filepath.Join(root, fmt.Sprintf("class%d", c))
		os.MkdirAll(dir, 0o755)
		for i := 0; i < per; i++ {
			name := fmt.Sprintf("%d.jpg", i)
			p := filepath.Join(dir, name)
			if bad[fmt.Sprintf("class%d/%s", c, name)] {
				os.WriteFile(p, []byte("garbage"), 0o644)
				continue
			}
			writeImage(t, p, testImage(60+7*i, 50+5*c, uint64(c*100+i)))
		}
	}
	d, err := OpenFolder(root)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func collect(t *testing.T, l *Loader, epoch, start int) ([][]float32, [][]int, int) {
	t.Helper()
	ch, err := l.Epoch(context.Background(), epoch, start)
	if err != nil {
		t.Fatal(err)
	}
	var imgs [][]float32
	var labels [][]int
	replaced := 0
	for b := range ch {
		if b.Err != nil {
			t.Fatal(b.Err)
		}
		imgs = append(imgs, append([]float32{}, b.Images[:b.N*3*l.Size*l.Size]...))
		labels = append(labels, append([]int{}, b.Labels[:b.N]...))
		replaced += len(b.Unreadable)
		b.Release()
	}
	return imgs, labels, replaced
}

// Batches are the same whatever the worker count, a resumed epoch yields the
// remaining batches exactly, and unreadable images are replaced the same way.
func TestLoaderDeterministic(t *testing.T) {
	d := makeFolder(t, 3, 7, map[string]bool{"class1/3.jpg": true})
	base := Loader{Data: d, Batch: 4, Size: 32, Train: true, Aug: NewTrainTransform(32), Seed: 5, BadLimit: 0.2}
	a, b := base, base
	a.Workers, b.Workers = 1, 4
	ia, la, ra := collect(t, &a, 2, 0)
	ib, lb, rb := collect(t, &b, 2, 0)
	if len(ia) != 21/4 {
		t.Fatalf("%d batches, want %d (last partial batch dropped)", len(ia), 21/4)
	}
	for i := range ia {
		if fmt.Sprint(la[i]) != fmt.Sprint(lb[i]) {
			t.Fatalf("batch %d labels differ: %v %v", i, la[i], lb[i])
		}
		for j := range ia[i] {
			if ia[i][j] != ib[i][j] {
				t.Fatalf("batch %d differs between 1 and 4 workers", i)
			}
		}
	}
	if ra != rb || ra != 1 {
		t.Errorf("unreadable %d and %d, want the same and 1 when the bad image is in the epoch", ra, rb)
	}
	ic, _, _ := collect(t, &b, 2, 3)
	if len(ic) != len(ia)-3 {
		t.Fatalf("resume from batch 3: %d batches", len(ic))
	}
	for j := range ic[0] {
		if ic[0][j] != ia[3][j] {
			t.Fatal("resumed batch differs")
		}
	}
	id, _, _ := collect(t, &b, 3, 0)
	same := true
	for j := range id[0] {
		same = same && id[0][j] == ia[0][j]
	}
	if same {
		t.Error("epochs 2 and 3 gave the same first batch")
	}
}

func TestLoaderEvalAndBadLimit(t *testing.T) {
	d := makeFolder(t, 2, 5, map[string]bool{"class0/1.jpg": true, "class1/4.jpg": true})
	l := Loader{Data: d, Batch: 4, Size: 24, Workers: 2, BadLimit: 0.5}
	_, labels, replaced := collect(t, &l, 0, 0)
	total := 0
	for _, ls := range labels {
		total += len(ls)
	}
	if len(labels) != 3 || total != 8 || replaced != 2 {
		t.Errorf("eval: %d batches, %d samples, %d skipped; want 3, 8, 2", len(labels), total, replaced)
	}
	// Half the images unreadable, 10% allowed: the epoch fails.
	worse := makeFolder(t, 2, 5, map[string]bool{"class0/0.jpg": true, "class0/1.jpg": true, "class0/2.jpg": true, "class1/3.jpg": true, "class1/4.jpg": true})
	l = Loader{Data: worse, Batch: 4, Size: 24, Workers: 2, Train: true, Aug: NewTrainTransform(24), BadLimit: 0.1}
	ch, err := l.Epoch(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var last error
	for b := range ch {
		if b.Err != nil {
			last = b.Err
		}
		b.Release()
	}
	if last == nil || !strings.Contains(last.Error(), "unreadable") {
		t.Errorf("50%% bad images with a 10%% limit: %v", last)
	}
}
