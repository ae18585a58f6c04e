package data

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sort"
	"strings"
	"sync"
)

// Batch is one batch of normalized CHW images and their labels. N is the
// number of valid samples (smaller than the capacity only for the last
// validation batch).
type Batch struct {
	Index  int // batch number within the epoch
	N      int
	Images []float32 // capacity x 3 x Size x Size
	Labels []int
	// Unreadable lists the files found unreadable while filling this batch
	// (each file once per epoch). Training replaced them with the next
	// readable image of the epoch; evaluation skipped them.
	Unreadable []string
	Err        error
	release    func()
}

// Release hands the batch's buffers back to the loader.
func (b *Batch) Release() {
	if b.release != nil {
		b.release()
	}
}

// Loader turns a dataset into batches on all cores.
type Loader struct {
	Data  *Dataset
	Batch int
	Size  int
	Train bool // random order and TrainTransform; else file order and EvalTransform
	Aug   TrainTransform
	// Eval is the validation transform's settings (its Size is the
	// loader's); the zero value is the default pipeline.
	Eval    EvalTransform
	Workers int // decoding goroutines (default: one per core)
	Seed    uint64
	// Prefetch is how many batches are prepared ahead (default 2).
	Prefetch int
	// BadLimit is the fraction of unreadable images an epoch tolerates
	// before failing (default 0.01).
	BadLimit float64
}

// Batches is the number of batches in an epoch: training drops a last
// partial batch (the train step has a fixed batch size, as timm's loader
// drop_last); evaluation keeps it.
func (l *Loader) Batches() int {
	n := len(l.Data.Samples)
	if l.Train {
		return n / l.Batch
	}
	return (n + l.Batch - 1) / l.Batch
}

// Order is the sample order of an epoch: a permutation drawn from (seed,
// epoch) for training, file order for evaluation.
func (l *Loader) Order(epoch int) []int {
	n := len(l.Data.Samples)
	if !l.Train {
		order := make([]int, n)
		for i := range order {
			order[i] = i
		}
		return order
	}
	return rand.New(rand.NewPCG(l.Seed, uint64(epoch)<<1|1)).Perm(n)
}

// sampleRNG is the random stream of the sample at a position of an epoch;
// it depends on nothing else, so results do not depend on worker count.
func (l *Loader) sampleRNG(epoch, pos int) *rand.Rand {
	return rand.New(rand.NewPCG(l.Seed^0x9e3779b97f4a7c15, uint64(epoch)<<32|uint64(pos)))
}

// Epoch starts producing the batches of an epoch from batch start on, in
// order, on a channel that closes at the end or when ctx is done. Every
// batch must be released.
func (l *Loader) Epoch(ctx context.Context, epoch, start int) (<-chan *Batch, error) {
	if l.Batch < 1 || l.Size < 1 {
		return nil, fmt.Errorf("loader: bad batch %d or size %d", l.Batch, l.Size)
	}
	if l.Train && len(l.Data.Samples) < l.Batch {
		return nil, fmt.Errorf("loader: %s has %d images, fewer than one batch of %d", l.Data.Root, len(l.Data.Samples), l.Batch)
	}
	workers := l.Workers
	if workers < 1 {
		workers = runtime.NumCPU()
	}
	prefetch := l.Prefetch
	if prefetch < 1 {
		prefetch = 2
	}
	badLimit := l.BadLimit
	if badLimit == 0 {
		badLimit = 0.01
	}
	order := l.Order(epoch)
	nb := l.Batches()
	out := make(chan *Batch, prefetch)
	free := make(chan *Batch, prefetch+1)
	per := 3 * l.Size * l.Size
	for i := 0; i < prefetch+1; i++ {
		free <- &Batch{Images: make([]float32, l.Batch*per), Labels: make([]int, l.Batch)}
	}
	go func() {
		defer close(out)
		bad := map[int]bool{} // positions found unreadable this epoch
		var mu sync.Mutex
		seen := 0
		for b := start; b < nb; b++ {
			var buf *Batch
			select {
			case buf = <-free:
			case <-ctx.Done():
				return
			}
			buf.Index, buf.Unreadable, buf.Err = b, buf.Unreadable[:0], nil
			buf.release = func(x *Batch) func() { return func() { free <- x } }(buf)
			lo := b * l.Batch
			hi := min(lo+l.Batch, len(order))
			type job struct{ slot, pos int }
			jobs := make(chan job)
			var wg sync.WaitGroup
			var firstErr error
			valid := make([]bool, hi-lo)
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := range jobs {
						ok, newBad, err := l.fill(epoch, j.pos, order, buf.Images[j.slot*per:(j.slot+1)*per], &buf.Labels[j.slot], bad, &mu)
						mu.Lock()
						if err != nil && firstErr == nil {
							firstErr = err
						}
						buf.Unreadable = append(buf.Unreadable, newBad...)
						valid[j.slot] = ok
						mu.Unlock()
					}
				}()
			}
			for pos := lo; pos < hi; pos++ {
				jobs <- job{slot: pos - lo, pos: pos}
			}
			close(jobs)
			wg.Wait()
			// Evaluation skips unreadable images: compact the batch.
			n := 0
			for slot, ok := range valid {
				if !ok {
					continue
				}
				if slot != n {
					copy(buf.Images[n*per:(n+1)*per], buf.Images[slot*per:(slot+1)*per])
					buf.Labels[n] = buf.Labels[slot]
				}
				n++
			}
			buf.N = n
			seen += hi - lo
			mu.Lock()
			nbad := len(bad)
			mu.Unlock()
			if firstErr == nil && float64(nbad) > badLimit*float64(len(order)) && nbad > 0 {
				firstErr = fmt.Errorf("loader: %d unreadable images in %s so far this epoch (%s), more than %.1f%% of its %d images",
					nbad, l.Data.Root, firstPaths(bad, order, l.Data), 100*badLimit, len(order))
			}
			buf.Err = firstErr
			select {
			case out <- buf:
			case <-ctx.Done():
				return
			}
			if firstErr != nil {
				return
			}
		}
	}()
	return out, nil
}

// firstPaths names up to three unreadable files.
func firstPaths(bad map[int]bool, order []int, d *Dataset) string {
	var ps []int
	for p := range bad {
		ps = append(ps, p)
	}
	sort.Ints(ps)
	var names []string
	for _, p := range ps[:min(3, len(ps))] {
		names = append(names, d.Samples[order[p]].Path)
	}
	if len(ps) > 3 {
		names = append(names, "...")
	}
	return strings.Join(names, ", ")
}

// fill decodes and transforms the sample at an epoch position into dst.
// An unreadable image is recorded in bad (and returned, the first time);
// training then uses the next readable image of the epoch order in its place
// (deterministically: which files are unreadable does not depend on timing),
// evaluation skips it.
func (l *Loader) fill(epoch, pos int, order []int, dst []float32, label *int, bad map[int]bool, mu *sync.Mutex) (ok bool, newBad []string, err error) {
	n := len(order)
	for k := 0; k < n; k++ {
		p := (pos + k) % n
		mu.Lock()
		known := bad[p]
		mu.Unlock()
		if known {
			if !l.Train {
				return false, newBad, nil
			}
			continue
		}
		s := l.Data.Samples[order[p]]
		img, derr := DecodeFile(s.Path)
		if derr != nil {
			mu.Lock()
			if !bad[p] {
				bad[p] = true
				newBad = append(newBad, s.Path)
			}
			mu.Unlock()
			if !l.Train {
				return false, newBad, nil
			}
			continue
		}
		if l.Train {
			err = l.Aug.Apply(img, l.sampleRNG(epoch, pos), dst)
		} else {
			e := l.Eval
			e.Size = l.Size
			err = e.Apply(img, dst)
		}
		if err != nil {
			return false, newBad, fmt.Errorf("%s: %w", s.Path, err)
		}
		*label = s.Label
		return true, newBad, nil
	}
	return false, newBad, fmt.Errorf("loader: no readable image in %s", l.Data.Root)
}
