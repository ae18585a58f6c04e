//go:build !mpi

package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/ortrain/ortrain/internal/testutil"
)

const buildTags = ""

// Started by mpirun as two processes, an ortrain built without MPI stops
// with one line saying so, instead of two runs writing one folder.
func TestTrainUnderMPIRunWithoutMPI(t *testing.T) {
	bin := buildCLI(t)
	dir := fashion(t, 4, 2)
	b, err := exec.Command("mpirun", testutil.MPIRunArgs(t, 2, bin, "train", "--data", dir, "--out", t.TempDir())...).CombinedOutput()
	if err == nil || !strings.Contains(string(b), "built without MPI") || !strings.Contains(string(b), "-tags mpi") {
		t.Fatalf("mpirun -np 2 of a build without MPI: %v\n%s", err, b)
	}
}
