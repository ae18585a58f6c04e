// Package bench times ortrain's benchmark commands.
//
// It holds timed runs after warm-up ones, lockstep turns with a peer
// process, and the peak resident set size. It imports nothing of ours.
package bench

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// Times runs f warmup times untimed, then iters times timed, each run
// between a wait for the turn and its pass (Turns), and returns the timed
// durations in seconds, sorted.
func Times(warmup, iters int, turns Turns, f func() error) ([]float64, error) {
	var times []float64
	for i := 0; i < warmup+iters; i++ {
		if err := turns.wait(); err != nil {
			return nil, err
		}
		start := time.Now()
		if err := f(); err != nil {
			return nil, err
		}
		if i >= warmup {
			times = append(times, time.Since(start).Seconds())
		}
		if err := turns.pass(); err != nil {
			return nil, err
		}
	}
	sort.Float64s(times)
	return times, nil
}

// Stats are sorted times' total, median and minimum.
func Stats(sorted []float64) (total, median, min float64) {
	for _, t := range sorted {
		total += t
	}
	return total, sorted[len(sorted)/2], sorted[0]
}

// Turns runs the timed steps in lockstep with another process (the
// benchmark's peer) through two FIFOs, so that both time their steps
// alternately under the same state of the machine, whose speed drifts
// (scripts/bench_train.sh lockstep). The zero value does nothing.
type Turns struct{ in, out *os.File }

// OpenTurns opens the two FIFOs (both names, or neither): before each run
// a byte is read from in, after it one written to out. The benchmark
// script holds both open for reading and writing, so neither open blocks.
func OpenTurns(in, out string) (Turns, error) {
	if (in == "") != (out == "") {
		return Turns{}, fmt.Errorf("lockstep needs both FIFOs, the one to wait on and the one to pass the turn on")
	}
	if in == "" {
		return Turns{}, nil
	}
	fin, err := os.Open(in)
	if err != nil {
		return Turns{}, fmt.Errorf("lockstep: %w", err)
	}
	fout, err := os.OpenFile(out, os.O_WRONLY, 0)
	if err != nil {
		fin.Close()
		return Turns{}, fmt.Errorf("lockstep: %w", err)
	}
	return Turns{fin, fout}, nil
}

func (t Turns) wait() error {
	if t.in == nil {
		return nil
	}
	var b [1]byte
	if _, err := io.ReadFull(t.in, b[:]); err != nil {
		return fmt.Errorf("wait for turn on %s: %w", t.in.Name(), err)
	}
	return nil
}

// turnGap is how long a process idles after its step before passing the
// turn: ONNX Runtime's idle intra-op threads spin a while before blocking
// (as PyTorch's OpenMP threads do) and would otherwise take a core from
// the other's step. The peer script waits as long (docs/results/bench/history.md).
const turnGap = 100 * time.Millisecond

func (t Turns) pass() error {
	if t.out == nil {
		return nil
	}
	time.Sleep(turnGap)
	if _, err := t.out.Write([]byte{'.'}); err != nil {
		return fmt.Errorf("pass turn on %s: %w", t.out.Name(), err)
	}
	return nil
}

// Close closes the FIFOs.
func (t Turns) Close() {
	if t.in != nil {
		t.in.Close()
		t.out.Close()
	}
}

// PeakRSS is the process's high-water resident set size, as
// /proc/self/status says it ("2362848 kB"), or "unknown".
func PeakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
