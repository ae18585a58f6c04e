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
	// Ranks and Rank shard an epoch for data parallelism: the loader makes
	// the batches whose index is Rank modulo Ranks (every one when Ranks
	// is below 2). Limit, when above 0, ends the epoch before batch Limit.
	Ranks, Rank, Limit int
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
	e := &epochRun{l: l, epoch: epoch, order: l.Order(epoch), per: 3 * l.Size * l.Size,
		workers: l.Workers, badLimit: l.BadLimit, bad: map[int]bool{}}
	if e.workers < 1 {
		e.workers = runtime.NumCPU()
	}
	if e.badLimit == 0 {
		e.badLimit = 0.01
	}
	prefetch := l.Prefetch
	if prefetch < 1 {
		prefetch = 2
	}
	out := make(chan *Batch, prefetch)
	free := make(chan *Batch, prefetch+1)
	for i := 0; i < prefetch+1; i++ {
		free <- &Batch{Images: make([]float32, l.Batch*e.per), Labels: make([]int, l.Batch)}
	}
	end := l.Batches()
	if l.Limit > 0 {
		end = min(end, l.Limit)
	}
	go func() {
		defer close(out)
		for b := start; b < end; b++ {
			if l.Ranks > 1 && b%l.Ranks != l.Rank {
				continue
			}
			var buf *Batch
			select {
			case buf = <-free:
			case <-ctx.Done():
				return
			}
			buf.release = func() { free <- buf }
			e.fillBatch(buf, b)
			select {
			case out <- buf:
			case <-ctx.Done():
				return
			}
			if buf.Err != nil {
				return
			}
		}
	}()
	return out, nil
}

// epochRun is one epoch of a loader: its order and the positions found
// unreadable so far.
type epochRun struct {
	l            *Loader
	epoch        int
	order        []int
	per, workers int
	badLimit     float64
	mu           sync.Mutex
	bad          map[int]bool // positions found unreadable this epoch
}

// fillBatch decodes and transforms batch b into buf on the workers;
// evaluation's batch leaves out unreadable images, and too many of them in
// the epoch is the batch's error.
func (e *epochRun) fillBatch(buf *Batch, b int) {
	l, per := e.l, e.per
	buf.Index, buf.Unreadable, buf.Err = b, buf.Unreadable[:0], nil
	lo := b * l.Batch
	hi := min(lo+l.Batch, len(e.order))
	valid := make([]bool, hi-lo)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < e.workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for pos := range jobs {
				slot := pos - lo
				ok, newBad, err := l.fill(e.epoch, pos, e.order, buf.Images[slot*per:(slot+1)*per], &buf.Labels[slot], e.bad, &e.mu)
				e.mu.Lock()
				if err != nil && buf.Err == nil {
					buf.Err = err
				}
				buf.Unreadable = append(buf.Unreadable, newBad...)
				valid[slot] = ok
				e.mu.Unlock()
			}
		}()
	}
	for pos := lo; pos < hi; pos++ {
		jobs <- pos
	}
	close(jobs)
	wg.Wait()
	n := 0 // evaluation skips unreadable images: compact the batch
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
	if nbad := len(e.bad); buf.Err == nil && nbad > 0 && float64(nbad) > e.badLimit*float64(len(e.order)) {
		buf.Err = fmt.Errorf("loader: %d unreadable images in %s so far this epoch (%s), more than %.1f%% of its %d images",
			nbad, l.Data.Root, firstPaths(e.bad, e.order, l.Data), 100*e.badLimit, len(e.order))
	}
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
