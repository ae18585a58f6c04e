//go:build mpi

package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ortrain/ortrain/internal/testutil"
	"github.com/ortrain/ortrain/training"
)

const buildTags = "mpi"

// dpArgs train resnet18d at 32x32 on 80 images, batch 8 per process, 2
// epochs of 5 steps of 16 images: with 2 processes, or with 1 and
// --accum-steps 2.
func dpArgs(dir, out string, extra ...string) []string {
	return append([]string{"train", "--data", dir, "--out", out, "--model", "resnet18d", "--image-size", "32", "--epochs", "2",
		"--batch-size", "8", "--lr-base", "0.1", "--seed", "3", "--workers", "1", "--threads", "1", "--keep", "0"}, extra...)
}

func runOrFail(t *testing.T, name string, args ...string) string {
	t.Helper()
	b, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b)
	}
	return string(b)
}

// closeCheckpoints requires every tensor of two checkpoints within rel
// (infinity norms) and returns the worst and the number of values that
// differ at all.
func closeCheckpoints(t *testing.T, a, b string, rel float64) (float64, int) {
	t.Helper()
	ca, cb := checkpointPair(t, a, b)
	worst, differ := 0.0, 0
	for n, va := range ca.Tensors {
		vb := cb.Tensors[n]
		for i := range va {
			if math.Float32bits(va[i]) != math.Float32bits(vb[i]) {
				differ++
			}
		}
		e := testutil.RelErr(va, vb)
		if e > rel {
			t.Errorf("%s: %.3g apart", n, e)
		}
		worst = math.Max(worst, e)
	}
	return worst, differ
}

func readHistory(t *testing.T, dir string) []training.EpochRecord {
	t.Helper()
	h, err := training.ReadMetrics(dir)
	if err != nil || len(h) == 0 {
		t.Fatalf("%s: metrics %v", dir, err)
	}
	return h
}

// Two processes with batch 8 each are one process accumulating two
// micro-batches of 8: every parameter, momentum buffer and running
// statistic after 10 steps (an epoch boundary among them), the evaluation's
// top-1 and top-5 exactly, in float32 and in FP16 (whose first steps
// overflow at the initial loss scale and are skipped alike).
func TestMPIMatchesAccumulation(t *testing.T) {
	testutil.InitORT(t)
	bin := buildCLI(t)
	dir := fashion(t, 8, 4)
	for _, extra := range [][]string{nil, {"--fp16"}} {
		root := t.TempDir()
		two, acc := filepath.Join(root, "np2"), filepath.Join(root, "accum2")
		runOrFail(t, "mpirun", testutil.MPIRunArgs(t, 2, append([]string{bin}, dpArgs(dir, two, extra...)...)...)...)
		runOrFail(t, bin, dpArgs(dir, acc, append(extra, "--accum-steps", "2")...)...)
		worst, differ := closeCheckpoints(t, filepath.Join(training.CheckpointDir(two), "last.ckpt"), filepath.Join(training.CheckpointDir(acc), "last.ckpt"), 1e-5)
		t.Logf("%v: worst %.3g, %d values differ", extra, worst, differ)
		h2, ha := readHistory(t, two), readHistory(t, acc)
		for i := range h2 {
			if h2[i].ValTop1 != ha[i].ValTop1 || h2[i].ValTop5 != ha[i].ValTop5 || h2[i].Skipped != ha[i].Skipped {
				t.Errorf("%v epoch %d: 2 processes top-1 %g top-5 %g skipped %d; accumulation %g, %g, %d", extra,
					i+1, h2[i].ValTop1, h2[i].ValTop5, h2[i].Skipped, ha[i].ValTop1, ha[i].ValTop5, ha[i].Skipped)
			}
			if h2[i].AllReduceMS <= 0 {
				t.Errorf("epoch %d: no all-reduce time recorded", i+1)
			}
		}
		if len(extra) > 0 && h2[0].Skipped == 0 {
			t.Errorf("fp16: no step skipped; the test wants the overflow path")
		}
	}
}

// children are the processes whose parent is pid.
func children(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after ')'.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		var child, ppid int
		if len(f) > 1 && json.Unmarshal([]byte(f[1]), &ppid) == nil && ppid == pid && json.Unmarshal([]byte(e.Name()), &child) == nil {
			out = append(out, child)
		}
	}
	return out
}

// A process of the job killed (SIGKILL) mid-epoch ends the job within
// seconds, non-zero; the checkpoint it leaves is one of --checkpoint-every's
// (a multiple of its steps, mid-epoch: at most that many steps lost), and
// resuming under mpirun ends bit-identical to an uninterrupted run.
func TestMPIKillAndResume(t *testing.T) {
	testutil.InitORT(t)
	bin := buildCLI(t)
	dir := fashion(t, 8, 4)
	root := t.TempDir()
	straight, killed := filepath.Join(root, "straight"), filepath.Join(root, "killed")
	runOrFail(t, "mpirun", testutil.MPIRunArgs(t, 2, append([]string{bin}, dpArgs(dir, straight, "--epochs", "3")...)...)...)
	cmd := exec.Command("mpirun", testutil.MPIRunArgs(t, 2, append([]string{bin}, dpArgs(dir, killed, "--epochs", "3", "--checkpoint-every", "2")...)...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ckpt := filepath.Join(training.CheckpointDir(killed), "last.ckpt")
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if ck, err := training.ReadCheckpoint(ckpt); err == nil && ck.Meta.Epoch == 1 && ck.Meta.Batch > 0 {
			break // a mid-epoch checkpoint of epoch 2
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no mid-epoch checkpoint in epoch 2\n%s", out.String())
		}
	}
	ranks := children(cmd.Process.Pid)
	if len(ranks) < 2 {
		cmd.Process.Kill()
		t.Fatalf("mpirun's processes: %v", ranks)
	}
	syscall.Kill(ranks[len(ranks)-1], syscall.SIGKILL)
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("the job exited 0 after a process was killed\n%s", out.String())
		}
		t.Logf("the job ended %.1f s after the kill: %v", time.Since(start).Seconds(), err)
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("the job still ran 30 s after a process was killed\n%s", out.String())
	}
	ck, err := training.ReadCheckpoint(ckpt)
	if err != nil {
		t.Fatalf("the checkpoint left: %v", err)
	}
	if ck.Meta.Step%2 != 0 && ck.Meta.Batch != 0 {
		t.Errorf("checkpoint at step %d: not one of --checkpoint-every 2's", ck.Meta.Step)
	}
	runOrFail(t, "mpirun", testutil.MPIRunArgs(t, 2, bin, "train", "--resume", killed, "--workers", "1", "--threads", "1")...)
	if _, differ := closeCheckpoints(t, filepath.Join(training.CheckpointDir(straight), "last.ckpt"), ckpt, 0); differ > 0 {
		t.Errorf("the resumed run ends %d values away from the uninterrupted one", differ)
	}
	// Resumed on another number of processes: refused in one line.
	b, err := exec.Command(bin, "train", "--resume", killed).CombinedOutput()
	if err == nil || !strings.Contains(string(b), "mpirun -np 2") {
		t.Errorf("resume on one process: %v\n%s", err, b)
	}
}
